"""Reading a CSV or JSONL catalog into rows, line by line, with every bad line reported by its
number and reason (an unreadable file is an ImportFileError)."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

COLUMNS = ("sku", "title", "description", "brand", "category", "price", "currency", "image", "attributes", "active")


REQUIRED_COLUMNS = ("sku", "title")


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
    header: int = 0  # the CSV header's line
    blank: int = 0  # blank lines, skipped

    @property
    def failed(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        """Every line of the file accounted for: the rows written or left as they were, and the
        lines of the rows refused (a row may span lines: a quoted cell with line breaks)."""
        not_imported = sum(e.lines for e in self.errors)
        errors = f"{self.failed} error{'s' if self.failed != 1 else ''}"
        skipped = "".join(f"{n} {what}, " for n, what in ((self.header, "header"), (self.blank, "blank")) if n)
        return (
            f"{self.lines} lines: {skipped}{self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {not_imported} not imported ({errors})"
        )


class ImportFileError(ValueError):
    """The file as a whole cannot be read (wrong format, missing columns, bad encoding)."""


@dataclass
class ImportRow:
    line: int
    data: dict[str, Any]


def format_detect(name: str, explicit: str | None) -> str:
    if explicit:
        fmt = explicit.lower()
    else:
        suffix = Path(name).suffix.lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "")
    if fmt not in {"csv", "jsonl"}:
        raise ImportFileError(f"Cannot tell the format of {name!r}: name it .csv or .jsonl, or pass the format.")
    return fmt


def lines_decoded(source: IO[bytes], report: ImportReport) -> Iterator[tuple[int, str]]:
    """Each line of the file as text, with its number. UTF-8 (with or without a byte-order mark),
    or UTF-16 with its mark (what some spreadsheets save as "Unicode text"). A UTF-8 line that
    does not decode is reported (with the byte of that line it fails at) and left out; the rest
    of the file still imports."""
    first = source.readline()
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        yield from _utf16_lines(first, source, report)
        return
    # readline throughout: a Django File's own line iterator starts again from the top
    for number, raw in enumerate(itertools.chain([first] if first else [], iter(source.readline, b"")), start=1):
        report.lines = number
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
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


def _utf16_lines(first: bytes, source: IO[bytes], report: ImportReport) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-16")()  # reads the mark, and drops it
    pending, number = "", 0

    def decoded(chunk: bytes, *, final: bool = False) -> str:
        try:
            return decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"The file starts as UTF-16 text but is not UTF-16 after line {number} ({exc.reason}); "
                "save it as UTF-8."
            ) from exc

    for chunk in itertools.chain([first], iter(lambda: source.read(1 << 16), b"")):
        *complete, pending = (pending + decoded(chunk)).split("\n")
        for text in complete:
            number += 1
            report.lines = number
            yield number, text + "\n"
    pending += decoded(b"", final=True)
    if pending:
        report.lines = number + 1
        yield number + 1, pending


def rows_jsonl(lines: Iterator[tuple[int, str]], report: ImportReport) -> Iterator[ImportRow]:
    for number, raw in lines:
        if not raw.strip():
            report.blank += 1
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
        yield ImportRow(number, data)


def rows_csv(lines: Iterator[tuple[int, str]], report: ImportReport) -> Iterator[ImportRow]:
    """Rows of a CSV file with the line each starts on. Strict quoting: a quote left open is an
    error that names its line and the lines it swallowed, not a silently merged row."""
    numbers: list[int] = []  # the file's line number of each line the reader has taken

    def fed() -> Iterator[str]:
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(fed(), strict=True)
    header = _csv_header(reader)
    report.header = len(numbers)  # a header may span lines as any row may
    while True:
        taken = len(numbers)
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first = numbers[taken] if len(numbers) > taken else report.lines
            report.errors.append(_csv_error(exc, first, numbers[-1] if numbers else first))
            continue
        first, last = numbers[taken], numbers[-1]
        if not cells or len(cells) <= 1 and not cells[0].strip():
            report.blank += last - first + 1
            continue  # a blank line
        if len(cells) != len(header):
            report.errors.append(_csv_short_or_long(header, cells, first, last))
            continue
        yield ImportRow(first, dict(zip(header, cells)))


def _csv_header(reader) -> list[str]:
    """The header's columns, or ImportFileError saying what the file lacks."""
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"The CSV header cannot be read: {exc}.") from exc
    if not header:
        raise ImportFileError(f"The CSV file is empty: it needs a header row such as {','.join(COLUMNS)}.")
    header = [h.strip() for h in header]
    for name in dict.fromkeys(h for h in header if h):
        where = [str(n) for n, h in enumerate(header, start=1) if h == name]
        if len(where) > 1:
            raise ImportFileError(
                f"The CSV header names the column {name!r} more than once (columns {' and '.join(where)}); "
                "keep one, so that it is clear which value counts."
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ImportFileError(
            f"The CSV header lacks the column(s) {', '.join(missing)}; expected columns: {', '.join(COLUMNS)}."
        )
    return header


def _csv_error(exc: csv.Error, first: int, last: int) -> RowError:
    if "unexpected end of data" not in str(exc):
        return RowError(first, "", f"the CSV row cannot be parsed ({exc}).", last_line=last)
    swallowed = (
        f"so lines {first}-{last} were read as one row; nothing from them was imported"
        if last > first
        else "so nothing from it was imported"
    )
    return RowError(
        first,
        "",
        f"a quote opened on this line is never closed, {swallowed}. Close the quote (or double a quote inside a "
        "quoted cell).",
        last_line=last,
    )


def _csv_short_or_long(header: list[str], cells: list[str], first: int, last: int) -> RowError:
    sku = cells[header.index("sku")].strip() if len(cells) > header.index("sku") else ""
    absent = header[len(cells) :]
    if absent:
        what = (
            f"{', '.join(absent)} missing: a short row would blank them; write the row whole, with empty cells "
            "between commas where there is nothing"
        )
    else:
        what = "the row has more cells than the header has columns"
    return RowError(
        first, sku, f"the row has {len(cells)} cells but the header has {len(header)} columns ({what}).", last_line=last
    )
