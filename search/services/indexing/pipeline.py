"""Indexing products: keeping the vector index in step with the catalog.

products_index runs in phases, each a function below: read the rows (deleted and inactive
products leave search), prepare what the towers would see (hash it; skip what is unchanged),
encode and write the points, and mark each row's index state.

Encoding is a pipeline, so the model is never left waiting on the CPU: images are read, hashed
and decoded by a pool of threads (Pillow and hashlib let go of the GIL), JPEGs only as large as
the model needs (`image_load(draft=...)`), on a GPU a few chunks ahead of the forward pass (on a
CPU just before it, see SEARCH_DECODE_AHEAD); resizing and
normalising run as tensor ops where the model runs (`PixelRecipe`); each chunk's points are
written to the vector store by a writer thread while the next chunk is encoded; the rows' states
are written in a few statements per batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from django.core.exceptions import ValidationError
from django.utils import timezone

from catalog.images import image_load
from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.config import search_config
from search.retrieval.encoders import Encoder, ModelUnavailableError, image_array
from search.retrieval.vector_store import (
    IndexBusyError,
    IndexSchemaError,
    IndexStoreFullError,
    ProductIndex,
    ProductPoint,
)

from .sources import IndexPlan, IndexReport, ProductSource, product_source
from .states import payloads_rewrite, state_write, states_mark

logger = logging.getLogger(__name__)


def products_index(
    *,
    product_ids: Sequence[int],
    encoder: Encoder | None = None,
    index: ProductIndex | None = None,
    force: bool = False,
) -> IndexReport:
    """Embed and upsert the given products; unchanged ones are skipped, gone ones removed.
    When another process holds the embedded index, they are left pending for it (`deferred`)."""
    try:
        return _products_index(product_ids=product_ids, encoder=encoder, index=index, force=force)
    except IndexBusyError as exc:
        count = len(set(product_ids))
        logger.warning(
            "%s %d product(s) stay pending: the running server indexes pending products within "
            "%s s; with no server running, `python manage.py index_products --dirty` does.",
            exc,
            count,
            search_config().embedded_sweep_seconds,
        )
        return IndexReport(deferred=count)
    except IndexStoreFullError:  # said in the log by the store, once: the rows wait for room
        return IndexReport(deferred=len(set(product_ids)))


def _products_index(
    *, product_ids: Sequence[int], encoder: Encoder | None, index: ProductIndex | None, force: bool
) -> IndexReport:
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
        states_mark(IndexPlan(failed=[(p, str(unavailable)) for p in active]), model_id="", report=report)
        return report
    try:
        if index.ensure_collection(encoder.dim):
            payloads_rewrite()
    except IndexSchemaError as exc:
        # Not retried either: the store must be rebuilt for this model. The rows say how.
        states_mark(IndexPlan(failed=[(p, str(exc)) for p in active]), model_id="", report=report)
        return report
    plan = _prepare(active, model_id=encoder.model_id, present=index.existing_ids(p.pk for p in active), force=force)
    unreadable = _encode_write(index, plan.encode, encoder, plan.payload)
    if unreadable:
        failed_ids = {p.pk for p, _ in unreadable}
        plan.encode = [s for s in plan.encode if s.product.pk not in failed_ids]
        plan.failed.extend(unreadable)
    states_mark(plan, model_id=encoder.model_id, report=report)
    return report


def _read(
    product_ids: Sequence[int], index: ProductIndex, report: IndexReport, also: Sequence[ProductIndex] = ()
) -> list[Product]:
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
            state_write(
                product,
                index_status=IndexStatus.UNLISTED,
                index_error="",
                content_hash="",
                payload_hash="",
                indexed_at=now,
            )
    return [p for p in products.values() if p.active]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def decode_threads() -> ThreadPoolExecutor:
    """The process's image reading and decoding threads (SEARCH_DECODE_THREADS), started on first
    use; a forked process (a Celery or gunicorn worker) starts its own."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=search_config().decode_threads or os.cpu_count() or 1, thread_name_prefix="decode"
            )
        return _pool


def _threads_forget() -> None:
    """In a forked child: the parent's threads did not come along, so its pool would never run."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_threads_forget)


def _source_or_error(product: Product, model_id: str) -> ProductSource | str:
    try:
        return product_source(product, model_id)
    except ValidationError as exc:
        return " ".join(exc.messages)


def _prepare(products: Sequence[Product], *, model_id: str, present: set[int], force: bool) -> IndexPlan:
    """Hash each product (image files read in parallel); what is already in the index with the
    same content and model is not encoded again (a point that went missing, e.g. a recreated
    collection, is)."""
    plan = IndexPlan()
    for product, source in zip(products, decode_threads().map(lambda p: _source_or_error(p, model_id), products)):
        if isinstance(source, str):
            plan.failed.append((product, source))
            continue
        unchanged = (
            not force
            and product.pk in present
            and product.content_hash == source.content_hash
            and product.indexed_model == model_id
        )
        if unchanged:
            (plan.current if product.payload_hash == source.payload_hash else plan.payload).append(source)
            continue
        plan.encode.append(source)
    return plan


# Chunks decoded ahead of the one being encoded: enough to keep the model fed, few enough that
# a large batch of photos is not all held in memory at once.
DECODE_AHEAD = 2


def _decoded(source: ProductSource, draft: tuple[int, int] | None):
    """The image's RGB pixels (the middle the model sees), decoded no larger than needed; runs in
    a decoding thread. A corrupt image raises ValidationError: it fails its product only."""
    loaded = image_load(source.image_bytes, name=f"image {source.product.image.name!r}", draft=draft)
    return image_array(loaded.image)


def _encode_write(
    index: ProductIndex, sources: Sequence[ProductSource], encoder: Encoder, payload_only: Sequence[ProductSource]
) -> list[tuple[Product, str]]:
    """Encode the products in chunks of the encoder's batch size and write their points, as a
    pipeline: chunk k+1 and k+2 decode while chunk k is encoded, and chunk k-1 is written
    meanwhile. A product gets a vector only for what it has (never a zero vector). Returns the
    products that failed, with the reason; the others are in the store when it returns."""
    failed: dict[int, str] = {}
    size = max(1, int(getattr(encoder, "batch_size", 0) or search_config().encode_batch_size))
    chunks = [sources[i : i + size] for i in range(0, len(sources), size)]
    decoder = _Decoder(chunks, encoder)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-write")
    writes: list[Future] = []
    try:
        for k, chunk in enumerate(chunks):
            points = _chunk_points(chunk, decoder, k, encoder, failed)
            writes.append(writer.submit(index.upsert, points))
        for source in payload_only:
            writes.append(writer.submit(index.set_payload, source.product.pk, source.payload, keywords=source.keywords))
        for write in writes:
            write.result()  # the store's own error, raised here as if written in this thread
    finally:
        decoder.cancel()
        writer.shutdown(wait=True)
    return [(s.product, failed[s.product.pk]) for s in sources if s.product.pk in failed]


class _Decoder:
    """The chunks' images decoded by the pool of threads, `look_ahead` chunks ahead of the one
    the model encodes. On a CPU the model's own threads use every core, and they wait for each
    other at every operation: decoding beside them slowed the forward pass more than it saved
    (1.27x the model's time against 1.04x, benchmarks/index_throughput.py). There a chunk is
    decoded, by all the threads, before its forward pass; on an accelerator, ahead of it."""

    def __init__(self, chunks: list[Sequence[ProductSource]], encoder: Encoder) -> None:
        self.chunks = chunks
        self.draft = encoder.image_draft_size() if hasattr(encoder, "image_draft_size") else None
        look_ahead = search_config().decode_ahead
        if look_ahead is None:
            look_ahead = DECODE_AHEAD if getattr(getattr(encoder, "device", None), "type", "cpu") != "cpu" else 0
        self.look_ahead = look_ahead
        self.ahead: deque[dict[int, Future]] = deque()
        for k in range(look_ahead):
            self._start(k)

    def _start(self, k: int) -> None:
        if k < len(self.chunks):
            self.ahead.append(
                {
                    s.product.pk: decode_threads().submit(_decoded, s, self.draft)
                    for s in self.chunks[k]
                    if s.image_bytes is not None
                }
            )

    def next(self, k: int) -> dict[int, Future]:
        """Chunk k's images being decoded (decoded, on a CPU); starts decoding the chunk
        `look_ahead` further on."""
        self._start(k + self.look_ahead)
        pending = self.ahead.popleft()
        if not self.look_ahead:
            futures_wait(pending.values())
        return pending

    def pixels(self, k: int, pending: dict[int, Future], failed: dict[int, str]) -> dict[int, object]:
        """Chunk k's decoded images by product id (an unreadable one goes to `failed`)."""
        pixels: dict[int, object] = {}
        for source in self.chunks[k]:
            if source.product.pk in pending:
                try:
                    pixels[source.product.pk] = pending[source.product.pk].result()
                except ValidationError as exc:
                    failed[source.product.pk] = " ".join(exc.messages)
        return pixels

    def cancel(self) -> None:
        for pending in self.ahead:
            for future in pending.values():
                future.cancel()


def _chunk_points(
    chunk: Sequence[ProductSource], decoder: _Decoder, k: int, encoder: Encoder, failed: dict[int, str]
) -> list[ProductPoint]:
    """Chunk k's points: each tower encodes what the products have (a product that fails is
    left out, with its reason in `failed`); the text tower runs while the images decode."""
    pending = decoder.next(k)
    text_vectors = _encoded([s for s in chunk if s.text], "text", lambda s: s.text, encoder.encode_texts, failed)
    pixels = decoder.pixels(k, pending, failed)
    image_vectors = _encoded(
        [s for s in chunk if s.product.pk in pixels],
        "image",
        lambda s: pixels[s.product.pk],
        encoder.encode_images,
        failed,
    )
    return [
        ProductPoint(
            id=s.product.pk,
            text=text_vectors.get(s.product.pk),
            image=image_vectors.get(s.product.pk),
            payload=s.payload,
            keywords=s.keywords,
        )
        for s in chunk
        if s.product.pk not in failed
    ]


def _encoded(
    sources: list[ProductSource], what: str, item: Callable, encode: Callable, failed: dict[int, str]
) -> dict[int, object]:
    """Encode one batch; a batch the model fails on is encoded item by item: only the products it
    cannot embed fail (with the reason), the rest of the batch is indexed."""
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
