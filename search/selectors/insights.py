"""What shoppers search for, counted in the database from the search and click log, for the
merchandiser's insights page (search/admin.py).

A search is one logged answer (`SearchEvent`): a word search, settled (the storefront logs a
search typed keystroke by keystroke once), each further page of results counted again, as
search analytics products count them. Photo searches and browsing have no words, so the query
tables leave them out; the trend counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, Q, QuerySet, Sum

from search.models import Click, SearchEvent

from .lexicon import lexicon
from .searching.facets import price_phrase_label

# What the page's channel choice means, in the log's channel names
CHANNELS: dict[str, tuple[str, ...]] = {
    "all": (),
    "storefront": ("page", "htmx"),
    "api": ("api",),
    "photo": ("photo_page", "photo_api"),
}
TABLES = ("top", "zero", "no_clicks")


@dataclass(frozen=True)
class Period:
    """The days from `first` to `last`, both included (in the shop's time zone), and a channel
    (a key of CHANNELS)."""

    first: date
    last: date
    channel: str = "all"


class _Rates:
    """Shares of a row's searches: its fields searches, zero_results and clicked."""

    searches: int
    zero_results: int
    clicked: int

    @property
    def ctr(self) -> float:
        """Share of searches with a click."""
        return self.clicked / self.searches if self.searches else 0.0

    @property
    def zero_rate(self) -> float:
        return self.zero_results / self.searches if self.searches else 0.0


@dataclass(frozen=True)
class QueryRow(_Rates):
    query: str  # as the log folds it and compares it (case and spaces)
    searches: int
    zero_results: int  # searches that found nothing
    clicked: int  # searches with at least one click
    clicks: int
    mean_position: float | None  # of the clicks, 1 = first result


@dataclass(frozen=True)
class DayRow(_Rates):
    day: date
    searches: int
    zero_results: int
    clicked: int


@dataclass(frozen=True)
class ProductQueryRow:
    query: str
    clicks: int
    mean_position: float


@dataclass
class Summary(_Rates):
    searches: int = 0
    word_searches: int = 0
    zero_results: int = 0
    clicked: int = 0
    clicks: int = 0
    mean_position: float | None = None
    days: list[DayRow] = field(default_factory=list)


def period_searches(period: Period) -> QuerySet[SearchEvent]:
    searches = SearchEvent.objects.filter(day__gte=period.first, day__lte=period.last)
    channels = CHANNELS.get(period.channel, ())
    return searches.filter(channel__in=channels) if channels else searches


# What each table and the summary count, from the search rows alone: each search carries its
# clicks (count and position sum, written with the click) and its day, so nothing is joined and
# no date is computed per row.
# A search counts once per query typed: its filters, sorts and pages (`refines`) are not more
# searches, and their clicks are counted on it already (events.click_log).
FIRST = Q(refines__isnull=True)
COUNTED = {
    "searches": Count("id", filter=FIRST),
    "zero_results": Count("id", filter=FIRST & Q(result_count=0)),
    "clicked": Count("id", filter=FIRST & Q(click_count__gt=0)),
    "clicks": Sum("click_count", filter=FIRST),
    "position_sum": Sum("click_position_sum", filter=FIRST),
}


def _mean(position_sum: int | None, clicks: int | None) -> float | None:
    return position_sum / clicks if clicks else None


def query_tables(period: Period, *, limit: int = 50) -> dict[str, list[QueryRow]]:
    """The page's three query tables, from one grouping of the period's word searches:
    - top: the most searched queries;
    - zero: queries that found nothing, most often first;
    - no_clicks: queries that found something at least once and were never clicked, most
      searched first."""
    words = period_searches(period).filter(mode="text").exclude(query_normalized="")
    rows = [
        QueryRow(
            query=r["query_normalized"],
            searches=r["searches"],
            zero_results=r["zero_results"],
            clicked=r["clicked"],
            clicks=r["clicks"] or 0,
            mean_position=_mean(r["position_sum"], r["clicks"]),
        )
        for r in words.values("query_normalized").annotate(**COUNTED).order_by()
        if r["searches"]  # a query searched before the period, only refined in it
    ]
    by_searches = sorted(rows, key=lambda r: (-r.searches, r.query))
    return {
        "top": by_searches[:limit],
        "zero": sorted((r for r in rows if r.zero_results), key=lambda r: (-r.zero_results, -r.searches, r.query))[
            :limit
        ],
        "no_clicks": [r for r in by_searches if not r.clicks and r.searches > r.zero_results][:limit],
    }


@dataclass(frozen=True)
class FilterRow:
    """A filter value shoppers narrowed searches with: in how many searches, and the query it was
    used with most ("" for browsing)."""

    field: str  # "category", "brand", "price", an attribute's payload field ("attr_colour")
    value: str  # folded, as filters compare it; a price range as "min-max"
    searches: int
    top_query: str
    label: str = ""  # as the storefront shows it ("Kestrel", "$15 – $24.99")


# the most filtered searches the filters table reads in a period (the newest first)
FILTER_SCAN = 50_000


def filter_table(period: Period, *, limit: int = 20) -> list[FilterRow]:
    """The filters shoppers chose, apart from the queries: each value with the number of
    searches (a search and its refinements once) that used it, the most used first. Values the
    query's words named (logged as `read`) are the query's, not counted here."""
    used: dict[tuple[str, str], dict[str, set]] = {}
    rows = (
        period_searches(period)
        .filter(mode__in=("text", "browse"))
        .values_list("id", "refines", "query_normalized", "filters")
        .order_by("-created_at")[:FILTER_SCAN]
    )
    for pk, refines, query, filters in rows:
        read = set((filters or {}).get("read") or ())  # named by the words: the queries show them
        for key in _filter_values(filters or {}):
            if key[0] in read:
                continue
            found = used.setdefault(key, {})
            found.setdefault(query, set()).add(refines or pk)
    out = []
    for (name, value), by_query in used.items():
        searches = len(set().union(*by_query.values()))
        top = max(by_query, key=lambda q: (len(by_query[q]), q))
        out.append(FilterRow(name, value, searches, top, _value_label(name, value)))
    return sorted(out, key=lambda r: (-r.searches, r.field, r.value))[:limit]


def _value_label(name: str, value: str) -> str:
    """A logged filter value as the storefront shows it: the catalog's spelling, a price range
    as its chip says it."""
    words = lexicon()
    if name != "price":
        return words.labels.get(name, {}).get(value, value)
    low, _, high = value.partition("-")
    return price_phrase_label(Decimal(low) if low else None, Decimal(high) if high else None, words.currency)


def _filter_values(filters: dict) -> list[tuple[str, str]]:
    """A logged search's filters as (field, value) pairs (search.services.events._search_rows)."""
    pairs = [(name, v) for name in ("category", "brand") for v in filters.get(name) or ()]
    pairs += [(name, v) for name, values in (filters.get("attributes") or {}).items() for v in values]
    low, high = filters.get("price_min"), filters.get("price_max")
    if low is not None or high is not None:
        pairs.append(("price", f"{low or ''}-{high or ''}"))
    return pairs


def query_table(period: Period, *, table: str = "top", limit: int = 50) -> list[QueryRow]:
    """One of query_tables' tables (the CSV export)."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {', '.join(TABLES)}, not {table!r}")
    return query_tables(period, limit=limit)[table]


def summary(period: Period) -> Summary:
    """The period's totals and every one of its days, every search counted (photos and browsing
    too), in one grouping by day; the totals are the days' sums."""
    counted = {
        d["day"]: d
        for d in period_searches(period)
        .values("day")
        .annotate(**COUNTED, words=Count("id", filter=FIRST & Q(mode="text") & ~Q(query_normalized="")))
        .order_by()
    }
    days = []
    for n in range((period.last - period.first).days + 1):
        day = period.first + timedelta(days=n)
        row = counted.get(day, {})
        # every day of the period, the quiet ones too: a trend with gaps closed up would lie
        days.append(
            DayRow(
                day=day,
                searches=row.get("searches", 0),
                zero_results=row.get("zero_results", 0),
                clicked=row.get("clicked", 0),
            )
        )
    total = lambda name: sum(row[name] or 0 for row in counted.values())  # noqa: E731
    return Summary(
        searches=total("searches"),
        word_searches=total("words"),
        zero_results=total("zero_results"),
        clicked=total("clicked"),
        clicks=total("clicks"),
        mean_position=_mean(total("position_sum"), total("clicks")),
        days=days,
    )


def product_queries(period: Period, *, product_id: int, limit: int = 30) -> list[ProductQueryRow]:
    """The queries whose results a product was clicked from, most clicks first."""
    # from the product's clicks to their searches (a join on the click's few rows, not a scan of the period)
    clicks = Click.objects.filter(
        product_id=product_id, search__day__gte=period.first, search__day__lte=period.last, search__mode="text"
    )
    channels = CHANNELS.get(period.channel, ())
    if channels:
        clicks = clicks.filter(search__channel__in=channels)
    rows = (
        clicks.values("search__query_normalized")
        .annotate(clicks=Count("id"), mean_position=Avg("position"))
        .order_by("-clicks", "search__query_normalized")
    )
    # as the query tables show it: the log's folded query, whatever spelling was typed
    return [
        ProductQueryRow(query=r["search__query_normalized"], clicks=r["clicks"], mean_position=r["mean_position"])
        for r in rows[:limit]
    ]


__all__ = [
    "CHANNELS",
    "TABLES",
    "DayRow",
    "Period",
    "ProductQueryRow",
    "QueryRow",
    "Summary",
    "period_searches",
    "product_queries",
    "query_table",
    "query_tables",
    "summary",
]
