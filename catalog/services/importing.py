"""Bulk import of CSV or JSONL catalogs.

Every bad row is reported with its line number and reason while good rows are kept.
Rows are written in chunks, each in its own transaction, and each chunk's products are
announced together after it commits, so the serving app queues them in batches (never one
task per row).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from catalog.fetching import FetchBudget, image_download
from catalog.images import image_load
from catalog.models import IndexStatus, Product
from catalog.signals import products_changed_on_commit

logger = logging.getLogger(__name__)

COLUMNS = ("sku", "title", "description", "brand", "category", "price", "currency", "image", "attributes", "active")
REQUIRED_COLUMNS = ("sku", "title")
TEXT_FIELDS = ("title", "description", "brand", "category")
TRUE_WORDS = {"1", "true", "yes", "y", "on"}
FALSE_WORDS = {"0", "false", "no", "n", "off"}


@dataclass(frozen=True)
class RowError:
    line: int
    sku: str
    message: str
    last_line: int = 0  # the row's last line, when it spans several

    def __str__(self) -> str:
        sku = f" (sku {self.sku})" if self.sku else ""
        return f"line {self.line}{sku}: {self.message}"

    @property
    def lines(self) -> int:
        return max(self.last_line, self.line) - self.line + 1


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)
    lines: int = 0  # every line of the file, the header and blank lines included

    @property
    def failed(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        """Every line of the file accounted for: the rows written or left as they were, and the
        lines of the rows refused (a row may span lines: a quoted cell with line breaks)."""
        not_imported = sum(e.lines for e in self.errors)
        errors = f"{self.failed} error{'s' if self.failed != 1 else ''}"
        return (
            f"{self.lines} lines: {self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{not_imported} not imported ({errors})"
        )


class ImportFileError(ValueError):
    """The file as a whole cannot be read (wrong format, missing columns, bad encoding)."""


@dataclass
class _Row:
    line: int
    data: dict[str, Any]


def _detect_format(name: str, explicit: str | None) -> str:
    if explicit:
        fmt = explicit.lower()
    else:
        suffix = Path(name).suffix.lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "")
    if fmt not in {"csv", "jsonl"}:
        raise ImportFileError(f"Cannot tell the format of {name!r}: name it .csv or .jsonl, or pass the format.")
    return fmt


def _decoded_lines(source: IO[bytes], report: ImportReport) -> Iterator[tuple[int, str]]:
    """Each line of the file as text, with its number. A line that is not UTF-8 is reported
    (with the byte of that line it fails at) and left out; the rest of the file still imports."""
    for number, raw in enumerate(source, start=1):
        report.lines = number
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.errors.append(
                RowError(
                    number,
                    "",
                    f"not UTF-8 text (byte {exc.start + 1} of the line is "
                    f"0x{raw[exc.start]:02x}); save the file as UTF-8.",
                )
            )


def _iter_jsonl(lines: Iterator[tuple[int, str]], report: ImportReport) -> Iterator[_Row]:
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            report.errors.append(RowError(number, "", f"not valid JSON ({exc.msg} at column {exc.colno})."))
            continue
        except RecursionError:
            report.errors.append(RowError(number, "", "the JSON is nested too deeply."))
            continue
        if not isinstance(data, dict):
            report.errors.append(RowError(number, "", "each line must be a JSON object."))
            continue
        yield _Row(number, data)


def _iter_csv(lines: Iterator[tuple[int, str]], report: ImportReport) -> Iterator[_Row]:
    """Rows of a CSV file with the line each starts on. Strict quoting: a quote left open is an
    error that names its line and the lines it swallowed, not a silently merged row."""
    numbers: list[int] = []  # the file's line number of each line the reader has taken

    def fed() -> Iterator[str]:
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(fed(), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"The CSV header cannot be read: {exc}.") from exc
    if not header:
        raise ImportFileError(f"The CSV file is empty: it needs a header row such as {','.join(COLUMNS)}.")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ImportFileError(
            f"The CSV header lacks the column(s) {', '.join(missing)}; expected columns: {', '.join(COLUMNS)}."
        )
    while True:
        taken = len(numbers)
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first = numbers[taken] if len(numbers) > taken else report.lines
            last = numbers[-1] if numbers else first
            if "unexpected end of data" in str(exc):
                swallowed = (
                    f"so lines {first}-{last} were read as one row; nothing from them was imported"
                    if last > first
                    else "so nothing from it was imported"
                )
                report.errors.append(
                    RowError(
                        first,
                        "",
                        f"a quote opened on this line is never closed, {swallowed}. Close the quote (or "
                        "double a quote inside a quoted cell).",
                        last_line=last,
                    )
                )
            else:
                report.errors.append(RowError(first, "", f"the CSV row cannot be parsed ({exc}).", last_line=last))
            continue
        first, last = numbers[taken], numbers[-1]
        if not cells or cells == [""] * len(cells) and len(cells) <= 1:
            continue  # a blank line
        sku = cells[header.index("sku")].strip() if len(cells) > header.index("sku") else ""
        if len(cells) != len(header):
            absent = header[len(cells) :]
            what = (
                (
                    f"{', '.join(absent)} missing: a short row would blank them; write the row whole, with "
                    "empty cells between commas where there is nothing"
                )
                if absent
                else "the row has more cells than the header has columns"
            )
            report.errors.append(
                RowError(
                    first,
                    sku,
                    f"the row has {len(cells)} cells but the header has {len(header)} columns ({what}).",
                    last_line=last,
                )
            )
            continue
        yield _Row(first, dict(zip(header, cells)))


class _ImageResolver:
    """Turns an `image` cell into bytes: a path inside images_dir, or an http(s) URL."""

    def __init__(self, images_dir: Path | None):
        self.images_dir = images_dir.resolve() if images_dir else None
        self.budget = FetchBudget()  # the whole import's time for downloading images

    def fetch(self, value: str) -> tuple[bytes, str]:
        value = value.strip()
        if value.lower().startswith(("http://", "https://")):
            return self._download(value), value.rsplit("/", 1)[-1] or "image"
        if "://" in value:
            raise ValidationError(f"image: only http(s) URLs or paths are accepted, not {value!r}.")
        if self.images_dir is None:
            raise ValidationError(
                "image: a path was given but no images directory; "
                "pass --images-dir (or upload the images with the file)."
            )
        path = (self.images_dir / value).resolve()
        if not path.is_relative_to(self.images_dir):
            raise ValidationError(f"image: {value!r} points outside the images directory.")
        if not path.is_file():
            raise ValidationError(
                f"image: no file {value!r} among the images (the images folder, or the uploaded ZIP)."
            )
        size = path.stat().st_size
        if size > settings.CATALOG_MAX_IMAGE_BYTES:
            raise ValidationError(
                f"image: {value!r} is {filesizeformat(size)}, over the "
                f"{filesizeformat(settings.CATALOG_MAX_IMAGE_BYTES)} limit."
            )
        return path.read_bytes(), path.name

    def _download(self, url: str) -> bytes:
        return image_download(url, self.budget)


def _parse_value(name: str, value: Any) -> Any:
    """Convert one cell to the model's type, or raise ValidationError naming the column."""
    if name in TEXT_FIELDS or name in {"sku", "currency"}:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ValidationError(f"{name}: expected text, got {type(value).__name__}.")
        text = str(value).strip()
        return text.upper() if name == "currency" else text
    if name == "price":
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValidationError("price: enter a number such as 19.99.")
        try:
            price = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValidationError(f"price: {str(value)[:40]!r} is not a number.") from exc
        if not price.is_finite():
            raise ValidationError("price: enter a finite number.")
        return price
    if name == "attributes":
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"attributes: not valid JSON ({exc.msg}).") from exc
        if not isinstance(value, dict):
            raise ValidationError('attributes: must be a JSON object such as {"color": "red"}.')
        return value
    if name == "active":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word == "":
            return True
        if word in FALSE_WORDS:
            return False
        raise ValidationError(f"active: {str(value)[:20]!r} is not true or false.")
    raise AssertionError(name)


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def _build(row: _Row, existing: Product | None, images: _ImageResolver) -> tuple[Product, bool, bytes | None, str]:
    """Returns (product, changed, image bytes to store or None, image name)."""
    data = row.data
    product = existing or Product()
    changed = existing is None
    for name in COLUMNS:
        if name == "image" or data.get(name) is None:
            continue  # a column left out, or a JSON null: the stored value stays
        value = _parse_value(name, data[name])
        if getattr(product, name) != value:
            setattr(product, name, value)
            changed = True
    image_bytes: bytes | None = None
    image_name = ""
    image_value = data.get("image")
    if isinstance(image_value, str) and "\x00" in image_value:
        raise ValidationError("image: the path or URL contains a NUL character.")
    if isinstance(image_value, str) and image_value.strip():
        raw, image_name = images.fetch(image_value)
        checked = image_load(raw, name=f"image {image_value.strip()!r}")
        # An unchanged image (same bytes, same content-hash name) is not copied again.
        if not checked.is_stored_as(product.image.name if product.image else ""):
            image_bytes = raw
            image_name = checked.stored_name
            changed = True
    elif image_value not in (None, ""):
        raise ValidationError("image: expected a path or URL as text.")
    product.clean_fields(exclude=["image"])
    return product, changed, image_bytes, image_name


def catalog_import(
    *,
    source: IO[bytes] | Path,
    name: str = "",
    file_format: str | None = None,
    images_dir: Path | None = None,
    chunk_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Create or update products from a CSV or JSONL catalog; returns counts and row errors."""
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
            )
    fmt = _detect_format(name or "upload", file_format)
    report = ImportReport()
    lines = _decoded_lines(source, report)
    images = _ImageResolver(images_dir)
    rows = _iter_csv(lines, report) if fmt == "csv" else _iter_jsonl(lines, report)
    seen: dict[str, int] = {}
    chunk: list[_Row] = []
    for row in rows:
        sku = str(row.data.get("sku") or "").strip()
        if sku in seen:
            report.errors.append(RowError(row.line, sku, f"sku already appeared on line {seen[sku]}."))
            continue
        if sku:
            seen[sku] = row.line
        chunk.append(row)
        if len(chunk) >= chunk_size:
            _import_chunk(chunk, images, report)
            if progress:
                progress(len(chunk))
            chunk = []
    if chunk:
        _import_chunk(chunk, images, report)
        if progress:
            progress(len(chunk))
    report.errors.sort(key=lambda e: e.line)
    return report


def _import_chunk(chunk: list[_Row], images: _ImageResolver, report: ImportReport) -> None:
    skus = [str(r.data.get("sku") or "").strip() for r in chunk]
    existing = {p.sku: p for p in Product.objects.filter(sku__in=[s for s in skus if s])}
    to_create: list[tuple[_Row, Product, bytes | None, str]] = []
    to_update: list[tuple[_Row, Product, bytes | None, str]] = []
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
            product, changed, image_bytes, image_name = _build(row, current, images)
        except ValidationError as exc:
            report.errors.append(RowError(row.line, sku, _messages(exc)))
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
        return
    try:
        _write(to_create, to_update, report)
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


def _write(to_create: list, to_update: list, report: ImportReport) -> None:
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
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        for _, product, _, _ in to_create:
            product.pk = None  # not saved after all
        raise
    report.created += len(created)
    report.updated += len(updated)
    report.product_ids.extend(ids)
