"""Search write services: keeping the vector index in step with the catalog.

products_index runs in phases, each a function below: read the rows (deleted and inactive
products leave search), prepare what the towers would see (hash it; skip what is unchanged;
decode images), encode, write the points, and mark each row's index state.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from catalog.images import image_load
from catalog.models import IndexStatus, Product

from search.retrieval import providers
from search.retrieval.encoders import Encoder, ModelUnavailableError
from search.retrieval.facets import facet_payload
from search.retrieval.keywords import KeywordText, Sparse, attribute_texts, sku_key
from search.retrieval.vector_store import IndexBusyError, IndexSchemaError, ProductIndex, ProductPoint

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    indexed: int = 0
    skipped: int = 0
    payload_updated: int = 0
    removed: int = 0
    failed: int = 0
    # left pending because another process holds the embedded index (it indexes them)
    deferred: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: "IndexReport") -> None:
        for name in ("indexed", "skipped", "payload_updated", "removed", "failed", "deferred"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def product_keyword_text(product: Product) -> KeywordText:
    """What the keyword leg reads of a product: its words, its SKU and its attributes' values."""
    return KeywordText(title=product.title, brand=product.brand, category=product.category, sku=product.sku,
                       attributes=tuple(attribute_texts(product.attributes or {})),
                       description=product.description)


def product_payload(product: Product, *, model_id: str, has_text: bool, has_image: bool,
                    keywords: Sparse | None = None) -> dict:
    """What Qdrant filters on; the database stays the source of everything shown. `terms` are the
    keyword leg's terms (which query words the product holds)."""
    return {
        "sku": product.sku,
        "sku_key": sku_key(product.sku),
        "terms": list(keywords.indices) if keywords else [],
        # category, brand and each attribute as filters compare them (the database keeps them as typed)
        **facet_payload(category=product.category, brand=product.brand, attributes=product.attributes),
        "price": float(product.price),
        "currency": product.currency,
        "active": product.active,
        "has_text": has_text,
        "has_image": has_image,
        # whether the text vector saw a description or the title alone (the calibration reads it)
        "has_description": bool(product.description.strip()),
        "model_id": model_id,
    }


@dataclass
class ProductSource:
    """What the towers see of a product, hashed: the text, the image bytes (decoded only if the
    product is encoded), and the payload Qdrant filters on."""

    product: Product
    text: str
    image_bytes: bytes | None
    content_hash: str
    payload: dict
    payload_hash: str
    keywords: Sparse
    image: object | None = None  # PIL image, set by _prepare for products to encode


def product_source(product: Product, model_id: str) -> ProductSource:
    """Read the product's text and image bytes and hash them; raises ValidationError if the
    image file cannot be read. An unchanged product (the sweep, `index_products --all`) costs a
    file read and a hash, not a decode."""
    text = product.search_text
    data: bytes | None = None
    if product.image:
        try:
            with product.image.open("rb") as handle:
                data = handle.read(settings.CATALOG_MAX_IMAGE_BYTES + 1)
        except (FileNotFoundError, OSError) as exc:
            raise ValidationError(f"image file {product.image.name!r} cannot be read ({exc}).") from exc
    if not text and data is None:
        raise ValidationError("nothing to embed: give the product a title or an image.")
    keywords = providers.get_keyword_encoder().document(product_keyword_text(product))
    payload = product_payload(product, model_id=model_id, has_text=bool(text), has_image=data is not None,
                              keywords=keywords)
    image_sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    # The keyword vector follows its terms (in the payload): a new SKU or attribute is a payload
    # change, written without encoding again.
    return ProductSource(
        product=product, text=text, image_bytes=data,
        content_hash=_sha(model_id, text, image_sha),
        payload=payload, payload_hash=_sha(json.dumps(payload, sort_keys=True), repr(keywords.values)),
        keywords=keywords,
    )


@dataclass
class _Plan:
    """What prepare decided for each active product."""

    encode: list[ProductSource] = field(default_factory=list)   # new or changed: embed and upsert
    payload: list[ProductSource] = field(default_factory=list)  # same vectors, new payload (price...)
    current: list[ProductSource] = field(default_factory=list)  # already in the index as it is
    failed: list[tuple[Product, str]] = field(default_factory=list)


def products_index(*, product_ids: Sequence[int], encoder: Encoder | None = None,
                   index: ProductIndex | None = None, force: bool = False) -> IndexReport:
    """Embed and upsert the given products; unchanged ones are skipped, gone ones removed.
    When another process holds the embedded index, they are left pending for it (`deferred`)."""
    try:
        return _products_index(product_ids=product_ids, encoder=encoder, index=index, force=force)
    except IndexBusyError as exc:
        count = len(set(product_ids))
        logger.warning("%s %d product(s) stay pending: the running server indexes pending products within "
                       "%s s; with no server running, `python manage.py index_products --dirty` does.",
                       exc, count, settings.SEARCH_EMBEDDED_SWEEP_SECONDS)
        return IndexReport(deferred=count)


def _products_index(*, product_ids: Sequence[int], encoder: Encoder | None, index: ProductIndex | None,
                    force: bool) -> IndexReport:
    serving = index or providers.get_product_index()
    # Reach the store before loading a model: held by another process (IndexBusyError), that
    # process indexes the rows, whatever this one's model setting (or its time to load).
    serving.existing_ids(())
    unavailable: ModelUnavailableError | None = None
    try:
        encoder = encoder or providers.get_encoder()
    except ModelUnavailableError as exc:
        unavailable = exc
    also: list[ProductIndex] = []
    if index is None:
        index = providers.indexing_index() if unavailable is None else serving
        # during a model switch the old store still serves: what leaves search leaves it too
        also = [serving] if serving is not index else []
    report = IndexReport()
    active = _read(product_ids, index, report, also=also)
    if not active:
        return report
    if unavailable is not None or encoder is None:
        # Not retried: the same settings fail the same way. The rows say what to change.
        _mark(_Plan(failed=[(p, str(unavailable)) for p in active]), model_id="", report=report)
        return report
    try:
        if index.ensure_collection(encoder.dim):
            _payloads_rewrite()
    except IndexSchemaError as exc:
        # Not retried either: the store must be rebuilt for this model. The rows say how.
        _mark(_Plan(failed=[(p, str(exc)) for p in active]), model_id="", report=report)
        return report
    plan = _prepare(active, model_id=encoder.model_id, present=index.existing_ids(p.pk for p in active),
                    force=force)
    points, unreadable = _encode(plan.encode, encoder)
    if unreadable:
        failed_ids = {p.pk for p, _ in unreadable}
        plan.encode = [s for s in plan.encode if s.product.pk not in failed_ids]
        plan.failed.extend(unreadable)
    _write(index, points, plan.payload)
    _mark(plan, model_id=encoder.model_id, report=report)
    return report


def _read(product_ids: Sequence[int], index: ProductIndex, report: IndexReport,
          also: Sequence[ProductIndex] = ()) -> list[Product]:
    """The active products among these ids; deleted and deactivated ones leave search here."""
    ids = sorted({int(i) for i in product_ids})
    products = {p.pk: p for p in Product.objects.filter(pk__in=ids)}
    inactive = [p for p in products.values() if not p.active]
    gone = [i for i in ids if i not in products]
    if gone or inactive:
        for store in (index, *also):
            store.delete(gone + [p.pk for p in inactive])
        report.removed += len(gone) + len(inactive)
        now = timezone.now()
        for product in inactive:
            _state_write(product, index_status=IndexStatus.UNLISTED, index_error="", content_hash="",
                         payload_hash="", indexed_at=now)
    return [p for p in products.values() if p.active]


def _prepare(products: Sequence[Product], *, model_id: str, present: set[int], force: bool) -> _Plan:
    """Hash each product; what is already in the index with the same content and model is not
    encoded again (a point that went missing, e.g. a recreated collection, is); images to encode
    are decoded, and a corrupt one fails its product, not the batch."""
    plan = _Plan()
    for product in products:
        try:
            source = product_source(product, model_id)
        except ValidationError as exc:
            plan.failed.append((product, " ".join(exc.messages)))
            continue
        unchanged = (not force and product.pk in present and product.content_hash == source.content_hash
                     and product.indexed_model == model_id)
        if unchanged:
            (plan.current if product.payload_hash == source.payload_hash else plan.payload).append(source)
            continue
        if source.image_bytes is not None:
            try:
                source.image = image_load(source.image_bytes, name=f"image {product.image.name!r}").image
            except ValidationError as exc:
                plan.failed.append((product, " ".join(exc.messages)))
                continue
        plan.encode.append(source)
    return plan


def _encode(sources: Sequence[ProductSource], encoder: Encoder) -> tuple[list[ProductPoint], list[tuple[Product, str]]]:
    """One batch per tower; a product gets a vector only for what it has (never a zero vector).
    A batch the model fails on is encoded item by item: only the products it cannot embed fail
    (with the reason), the rest of the batch is indexed."""
    failed: dict[int, str] = {}
    text_vectors = _encoded([s for s in sources if s.text], "text", lambda s: s.text, encoder.encode_texts, failed)
    image_vectors = _encoded([s for s in sources if s.image is not None], "image", lambda s: s.image,
                             encoder.encode_images, failed)
    points = [ProductPoint(id=s.product.pk, text=text_vectors.get(s.product.pk), image=image_vectors.get(s.product.pk),
                           payload=s.payload, keywords=s.keywords) for s in sources if s.product.pk not in failed]
    return points, [(s.product, failed[s.product.pk]) for s in sources if s.product.pk in failed]


def _encoded(sources: list[ProductSource], what: str, item, encode, failed: dict[int, str]) -> dict[int, object]:
    if not sources:
        return {}
    try:
        return dict(zip((s.product.pk for s in sources), encode([item(s) for s in sources])))
    except ModelUnavailableError:
        raise
    except Exception as exc:  # the model's own errors have no common type
        if len(sources) == 1:
            failed[sources[0].product.pk] = f"{what}: the model could not embed it ({str(exc)[:300]})."
            return {}
        logger.warning("Embedding a batch of %d %s(s) failed (%s); embedding them one by one.", len(sources), what, exc)
    vectors: dict[int, object] = {}
    for source in sources:
        vectors.update(_encoded([source], what, item, encode, failed))
    return vectors


def _write(index: ProductIndex, points: Sequence[ProductPoint], payload_only: Sequence[ProductSource]) -> None:
    index.upsert(points)
    for source in payload_only:
        index.set_payload(source.product.pk, source.payload, keywords=source.keywords)


def _mark(plan: _Plan, *, model_id: str, report: IndexReport) -> None:
    """Record each product's index state, in one commit for the batch (row-by-row autocommit
    cost more than the tiny model's encoding)."""
    now = timezone.now()
    with transaction.atomic():
        for product, message in plan.failed:
            _state_write(product, index_status=IndexStatus.FAILED, index_error=message)
            report.errors[product.pk] = message
        for source in plan.encode:
            _state_write(source.product, index_status=IndexStatus.INDEXED, index_error="", indexed_model=model_id,
                         content_hash=source.content_hash, payload_hash=source.payload_hash, indexed_at=now)
        for source in plan.payload + plan.current:
            product = source.product
            if product.index_status != IndexStatus.INDEXED or product.payload_hash != source.payload_hash:
                _state_write(product, index_status=IndexStatus.INDEXED, index_error="",
                             payload_hash=source.payload_hash, indexed_at=now)
    report.failed += len(plan.failed)
    report.indexed += len(plan.encode)
    report.payload_updated += len(plan.payload)
    report.skipped += len(plan.current)


def _state_write(product: Product, **fields) -> bool:
    """Write index state only if the row was not edited meanwhile (that edit queued its own task)."""
    return bool(Product.objects.filter(pk=product.pk, updated_at=product.updated_at).update(**fields))


def _payloads_rewrite() -> int:
    """The store was written by an older version (before the keyword leg, or the facet payload):
    the sweep writes every indexed product's payload and keywords again (a payload write each,
    no encoding). Returns how many."""
    flagged = Product.objects.filter(index_status=IndexStatus.INDEXED).update(
        index_status=IndexStatus.PENDING, payload_hash="")
    logger.warning("The vector index was written by an older version; %d product(s) get their payload "
                   "written again (no encoding).", flagged)
    return flagged


def products_reindex_if_index_missing(*, index: ProductIndex | None = None) -> int:
    """The vector index has no collection (deleted, or a new engine or folder) while rows say
    `indexed`: flag them pending, so they are embedded again from the database. A store an older
    version wrote is brought up to date, and its payloads written again. Returns how many."""
    index = index or providers.get_product_index()
    dim = index.dim()
    if dim is not None:
        return _payloads_rewrite() if index.ensure_collection(dim) else 0
    count = Product.objects.filter(index_status=IndexStatus.INDEXED).mark_pending()
    if count:
        logger.warning("The vector index is missing; %d product(s) will be embedded again from the database.", count)
    return count


def model_switch_advance() -> str:
    """Move a model switch on (embedded Qdrant Edge): the configured model differs from the one
    the serving store was built with. Flags the products embedded by the old model, which the
    sweep then embeds into the new model's store while the old store keeps serving; once none
    is left, serves the new store and deletes the old one. Returns "" (no switch), "filling"
    or "switched"."""
    if not providers.model_switching():
        return ""
    current = providers.get_encoder().model_id
    catalog = Product.objects.searchable()
    flagged = catalog.filter(index_status=IndexStatus.INDEXED).exclude(indexed_model=current).mark_pending()
    if flagged:
        logger.warning("The embedding model is now %s: embedding %d product(s) into a store of its own; search "
                       "keeps answering with %s until it is complete.", current, flagged, providers.serving_model_id())
    if catalog.filter(index_status=IndexStatus.PENDING).exists():
        return "filling"
    previous = providers.serving_model_id()
    providers.get_next_index().ensure_collection(providers.get_encoder().dim)  # an empty catalog switches too
    old = providers.serving_switch()
    logger.warning("Search now answers with %s; the store of %s (%s) was deleted.", current, previous, old)
    return "switched"


__all__ = ["IndexReport", "ProductSource", "model_switch_advance", "product_payload", "product_source",
           "products_index", "products_reindex_if_index_missing"]
