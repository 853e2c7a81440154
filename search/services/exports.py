"""Exports of the search and click log for data teams, streamed in bounded memory.

`events`: one row per search with its impressions and clicks.
`triplets`: training rows (query, positive, negative): a clicked product, and each product
shown above it that was skipped (a hard negative), unless a ranking rule placed it there
(pinned, boosted, buried: the model did not rank it, and a merchandiser's choice is no
negative). Only word searches ordered by relevance give negatives: a list sorted by price or
date, a browse or a photo search says nothing about how well a skipped product fits the words.
Each row says the sort and filters of its search, and the `propensity` of its click's
position: how likely shoppers look there relative to the first (selectors.experiments
.position_bias, from the log's adjacent swaps; empty where unknown). finetune_model weighs a
row by its inverse, so that clicks low on the page, which fewer shoppers saw, count as much
as those at the top. Columns query/positive/negative come first;
`text_only` keeps just those three, the form sentence-transformers trains on directly.

Parquet columns are typed: times are timestamps (UTC), filters and merchandising structures;
JSONL nests them and writes times in ISO 8601, CSV holds them as JSON text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from typing import IO

from django.db.models import Prefetch
from django.utils import timezone

from catalog.models import Product
from search.models import Click, SearchEvent, SearchImpression
from search.retrieval.experiments import Propensities
from search.selectors.experiments import position_bias

KINDS = ("events", "triplets")
FORMATS = ("jsonl", "csv", "parquet")
CHUNK = 500  # searches read per query: memory stays flat whatever the log's size
# The searches whose lists teach what fits words: word searches in relevance order, clicked
TRIPLET_SEARCHES = {"mode": "text", "sort": "relevance", "clicks__isnull": False}

# The one definition of each export's columns, in order, with their types: the CSV header, the
# JSONL keys and their order, the Parquet schema and the trainer's reader all come from here.
# "json" is a nested value in JSONL and JSON text in CSV and Parquet; "impressions" and
# "clicks" are lists of the records defined below them.
Columns = tuple[tuple[str, str], ...]
TRIPLET_TEXT_COLUMNS: Columns = (("query", "string"), ("positive", "string"), ("negative", "string"))
TRIPLET_COLUMNS: Columns = TRIPLET_TEXT_COLUMNS + (
    ("positive_image", "string"),
    ("negative_image", "string"),
    ("positive_id", "int64"),
    ("negative_id", "int64"),
    ("positive_position", "int32"),
    ("negative_position", "int32"),
    ("search_id", "string"),
    ("sort", "string"),
    ("filters", "filters"),
    ("propensity", "float64"),
)
EVENT_COLUMNS: Columns = (
    ("search_id", "string"),
    ("created_at", "timestamp"),
    ("channel", "string"),
    ("mode", "string"),
    ("query", "string"),
    ("query_normalized", "string"),
    ("filters", "filters"),
    ("sort", "string"),
    ("strategy", "string"),
    ("model_id", "string"),
    ("page", "int32"),
    ("page_size", "int32"),
    ("result_count", "int32"),
    ("session_hash", "string"),
    ("merchandising", "merchandising"),
    ("experiment", "string"),
    ("arm", "string"),
    ("swap_probability", "float64"),
    ("swapped_at", "int32"),
    ("impressions", "impressions"),
    ("clicks", "clicks"),
)
RECORDS: dict[str, Columns] = {
    "impressions": (
        ("position", "int32"),
        ("product_id", "int64"),
        ("sku", "string"),
        ("score", "float64"),
        ("placement", "string"),
        ("team", "string"),
    ),
    "clicks": (("position", "int32"), ("product_id", "int64"), ("sku", "string"), ("created_at", "timestamp")),
}
# One structure each ("filters", "merchandising"): a search's filters as the log keeps them
# (services.events), every key present; the attributes are [{"field", "values"}, ...].
STRUCTS: dict[str, Columns] = {
    "filters": (
        ("category", "strings"),
        ("brand", "strings"),
        ("price_min", "float64"),
        ("price_max", "float64"),
        ("attributes", "attributes"),
        ("read", "strings"),
    ),
    "merchandising": (("rules", "ints"), ("synonyms", "ints")),
}


def export_schema(kind: str, text_only: bool = False) -> Columns:
    """The columns of an export, with their types."""
    if kind == "events":
        return EVENT_COLUMNS
    return TRIPLET_TEXT_COLUMNS if text_only else TRIPLET_COLUMNS


def export_columns(kind: str, text_only: bool = False) -> list[str]:
    return [name for name, _ in export_schema(kind, text_only)]


def _project(columns: Columns, values: dict) -> dict:
    """A row with exactly these columns, in their order (a missing value is a KeyError here,
    not a silently short file)."""
    return {name: values[name] for name, _ in columns}


def _structured(kind: str, value: dict | None) -> dict:
    """A logged structure (STRUCTS) with every key, whatever the log's version wrote."""
    value = value or {}
    out: dict = {}
    for name, type_name in STRUCTS[kind]:
        given = value.get(name)
        if type_name == "float64":
            out[name] = float(given) if given not in (None, "") else None
        elif type_name == "attributes":  # a list, not a map: Hugging Face datasets reads no maps
            out[name] = [{"field": field, "values": list(values)} for field, values in (given or {}).items()]
        else:
            out[name] = list(given or [])
    return out


def _bounds(since: date | None, until: date | None) -> dict:
    """Dates are whole days in the server's time zone; `until` is inclusive."""
    tz = timezone.get_current_timezone()
    out = {}
    if since:
        out["created_at__gte"] = datetime.combine(since, time.min, tzinfo=tz)
    if until:
        out["created_at__lte"] = datetime.combine(until, time.max, tzinfo=tz)
    return out


def _events(since: date | None, until: date | None, **extra):
    return (
        SearchEvent.objects.filter(**_bounds(since, until), **extra)
        .order_by("created_at", "id")
        .prefetch_related(
            Prefetch("impressions", queryset=SearchImpression.objects.order_by("position")),
            Prefetch("clicks", queryset=Click.objects.order_by("position")),
        )
    )


def export_size(*, kind: str, since: date | None = None, until: date | None = None) -> int:
    """How many searches an export reads (the progress bar's total)."""
    extra = TRIPLET_SEARCHES if kind == "triplets" else {}
    return SearchEvent.objects.filter(**_bounds(since, until), **extra).distinct().count()


def _event_row(event: SearchEvent) -> dict:
    return _project(
        EVENT_COLUMNS,
        {
            "search_id": event.pk.hex,
            "created_at": event.created_at,
            "channel": event.channel,
            "mode": event.mode,
            "query": event.query,
            "query_normalized": event.query_normalized,
            "filters": _structured("filters", event.filters),
            "sort": event.sort,
            "strategy": event.strategy,
            "model_id": event.model_id,
            "page": event.page,
            "page_size": event.page_size,
            "result_count": event.result_count,
            "session_hash": event.session_hash,
            "merchandising": _structured("merchandising", event.merchandising),
            "experiment": event.experiment,
            "arm": event.arm,
            "swap_probability": event.swap_probability,
            "swapped_at": event.swapped_at,
            "impressions": [
                _project(
                    RECORDS["impressions"],
                    {
                        "position": i.position,
                        "product_id": i.product_id,
                        "sku": i.product_sku,
                        "score": i.score,
                        "placement": i.placement,
                        "team": i.team,
                    },
                )
                for i in event.impressions.all()
            ],
            "clicks": [
                _project(
                    RECORDS["clicks"],
                    {
                        "position": c.position,
                        "product_id": c.product_id,
                        "sku": c.product_sku,
                        "created_at": c.created_at,
                    },
                )
                for c in event.clicks.all()
            ],
        },
    )


def _image_path(product: Product) -> str | None:
    if not product.image:
        return None
    try:
        return product.image.path
    except NotImplementedError:  # remote storage: no local path, the URL still locates it
        return product.image.url


def _triplet_rows(events: list[SearchEvent], text_only: bool, bias: Propensities) -> Iterator[dict]:
    columns = export_schema("triplets", text_only)
    ids = {i.product_id for e in events for i in e.impressions.all() if i.product_id}
    products = Product.objects.in_bulk(ids)
    for event in events:
        filters = _structured("filters", event.filters)
        clicked = {c.product_sku for c in event.clicks.all()}
        shown = list(event.impressions.all())
        for click in event.clicks.all():
            positive = products.get(click.product_id)
            if positive is None:
                continue
            for skipped in shown:
                negative = products.get(skipped.product_id)
                if (
                    skipped.position >= click.position
                    or skipped.product_sku in clicked
                    or negative is None
                    or skipped.placement
                ):
                    continue
                yield _project(
                    columns,
                    {
                        "query": event.query,
                        "positive": positive.search_text,
                        "negative": negative.search_text,
                        "positive_image": _image_path(positive),
                        "negative_image": _image_path(negative),
                        "positive_id": positive.pk,
                        "negative_id": negative.pk,
                        "positive_position": click.position,
                        "negative_position": skipped.position,
                        "search_id": event.pk.hex,
                        "sort": event.sort,
                        "filters": filters,
                        "propensity": bias.weighing(click.position),
                    },
                )


def clicks_export(
    *,
    kind: str,
    since: date | None = None,
    until: date | None = None,
    text_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """Yield export rows, reading the log CHUNK searches at a time."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    extra = TRIPLET_SEARCHES if kind == "triplets" else {}
    queryset = _events(since, until, **extra).distinct()
    bias = position_bias() if kind == "triplets" else Propensities((1.0,), ())
    chunk: list[SearchEvent] = []
    for event in queryset.iterator(chunk_size=CHUNK):
        chunk.append(event)
        if len(chunk) == CHUNK:
            yield from (map(_event_row, chunk) if kind == "events" else _triplet_rows(chunk, text_only, bias))
            if progress:
                progress(len(chunk))
            chunk = []
    if chunk:
        yield from (map(_event_row, chunk) if kind == "events" else _triplet_rows(chunk, text_only, bias))
        if progress:
            progress(len(chunk))


def _parquet_schema(kind: str, text_only: bool):
    import pyarrow as pa

    scalars = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "strings": pa.list_(pa.string()),
        "ints": pa.list_(pa.int64()),
        "attributes": pa.list_(pa.struct([("field", pa.string()), ("values", pa.list_(pa.string()))])),
    }

    def arrow(type_name: str):
        if type_name in RECORDS:
            return pa.list_(pa.struct([(name, arrow(t)) for name, t in RECORDS[type_name]]))
        if type_name in STRUCTS:
            return pa.struct([(name, arrow(t)) for name, t in STRUCTS[type_name]])
        return scalars[type_name]

    return pa.schema([(name, arrow(t)) for name, t in export_schema(kind, text_only)])


def _iso(value):
    """JSON for what json cannot write itself: times in ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _flat(row: dict) -> dict:
    """CSV cells hold nested values as JSON text and times in ISO 8601."""
    return {
        k: json.dumps(v, default=_iso) if isinstance(v, (dict, list)) else _iso(v) if isinstance(v, datetime) else v
        for k, v in row.items()
    }


# A text cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: a shopper's query such as `=HYPERLINK(...)` gets a
    leading apostrophe. JSONL and Parquet keep the text as it was."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _inert(row: dict) -> dict:
    return {k: csv_cell(v) for k, v in row.items()}


def iter_encoded(rows: Iterator[dict], *, fmt: str, columns: list[str]) -> Iterator[bytes]:
    """JSONL or CSV as a stream of byte chunks (for a streaming HTTP response or a file)."""
    if fmt == "jsonl":
        for row in rows:
            yield (json.dumps(row, ensure_ascii=False, default=_iso) + "\n").encode()
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(_inert(_flat(row)))
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()
    else:
        raise ValueError(f"{fmt} cannot be streamed as text; use write_export")


def write_export(rows: Iterator[dict], *, fmt: str, kind: str, text_only: bool, out: IO[bytes]) -> int:
    """Write rows to a binary file object in the format; returns how many rows were written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    count = 0

    def counted(source: Iterator[dict]) -> Iterator[dict]:
        nonlocal count
        for row in source:
            count += 1
            yield row

    if fmt in ("jsonl", "csv"):
        for chunk in iter_encoded(counted(rows), fmt=fmt, columns=export_columns(kind, text_only)):
            out.write(chunk)
        return count
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(kind, text_only)
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[dict] = []
        for row in counted(rows):
            batch.append(row)
            if len(batch) == 1000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return count


__all__ = [
    "KINDS",
    "FORMATS",
    "clicks_export",
    "csv_cell",
    "export_columns",
    "export_schema",
    "export_size",
    "iter_encoded",
    "write_export",
]
