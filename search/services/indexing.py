"""Search write services: keeping the vector index in step with the catalog."""
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

from search.retrieval.encoders import Encoder, ModelUnavailableError
from search.retrieval.vector_store import ProductIndex, ProductPoint

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    indexed: int = 0
    skipped: int = 0
    payload_updated: int = 0
    removed: int = 0
    failed: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: "IndexReport") -> None:
        for name in ("indexed", "skipped", "payload_updated", "removed", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def product_payload(product: Product, *, model_id: str, has_text: bool, has_image: bool) -> dict:
    """What Qdrant filters on; the database stays the source of everything shown."""
    return {
        "sku": product.sku,
        "category": product.category,
        "brand": product.brand,
        "price": float(product.price),
        "currency": product.currency,
        "active": product.active,
        "has_text": has_text,
        "has_image": has_image,
        "model_id": model_id,
    }


@dataclass
class _Prepared:
    product: Product
    text: str
    image_bytes: bytes | None
    content_hash: str
    payload: dict
    payload_hash: str
    image: object | None = None  # PIL image, decoded only if the product is (re-)encoded


def _prepare(product: Product, model_id: str) -> _Prepared:
    """Read the product's text and image bytes and hash them; raises ValidationError if the
    image file cannot be read. Decoding waits until the product needs encoding: an unchanged
    product (the sweep, `index_products --all`) costs a file read and a hash, not a decode."""
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
    payload = product_payload(product, model_id=model_id, has_text=bool(text), has_image=data is not None)
    image_sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    return _Prepared(
        product=product, text=text, image_bytes=data,
        content_hash=_sha(model_id, text, image_sha),
        payload=payload, payload_hash=_sha(json.dumps(payload, sort_keys=True)),
    )


def _mark(product: Product, **fields) -> bool:
    """Write index state only if the row was not edited meanwhile (that edit queued its own task)."""
    return bool(Product.objects.filter(pk=product.pk, updated_at=product.updated_at).update(**fields))


def products_index(*, product_ids: Sequence[int], encoder: Encoder | None = None,
                   index: ProductIndex | None = None, force: bool = False) -> IndexReport:
    """Embed and upsert the given products; unchanged ones are skipped, gone ones removed."""
    from search.retrieval.providers import get_encoder, get_product_index

    index = index or get_product_index()
    report = IndexReport()
    ids = sorted({int(i) for i in product_ids})
    products = {p.pk: p for p in Product.objects.filter(pk__in=ids)}

    # Deleted or deactivated products leave search.
    inactive = [p for p in products.values() if not p.active]
    gone = [i for i in ids if i not in products]
    if gone or inactive:
        index.delete(gone + [p.pk for p in inactive])
        report.removed += len(gone) + len(inactive)
        for product in inactive:
            _mark(product, index_status=IndexStatus.UNLISTED, index_error="", content_hash="",
                  payload_hash="", indexed_at=timezone.now())
    active = [p for p in products.values() if p.active]
    if not active:
        return report

    try:
        encoder = encoder or get_encoder()
    except ModelUnavailableError as exc:
        # Not retried: the same settings fail the same way. The rows say what to change.
        for product in active:
            _mark(product, index_status=IndexStatus.FAILED, index_error=str(exc))
        report.failed += len(active)
        report.errors.update({p.pk: str(exc) for p in active})
        return report
    model_id = encoder.model_id
    index.ensure_collection(encoder.dim)

    prepared: list[_Prepared] = []
    for product in active:
        try:
            prepared.append(_prepare(product, model_id))
        except ValidationError as exc:
            message = " ".join(exc.messages)
            _mark(product, index_status=IndexStatus.FAILED, index_error=message)
            report.failed += 1
            report.errors[product.pk] = message

    # Skip what is already in the index with the same content and model; a point that
    # went missing (a recreated collection) is embedded again.
    present = index.existing_ids(p.product.pk for p in prepared)
    to_encode: list[_Prepared] = []
    now = timezone.now()
    for item in prepared:
        product = item.product
        unchanged = (not force and product.pk in present and product.content_hash == item.content_hash
                     and product.indexed_model == model_id)
        if not unchanged:
            to_encode.append(item)
            continue
        if product.payload_hash != item.payload_hash:
            index.set_payload(product.pk, item.payload)
            report.payload_updated += 1
        else:
            report.skipped += 1
        if product.index_status != IndexStatus.INDEXED or product.payload_hash != item.payload_hash:
            _mark(product, index_status=IndexStatus.INDEXED, index_error="",
                  payload_hash=item.payload_hash, indexed_at=now)

    # Decode the images to embed; a corrupt one fails its product, not the batch.
    decodable = []
    for item in to_encode:
        if item.image_bytes is not None:
            try:
                item.image = image_load(item.image_bytes, name=f"image {item.product.image.name!r}").image
            except ValidationError as exc:
                message = " ".join(exc.messages)
                _mark(item.product, index_status=IndexStatus.FAILED, index_error=message)
                report.failed += 1
                report.errors[item.product.pk] = message
                continue
        decodable.append(item)
    to_encode = decodable
    if not to_encode:
        return report
    with_text = [item for item in to_encode if item.text]
    with_image = [item for item in to_encode if item.image is not None]
    text_vectors = dict(zip((i.product.pk for i in with_text),
                            encoder.encode_texts([i.text for i in with_text])))
    image_vectors = dict(zip((i.product.pk for i in with_image),
                             encoder.encode_images([i.image for i in with_image])))
    points = [ProductPoint(id=item.product.pk, text=text_vectors.get(item.product.pk),
                           image=image_vectors.get(item.product.pk), payload=item.payload)
              for item in to_encode]
    index.upsert(points)
    now = timezone.now()
    # One commit for the batch: row-by-row autocommit cost more than the tiny model's encoding.
    with transaction.atomic():
        for item in to_encode:
            _mark(item.product, index_status=IndexStatus.INDEXED, index_error="", indexed_model=model_id,
                  content_hash=item.content_hash, payload_hash=item.payload_hash, indexed_at=now)
    report.indexed += len(to_encode)
    return report


__all__ = ["IndexReport", "product_payload", "products_index"]
