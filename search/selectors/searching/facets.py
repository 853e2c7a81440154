"""Facets: disjunctive counts of category, brand, each attribute filter and price buckets, from
the engine (browsing), the matches' payloads (a query) or the database (while the engine lags)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal

from django.db.models import Count, Q, QuerySet

from catalog.models import IndexStatus, Product
from catalog.money import money

from ...retrieval import providers
from ...retrieval.facets import facet_key, facet_payload
from ...retrieval.vector_store import IndexUnavailableError, ProductIndex, Where
from ..lexicon import lexicon
from .filters import SearchFilters, facet_attributes
from .results import Chip, FacetValue, SearchResult

# Price facet buckets: [min, max), None = open, so that a price on a boundary (25.00) is in one
# bucket only; their bounds are round numbers from the catalog's own prices (lexicon.price_bounds).
# A filter picked from a bucket returns exactly the products it counted (bucket_range: its top is
# a cent below the next bucket's).
CENT = Decimal("0.01")  # prices have two decimals (catalog.models.Product.price)


def price_buckets(bounds: tuple[Decimal, ...]) -> list[tuple[Decimal | None, Decimal | None]]:
    """[(None, 25), (25, 50), (50, None)] for the bounds (25, 50); none without bounds."""
    if not bounds:
        return []
    edges: list[Decimal | None] = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:]))


def bucket_range(low: Decimal | int | None, high: Decimal | int | None) -> tuple[Decimal | None, Decimal | None]:
    """The inclusive price filter of the bucket [low, high): what the facet counts and links to."""
    return (Decimal(low) if low is not None else None, Decimal(high) - CENT if high is not None else None)


FACET_LIMIT = 20


def price_label(low: Decimal | None, high: Decimal | None, currency: str) -> str:
    """ "Under $25", "$25 – $50", "$200 and up", as the shop's locale writes prices."""
    if low is None:
        return f"Under {money(high, currency, whole=True)}"
    if high is None:
        return f"{money(low, currency, whole=True)} and up"
    return f"{money(low, currency, whole=True)} – {money(high, currency, whole=True)}"


def price_phrase_label(low: Decimal | None, high: Decimal | None, currency: str) -> str:
    """A price filter as a chip says it: "Under $20" (up to 19.99), "Up to $25.50", "Over $100"
    (from 100.01), "$10 and up", "$10 – $25"."""
    if low is not None and high is not None:
        return f"{money(low, currency, whole=True)} – {money(high, currency, whole=True)}"
    if high is not None:
        below = high + CENT
        if below == below.to_integral_value():
            return f"Under {money(below, currency, whole=True)}"
        return f"Up to {money(high, currency, whole=True)}"
    above = low - CENT
    if above == above.to_integral_value() and above >= 0:
        return f"Over {money(above, currency, whole=True)}"
    return f"{money(low, currency, whole=True)} and up"


def filter_chips(result: SearchResult) -> list[Chip]:
    """Every filter of a search as a chip, in the facets' order and then the price, each saying
    which of the query's words it was read from (SearchRequest.read) if it was."""
    words = lexicon()
    read = {(u.field, u.value): u.words for u in result.understood}
    legends = {"category": ("category", "Category"), "brand": ("brand", "Brand")}
    legends |= {a.field: (a.param, a.label) for a in facet_attributes()}
    chips = []
    for name, values in result.filters.keyword_filters():
        param, legend = legends.get(name, (name, name))
        for value in values:
            label = f"{legend}: {words.labels.get(name, {}).get(value, value)}"
            chips.append(Chip(param, name, value, label, read.get((name, value), "")))
    low, high = result.filters.price_min, result.filters.price_max
    if low is not None or high is not None:
        label = price_phrase_label(low, high, words.currency)
        chips.append(Chip("price", "price", "", label, read.get(("price", ""), ""), low, high))
    return chips


def in_bucket(price: float, low: Decimal | None, high: Decimal | None) -> bool:
    return (low is None or price >= float(low)) and (high is None or price <= float(high))


def facets_from_counts(
    filters: SearchFilters, counts: Mapping[str, Counter], price_of: Callable[[Decimal | None, Decimal | None], int]
) -> dict[str, list[FacetValue]]:
    """The facets shown: category, brand and each attribute filter with a value among the
    products counted, or one chosen; then the price buckets. Values are labelled with the
    spelling most products use."""
    words = lexicon()
    labels = words.labels
    chosen = dict(filters.keyword_filters())

    def values(name: str) -> list[FacetValue]:
        counter = counts.get(name, Counter())
        selected = chosen.get(name, ())
        top = [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if v][:FACET_LIMIT]
        top += [v for v in selected if v not in top]  # a chosen value stays visible to be unchosen
        shown = labels.get(name, {})
        return [FacetValue(v, shown.get(v, v), counter.get(v, 0), v in selected) for v in top]

    prices = []
    for low, high in price_buckets(words.price_bounds):
        least, most = bucket_range(low, high)
        selected = filters.price_min == least and filters.price_max == most
        label = price_label(low, high, words.currency)
        prices.append(FacetValue(f"{low or ''}-{high or ''}", label, price_of(least, most), selected, least, most))
    facets = {name: values(name) for name in facet_fields()}
    return {
        **{name: found for name, found in facets.items() if found or name in ("category", "brand")},
        "price": prices,
    }


def facet_fields() -> list[str]:
    """The payload fields the storefront facets on: category, brand, the attribute filters."""
    return ["category", "brand", *(a.field for a in facet_attributes())]


def index_facets(
    index: ProductIndex, filters: SearchFilters, matching: Callable[[str | None], Where | None]
) -> dict[str, list[FacetValue]]:
    """Disjunctive counts by the engine over every product the query and filters match: each
    facet ignores its own filter only (`matching(skip)`)."""
    counts = {name: Counter(index.facet(name, where=matching(name), limit=FACET_LIMIT)) for name in facet_fields()}
    by_price = matching("price") or Where()

    def price_of(low: Decimal | None, high: Decimal | None) -> int:
        bucket = (("price", float(low) if low is not None else None, float(high) if high is not None else None),)
        return index.count(by_price.also(ranges=bucket))

    return facets_from_counts(filters, counts, price_of)


def db_facets(filters: SearchFilters, base: QuerySet) -> dict[str, list[FacetValue]]:
    def counts(name: str) -> Counter:
        rows = filters.queryset(base, skip=name).values(name).annotate(n=Count("id"))
        counter: Counter = Counter()
        for row in rows:
            counter[facet_key(row[name])] += row["n"]
        return counter

    def attribute_counts(names: list[str], skip: str | None) -> dict[str, Counter]:
        # each product's values as its payload carries them (facets.facet_payload), so that the
        # database counts what the engine counts; one read of the rows for every name given
        counters: dict[str, Counter] = {name: Counter() for name in names}
        for attributes in (
            filters.queryset(base, skip=skip).values_list("attributes", flat=True).iterator(chunk_size=2000)
        ):
            payload = facet_payload(category="", brand="", attributes=attributes)
            for name in names:
                counters[name].update(payload.get(name, ()))
        return counters

    price_qs = filters.queryset(base, skip="price")

    def price_of(low: Decimal | None, high: Decimal | None) -> int:
        q = Q()
        if low is not None:
            q &= Q(price__gte=low)
        if high is not None:
            q &= Q(price__lte=high)
        return price_qs.filter(q).count()

    fields = facet_fields()
    counted = {name: counts(name) for name in fields if name in ("category", "brand")}
    # an attribute facet counts under every filter but its own: those without a filter of their
    # own share one read of the rows (reading them once per attribute cost 5 reads: 200 ms at 10k)
    attributes = [name for name in fields if name not in ("category", "brand")]
    active = set(filters.active())
    counted.update(attribute_counts([name for name in attributes if name not in active], None))
    for name in attributes:
        if name in active:
            counted.update(attribute_counts([name], name))
    return facets_from_counts(filters, {name: counted[name] for name in fields}, price_of)


def browse_counts(filters: SearchFilters, base: QuerySet) -> tuple[int, dict[str, list[FacetValue]]]:
    """Count and facets of the browsed catalog: from the vector engine when it holds every listed
    product (it remembers them between writes: at 100k products the database takes 350 ms), else
    from the database, which lists products still pending or that failed to index, and products
    added during a model switch (indexed into the new model's store, not the one serving)."""
    if not Product.objects.filter(active=True, index_status__in=(IndexStatus.PENDING, IndexStatus.FAILED)).exists():
        try:
            index = providers.get_product_index()
            if index.dim() is not None and not providers.model_switching():
                return (
                    index.count(filters.where()),
                    index_facets(index, filters, lambda skip=None: filters.where(skip=skip)),
                )
        except IndexUnavailableError:
            pass  # the database answers; the search itself says the index is unavailable
    return filters.queryset(base).count(), db_facets(filters, base)


def match_facets(
    filters: SearchFilters, matched: list[Mapping], unfiltered: Mapping[str, list[Mapping]]
) -> dict[str, list[FacetValue]]:
    """Counts over the matches, from the payload each carries."""

    def counter(key: str) -> Counter:
        counted: Counter = Counter()
        for payload in unfiltered.get(key, matched):
            value = payload.get(key)
            counted.update(set(value) if isinstance(value, list) else {str(value or "")})
        return counted

    prices = [float(payload.get("price", 0.0)) for payload in unfiltered.get("price", matched)]

    def price_of(low: Decimal | None, high: Decimal | None) -> int:
        return sum(1 for p in prices if in_bucket(p, low, high))

    return facets_from_counts(filters, {name: counter(name) for name in facet_fields()}, price_of)
