"""Each row's index state after a run (only for rows not changed meanwhile), and what flags rows
for the sweep: a missing store rebuilt from the database, a store of an older version, a model
switch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.vector_store import ProductIndex

from .sources import IndexPlan, IndexReport

logger = logging.getLogger(__name__)


def states_mark(plan: IndexPlan, *, model_id: str, report: IndexReport) -> None:
    """Record each product's index state, in one commit and a few statements for the batch
    (a statement per row cost more than the model at GPU speed)."""
    now = timezone.now()
    writes: list[tuple[Product, dict]] = []
    for product, message in plan.failed:
        writes.append((product, {"index_status": IndexStatus.FAILED, "index_error": message}))
        report.errors[product.pk] = message
    for source in plan.encode:
        writes.append(
            (
                source.product,
                {
                    "index_status": IndexStatus.INDEXED,
                    "index_error": "",
                    "indexed_model": model_id,
                    "content_hash": source.content_hash,
                    "payload_hash": source.payload_hash,
                    "indexed_at": now,
                },
            )
        )
    for source in plan.payload + plan.current:
        product = source.product
        if product.index_status != IndexStatus.INDEXED or product.payload_hash != source.payload_hash:
            writes.append(
                (
                    product,
                    {
                        "index_status": IndexStatus.INDEXED,
                        "index_error": "",
                        "payload_hash": source.payload_hash,
                        "indexed_at": now,
                    },
                )
            )
    with transaction.atomic():
        _states_write(writes)
    report.failed += len(plan.failed)
    report.indexed += len(plan.encode)
    report.payload_updated += len(plan.payload)
    report.skipped += len(plan.current)


def state_write(product: Product, **fields) -> bool:
    """Write index state only if the row was not edited meanwhile (that edit queued its own task)."""
    return bool(Product.objects.filter(pk=product.pk, updated_at=product.updated_at).update(**fields))


# Rows per UPDATE statement: each costs about six bound parameters (SQLite allows 32,766).
STATES_PER_STATEMENT = 500


def _states_write(writes: Sequence[tuple[Product, dict]]) -> int:
    """`_state_write` for many rows: one UPDATE per group of rows writing the same fields, values
    that differ per row chosen by CASE on the id, each row still written only if not edited
    meanwhile. Returns how many rows were written."""
    groups: dict[tuple[str, ...], list[tuple[Product, dict]]] = {}
    for product, fields in writes:
        groups.setdefault(tuple(sorted(fields)), []).append((product, fields))
    written = 0
    for names, members in groups.items():
        for start in range(0, len(members), STATES_PER_STATEMENT):
            part = members[start : start + STATES_PER_STATEMENT]
            if len(part) == 1:
                written += state_write(part[0][0], **part[0][1])
                continue
            values: dict[str, object] = {}
            for name in names:
                distinct = {fields[name] for _, fields in part}
                values[name] = (
                    next(iter(distinct))
                    if len(distinct) == 1
                    else Case(
                        *(When(pk=product.pk, then=Value(fields[name])) for product, fields in part),
                        output_field=Product._meta.get_field(name),
                    )
                )
            rows = Q()
            for product, _ in part:
                rows |= Q(pk=product.pk, updated_at=product.updated_at)
            written += Product.objects.filter(rows).update(**values)
    return written


def payloads_rewrite() -> int:
    """The store was written by an older version (before the keyword leg, or the facet payload):
    the sweep writes every indexed product's payload and keywords again (a payload write each,
    no encoding). Returns how many."""
    flagged = Product.objects.filter(index_status=IndexStatus.INDEXED).mark_pending(payload_hash="")
    logger.warning(
        "The vector index was written by an older version; %d product(s) get their payload "
        "written again (no encoding).",
        flagged,
    )
    return flagged


def products_reindex_if_index_missing(*, index: ProductIndex | None = None) -> int:
    """The vector index has no collection (deleted, or a new engine or folder) while rows say
    `indexed`: flag them pending, so they are embedded again from the database. A store an older
    version wrote is brought up to date, and its payloads written again. Returns how many."""
    index = index or providers.get_product_index()
    dim = index.dim()
    if dim is not None:
        return payloads_rewrite() if index.ensure_collection(dim) else 0
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
    current = providers.embedding_model_id()
    try:
        encoder = providers.get_encoder()  # a switch only to a model that loads: else nothing moves
    except ModelUnavailableError as exc:
        _said_once(
            f"No model switch: the configured embedding model cannot be loaded, so search keeps "
            f"answering with {providers.serving_model_id()}. {exc}"
        )
        return ""
    catalog = Product.objects.searchable()
    flagged = catalog.filter(index_status=IndexStatus.INDEXED).exclude(indexed_model=current).mark_pending()
    if flagged:
        logger.warning(
            "The embedding model is now %s: embedding %d product(s) into a store of its own; search "
            "keeps answering with %s until it is complete.",
            current,
            flagged,
            providers.serving_model_id(),
        )
    if catalog.filter(index_status=IndexStatus.PENDING).exists():
        return "filling"
    previous = providers.serving_model_id()
    providers.get_next_index().ensure_collection(encoder.dim)  # an empty catalog switches too
    old = providers.serving_switch()
    logger.warning("Search now answers with %s; the store of %s (%s) was deleted.", current, previous, old)
    return "switched"


_said: set[str] = set()


def _said_once(message: str) -> None:
    """Log a problem the sweep meets at every pass (every few seconds) once per process."""
    if message not in _said:
        _said.add(message)
        logger.error(message)
