"""Reconciling the vector index with the database, which is the source of truth.

Finds what the change pipeline cannot see: points that went missing while their rows still say
`indexed`, points whose product is gone or unlisted (orphans), rows indexed by another model,
rows whose text, image or payload changed without being flagged (a bulk `update()` with no
`mark_pending()`), and a collection of another vector size than the model's. Fixing flags the
rows for indexing, deletes the orphans (or rebuilds a collection of the wrong size) and
indexes the flagged rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.vector_store import ProductIndex

from .indexing import IndexReport, product_source, products_index

logger = logging.getLogger(__name__)

READ_BATCH = 500


@dataclass
class ReconcileReport:
    model_id: str
    points: int = 0
    rows_indexed: int = 0
    # (collection size, model size) when they differ: every point must be embedded again
    dimension: tuple[int, int] | None = None
    missing: list[int] = field(default_factory=list)  # row says indexed, no point
    orphans: list[int] = field(default_factory=list)  # point without an active product
    stale_model: list[int] = field(default_factory=list)  # indexed by another model
    stale_content: list[int] = field(default_factory=list)  # text, image or payload changed unflagged
    unreadable: dict[int, str] = field(default_factory=dict)  # rows whose source cannot be read now
    fixed: IndexReport | None = None

    @property
    def problems(self) -> int:
        return (
            bool(self.dimension)
            + len(self.missing)
            + len(self.orphans)
            + len(self.stale_model)
            + len(self.stale_content)
        )

    def lines(self) -> list[str]:
        """What was found, in words a merchandiser's admin can act on."""
        out = [
            f"{self.points} points in the vector index; {self.rows_indexed} products say they are indexed "
            f"(model {self.model_id})."
        ]
        if self.dimension:
            out.append(
                f"The index holds {self.dimension[0]}-d vectors, the model gives {self.dimension[1]}-d: "
                "every product must be embedded again."
            )
        for label, ids in (
            ("indexed but missing from the index", self.missing),
            ("in the index but deleted or unlisted in the catalog (orphans)", self.orphans),
            ("indexed by another model", self.stale_model),
            ("changed since they were indexed (text, image or price)", self.stale_content),
        ):
            if ids:
                shown = ", ".join(str(i) for i in ids[:10]) + (" ..." if len(ids) > 10 else "")
                out.append(f"{len(ids)} product(s) {label}: {shown}")
        for pk, error in list(self.unreadable.items())[:10]:
            out.append(f"product {pk} cannot be checked: {error}")
        if not self.problems:
            out.append("The index matches the catalog.")
        return out


def index_reconcile(
    *, fix: bool = False, index: ProductIndex | None = None, progress: Callable[[int], None] | None = None
) -> ReconcileReport:
    """Compare the index with the database; with `fix`, repair it and index what was flagged.

    Raises:
        IndexUnavailableError (IndexBusyError): the index cannot be opened here.
    """
    index = index or providers.indexing_index()  # during a model switch, the new model's store
    current_dim = index.dim()
    encoder = providers.get_encoder()
    model_id = encoder.model_id  # what indexing records on each row
    report = ReconcileReport(model_id=model_id)
    if current_dim is not None and current_dim != encoder.dim:
        report.dimension = (current_dim, encoder.dim)
    points = set(index.point_ids()) if not report.dimension else set()
    report.points = index.count()
    active = set(Product.objects.searchable().values_list("pk", flat=True))
    report.orphans = sorted(points - active)
    indexed = Product.objects.searchable().filter(index_status=IndexStatus.INDEXED).order_by("pk")
    report.rows_indexed = indexed.count()
    if not report.dimension:
        for start in range(0, report.rows_indexed, READ_BATCH):
            batch = list(indexed[start : start + READ_BATCH])
            _check(batch, points, model_id, report)
            if progress:
                progress(len(batch))
    if fix and report.problems:
        report.fixed = _fix(report, index)
    return report


def _check(products: list[Product], points: set[int], model_id: str, report: ReconcileReport) -> None:
    for product in products:
        if product.pk not in points:
            report.missing.append(product.pk)
        elif product.indexed_model != model_id:
            report.stale_model.append(product.pk)
        else:
            try:
                source = product_source(product, model_id)
            except ValidationError as exc:
                report.unreadable[product.pk] = " ".join(exc.messages)
                report.stale_content.append(product.pk)  # indexing records why it fails
                continue
            if (source.content_hash, source.payload_hash) != (product.content_hash, product.payload_hash):
                report.stale_content.append(product.pk)


def _fix(report: ReconcileReport, index: ProductIndex) -> IndexReport:
    if report.dimension:
        index.drop()
        ids = list(Product.objects.searchable().values_list("pk", flat=True))
    else:
        index.delete(report.orphans)
        ids = sorted(set(report.missing) | set(report.stale_model) | set(report.stale_content))
    Product.objects.filter(pk__in=ids).mark_pending()
    logger.warning(
        "reconcile_index: %d product(s) flagged for indexing, %d orphan point(s) removed.",
        len(ids),
        0 if report.dimension else len(report.orphans),
    )
    done = IndexReport(removed=0 if report.dimension else len(report.orphans))
    for start in range(0, len(ids), 64):
        done.merge(products_index(product_ids=ids[start : start + 64], index=index))
    return done


__all__ = ["ReconcileReport", "index_reconcile"]
