"""The import: rows written in chunks, each in its own transaction, each chunk's products
announced together after it commits, so the serving app queues them in batches (never one task
per row). Good rows are kept whatever the bad ones."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from catalog.models import IndexStatus, Product
from catalog.signals import products_changed_on_commit

from .reading import COLUMNS, ImportReport, ImportRow, RowError, format_detect, lines_decoded, rows_csv, rows_jsonl
from .rows import ImageResolver, messages_of, row_build

logger = logging.getLogger(__name__)


def catalog_import(
    *,
    source: IO[bytes] | Path,
    name: str = "",
    file_format: str | None = None,
    images_dir: Path | None = None,
    chunk_size: int = 500,
    progress: Callable[[int], None] | None = None,
    checkpoint: Callable[[ImportCheckpoint], None] | None = None,
    resume: ImportCheckpoint | None = None,
) -> ImportReport:
    """Create or update products from a CSV or JSONL catalog; returns counts and row errors.

    checkpoint: called after each chunk is written with how far the import got and its counts;
    resume: such a checkpoint, to go on from (an import whose process died): the rows it had
    written are not read again, and its report counts them."""
    if isinstance(source, Path):
        name = name or source.name
        if images_dir is None:
            images_dir = source.parent
        with source.open("rb") as handle:
            return catalog_import(
                source=handle,
                name=name,
                file_format=file_format,
                images_dir=images_dir,
                chunk_size=chunk_size,
                progress=progress,
                checkpoint=checkpoint,
                resume=resume,
            )
    fmt = format_detect(name or "upload", file_format)
    report = ImportReport()
    lines = lines_decoded(source, report)
    rows = rows_csv(lines, report) if fmt == "csv" else rows_jsonl(lines, report)
    chunks = _Chunks(ImageResolver(images_dir), report, chunk_size, progress, checkpoint)
    chunks.run(rows, done=resume.restore(report) if resume is not None else 0)
    report.errors = sorted({(e.line, e.message): e for e in report.errors}.values(), key=lambda e: e.line)
    return report


class _Chunks:
    """The rows read into chunks, each written in its transaction, with duplicates refused."""

    def __init__(self, images: ImageResolver, report: ImportReport, size: int, progress, checkpoint) -> None:
        self.images, self.report, self.size = images, report, size
        self.progress, self.checkpoint = progress, checkpoint
        self.chunk: list[ImportRow] = []
        self.consumed = 0

    def run(self, rows: Iterator[ImportRow], *, done: int) -> None:
        """Write the rows after the first `done` (written before the import was interrupted; their
        SKUs still count, so a later duplicate of one is refused)."""
        seen: dict[str, int] = {}
        for row in rows:
            self.consumed += 1
            sku = str(row.data.get("sku") or "").strip()
            if self.consumed <= done:
                seen.setdefault(sku, row.line)
                continue
            if sku in seen:
                self.report.errors.append(RowError(row.line, sku, f"sku already appeared on line {seen[sku]}."))
                continue
            if sku:
                seen[sku] = row.line
            self.chunk.append(row)
            if len(self.chunk) >= self.size:
                self.write()
        if self.chunk:
            self.write()

    def write(self) -> None:
        def saved(created: int = 0, updated: int = 0) -> None:
            # in the chunk's own transaction where it has one: a process killed between the
            # two would otherwise count the chunk's new rows again as unchanged when it resumes
            if self.checkpoint:
                self.checkpoint(ImportCheckpoint.of(self.consumed, self.report, created=created, updated=updated))

        if not _import_chunk(self.chunk, self.images, self.report, then=saved):
            saved()
        if self.progress:
            self.progress(len(self.chunk))
        self.chunk = []


@dataclass(frozen=True)
class ImportCheckpoint:
    """How far an import got: the rows it had read and written, and its counts then (JSON-able
    with `as_dict`, so a background import keeps it on its job)."""

    rows: int
    created: int
    updated: int
    unchanged: int
    errors: tuple[tuple[int, str, str, int], ...]  # (line, sku, message, last line)

    @classmethod
    def of(cls, rows: int, report: ImportReport, *, created: int = 0, updated: int = 0) -> ImportCheckpoint:
        """The report's counts, plus rows being written (not in the report until they commit)."""
        errors = tuple((e.line, e.sku, e.message, e.last_line) for e in report.errors)
        return cls(rows, report.created + created, report.updated + updated, report.unchanged, errors)

    @classmethod
    def from_dict(cls, data: dict) -> ImportCheckpoint:
        return cls(
            int(data["rows"]),
            int(data["created"]),
            int(data["updated"]),
            int(data["unchanged"]),
            tuple((int(line), str(sku), str(message), int(last)) for line, sku, message, last in data["errors"]),
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "errors": [list(e) for e in self.errors]}

    def restore(self, report: ImportReport) -> int:
        """Put the counts into a new report; returns the rows to pass over."""
        report.created, report.updated, report.unchanged = self.created, self.updated, self.unchanged
        report.errors.extend(RowError(line, sku, message, last) for line, sku, message, last in self.errors)
        return self.rows


def _import_chunk(
    chunk: list[ImportRow],
    images: ImageResolver,
    report: ImportReport,
    *,
    then: Callable[[int, int], None] | None = None,
) -> bool:
    """Write a chunk's rows. `then(created, updated)` runs inside the transaction that writes them
    (a checkpoint saved with the rows it counts); returns whether it ran there (else the caller
    runs it after: nothing was written, or the rows were written one by one)."""
    skus = [str(r.data.get("sku") or "").strip() for r in chunk]
    existing = {p.sku: p for p in Product.objects.filter(sku__in=[s for s in skus if s])}
    to_create: list[tuple[ImportRow, Product, bytes | None, str]] = []
    to_update: list[tuple[ImportRow, Product, bytes | None, str]] = []
    for row, sku in zip(chunk, skus):
        if not sku:
            report.errors.append(RowError(row.line, "", "sku: this column is required."))
            continue
        current = existing.get(sku)
        if current is None and not str(row.data.get("title") or "").strip():
            report.errors.append(RowError(row.line, sku, "title: this column is required."))
            continue
        if current is None and row.data.get("price") is None:
            report.errors.append(RowError(row.line, sku, "price: this column is required for a new product."))
            continue
        try:
            product, changed, image_bytes, image_name = row_build(row, current, images)
        except ValidationError as exc:
            report.errors.append(RowError(row.line, sku, messages_of(exc)))
            continue
        except (SuspiciousFileOperation, ValueError, RecursionError) as exc:  # a path or value no check foresaw
            report.errors.append(RowError(row.line, sku, f"the row cannot be read ({str(exc)[:200]})."))
            continue
        if current is None:
            to_create.append((row, product, image_bytes, image_name))
        elif changed:
            to_update.append((row, product, image_bytes, image_name))
        else:
            report.unchanged += 1
    if not to_create and not to_update:
        return False
    try:
        _write(to_create, to_update, report, then=then)
        return True
    except (DatabaseError, SuspiciousFileOperation, OSError, ValueError) as exc:
        # one row the database or the file storage refuses: write the chunk's rows one by one,
        # so that the others are kept and that row is reported with the reason
        logger.warning(
            "Importing a chunk of %d row(s) failed (%s); writing them one by one.", len(to_create) + len(to_update), exc
        )
        for item in to_create + to_update:
            creating = any(item is c for c in to_create)
            if not creating:
                item[1].refresh_from_db(fields=["image"])  # what the rolled-back write may have set
            try:
                _write([item] if creating else [], [] if creating else [item], report)
            except (DatabaseError, SuspiciousFileOperation, OSError, ValueError) as row_exc:
                report.errors.append(RowError(item[0].line, item[1].sku, f"could not be saved ({str(row_exc)[:200]})."))
        return False


def _write(to_create: list, to_update: list, report: ImportReport, *, then=None) -> None:
    """Write the rows in one transaction; if it fails, the image files it stored are deleted."""
    now = timezone.now()
    stored: list[str] = []
    try:
        with transaction.atomic():
            for _, product, image_bytes, image_name in to_create + to_update:
                if image_bytes is not None:
                    product.image.save(image_name, ContentFile(image_bytes), save=False)
                    stored.append(product.image.name)  # a file this write made
            created = Product.objects.bulk_create([p for _, p, _, _ in to_create])
            updated = [p for _, p, _, _ in to_update]
            for product in updated:
                product.index_status = IndexStatus.PENDING
                product.updated_at = now
            if updated:
                Product.objects.bulk_update(
                    updated, [c for c in COLUMNS if c != "sku"] + ["index_status", "updated_at"]
                )
            ids = [p.pk for p in created] + [p.pk for p in updated]
            # bulk paths send no signals: announce the chunk explicitly, after commit
            products_changed_on_commit(product_ids=ids)
            if then is not None:
                then(len(created), len(updated))
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        for _, product, _, _ in to_create:
            product.pk = None  # not saved after all
        raise
    report.created += len(created)
    report.updated += len(updated)
    report.product_ids.extend(ids)
