"""Read path: shopper queries (words or a photo) to the products that match, ranked, filtered
and faceted; browsing the catalog without a query."""
from __future__ import annotations

import functools
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from PIL import Image

from catalog.models import IndexStatus, Product

from ..retrieval import fusion, providers
from ..retrieval.calibration import Cutoff
from ..retrieval.facets import FacetAttribute, facet_attributes_parse, facet_key, facet_payload
from ..retrieval.keywords import SPARSE_VECTOR, QueryWord, corrected_query, sku_key
from ..retrieval.rules import PIN, rules_apply
from ..retrieval.vector_store import IndexUnavailableError, Leg, ProductIndex, Where
from .calibrations import fusion_calibration
from .lexicon import Lexicon, lexicon
from .merchandising import Merchandising, query_merchandising

MAX_QUERY_CHARS = 500
MAX_PAGE_SIZE = 100
STRATEGIES = ("normalized", "avg", "rrf", "dbsf", "text", "image")
SORTS = ("relevance", "price_asc", "price_desc", "newest")
# Price facet buckets: [min, max), None = open, so that a price on a boundary (25.00) is in one
# bucket only. Chosen for a general shop's price range; a filter picked from a bucket returns
# exactly the products it counted (bucket_range: its top is a cent below the next bucket's).
PRICE_BUCKETS: tuple[tuple[int | None, int | None], ...] = (
    (None, 25), (25, 50), (50, 100), (100, 200), (200, None))
CENT = Decimal("0.01")  # prices have two decimals (catalog.models.Product.price)


def bucket_range(low: int | None, high: int | None) -> tuple[Decimal | None, Decimal | None]:
    """The inclusive price filter of the bucket [low, high): what the facet counts and links to."""
    return (Decimal(low) if low is not None else None, Decimal(high) - CENT if high is not None else None)
FACET_LIMIT = 20


def query_normalize(query: str) -> str:
    """Collapse whitespace and bound the length; what the encoder and cache see."""
    return " ".join(str(query).split())[:MAX_QUERY_CHARS]


def facet_attributes() -> tuple[FacetAttribute, ...]:
    """The attributes shoppers filter on (SEARCH_FACET_ATTRIBUTES), in the order shown."""
    return _facet_attributes(settings.SEARCH_FACET_ATTRIBUTES)


@functools.lru_cache(maxsize=8)
def _facet_attributes(value: str) -> tuple[FacetAttribute, ...]:
    return facet_attributes_parse(value)


def _folded(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for k in (facet_key(v) for v in values) if k))


@dataclass(frozen=True)
class SearchFilters:
    """The shopper's filters. Category, brand and attribute values are compared folded
    (facets.facet_key: "Mugs " is "mugs"), whatever spelling the URL or the API gives."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    # (payload field, values): the chosen values of each attribute filter
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", _folded(self.categories))
        object.__setattr__(self, "brands", _folded(self.brands))
        object.__setattr__(self, "attributes", tuple((field, _folded(values)) for field, values in self.attributes
                                                     if _folded(values)))

    def keyword_filters(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each payload field with its chosen values: category, brand, then the attributes."""
        return tuple((name, values) for name, values in (("category", self.categories), ("brand", self.brands),
                                                          *self.attributes) if values)

    def active(self) -> list[str]:
        price = self.price_min is not None or self.price_max is not None
        return [name for name, _ in self.keyword_filters()] + (["price"] if price else [])

    def where(self, *, skip: str | None = None) -> Where | None:
        """The shopper's filters for the vector index; None when there are none.

        No `active` condition: deactivating a product removes its point, and results are
        read from active rows only, so a late straggler is never shown. Leaving it out
        matters in local mode, which checks every condition on every point in Python."""
        any_of = tuple((key, values) for key, values in self.keyword_filters() if skip != key)
        ranges = ()
        if (self.price_min is not None or self.price_max is not None) and skip != "price":
            ranges = (("price", float(self.price_min) if self.price_min is not None else None,
                       float(self.price_max) if self.price_max is not None else None),)
        where = Where(any_of=any_of, ranges=ranges)
        return where if where else None

    def queryset(self, queryset: QuerySet, *, skip: str | None = None) -> QuerySet:
        """The same filters in the database, which keeps values as typed: compared by a
        case-blind pattern that allows any whitespace between words and around them."""
        for name, values in self.keyword_filters():
            if name == skip:
                continue
            if name in ("category", "brand"):
                queryset = queryset.filter(_any_pattern(name, values, whole=True))
            else:
                queryset = _attribute_filtered(queryset, name, values)
        if skip != "price":
            if self.price_min is not None:
                queryset = queryset.filter(price__gte=self.price_min)
            if self.price_max is not None:
                queryset = queryset.filter(price__lte=self.price_max)
        return queryset


def _pattern(value: str, *, whole: bool) -> str:
    """A regular expression (Python's and PostgreSQL's alike) for a folded facet value: the value
    itself, or else (not `whole`) the value as an element of a JSON list as the database prints
    it (`["Red", "Blue"]`, `[38,39]`; an element with a comma in it may match by its parts)."""
    body = r"\s+".join(re.escape(word) for word in value.split())
    scalar = rf"^\s*{body}\s*$"
    return scalar if whole else rf'{scalar}|^\[(.*,)?\s*"?\s*{body}\s*"?\s*(,.*)?\]$'


def _any_pattern(expression: str, values: Iterable[str], *, whole: bool) -> Q:
    q = Q()
    for value in values:
        q |= Q(**{f"{expression}__iregex": _pattern(value, whole=whole)})
    return q


def _attribute_filtered(queryset: QuerySet, field_name: str, values: tuple[str, ...]) -> QuerySet:
    """Products whose attribute (any spelling of its key the catalog uses) holds one of the values."""
    keys = lexicon().attribute_keys.get(field_name, ())
    if not keys:
        return queryset.none()
    q = Q()
    for i, key in enumerate(keys):
        alias = f"_attr_{field_name}_{i}"
        queryset = queryset.alias(**{alias: KeyTextTransform(key, "attributes")})
        q |= _any_pattern(alias, values, whole=False)
    return queryset.filter(q)


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool = False
    # a price bucket's filter, both ends included (bucket_range)
    price_min: Decimal | None = None
    price_max: Decimal | None = None


@dataclass
class SearchHit:
    product: Product
    position: int
    score: float | None = None
    raw: Mapping[str, float] = field(default_factory=dict)
    normalized: Mapping[str, float] = field(default_factory=dict)
    placement: str = ""  # "pinned", "boosted" or "buried" when a ranking rule put it there


@dataclass
class SearchResult:
    search_id: str
    mode: str  # "text", "image" or "browse"
    query: str
    strategy: str
    sort: str
    filters: SearchFilters
    page: int
    page_size: int
    count: int
    hits: list[SearchHit] = field(default_factory=list)
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    model_id: str = ""  # the model that ranked the results ("" when browsing)
    understood_as: str = ""  # the query with its typos corrected, when it had any
    count_capped: bool = False  # more products passed the cutoff than SEARCH_MAX_MATCHES
    # every match in order with its scores (what the pages cut, and what a calibration is
    # fitted on), and whether the ranking was the fitted calibration's
    ranked: list[fusion.Ranked] = field(default_factory=list, repr=False)
    calibrated: bool = False
    # the merchandiser's rules that shaped it, as logged: {"rules": [ids], "synonyms": [ids]}
    merchandising: dict[str, list[int]] = field(default_factory=dict)

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.num_pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _price_label(low: int | None, high: int | None) -> str:
    if low is None:
        return f"Under {high}"
    if high is None:
        return f"{low} and up"
    return f"{low}–{high}"


def _in_bucket(price: float, low: Decimal | None, high: Decimal | None) -> bool:
    return (low is None or price >= float(low)) and (high is None or price <= float(high))


def _facets_from_counts(filters: SearchFilters, counts: Mapping[str, Counter],
                        price_of: Callable[[Decimal | None, Decimal | None], int]) -> dict[str, list[FacetValue]]:
    """The facets shown: category, brand and each attribute filter with a value among the
    products counted, or one chosen; then the price buckets. Values are labelled with the
    spelling most products use."""
    labels = lexicon().labels
    chosen = dict(filters.keyword_filters())

    def values(name: str) -> list[FacetValue]:
        counter = counts.get(name, Counter())
        selected = chosen.get(name, ())
        top = [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if v][:FACET_LIMIT]
        top += [v for v in selected if v not in top]  # a chosen value stays visible to be unchosen
        shown = labels.get(name, {})
        return [FacetValue(v, shown.get(v, v), counter.get(v, 0), v in selected) for v in top]

    prices = []
    for low, high in PRICE_BUCKETS:
        least, most = bucket_range(low, high)
        selected = filters.price_min == least and filters.price_max == most
        prices.append(FacetValue(f"{low or ''}-{high or ''}", _price_label(low, high), price_of(least, most),
                                 selected, least, most))
    facets = {name: values(name) for name in _facet_fields()}
    return {**{name: found for name, found in facets.items() if found or name in ("category", "brand")},
            "price": prices}


def _facet_fields() -> list[str]:
    """The payload fields the storefront facets on: category, brand, the attribute filters."""
    return ["category", "brand", *(a.field for a in facet_attributes())]


def _index_facets(index: ProductIndex, filters: SearchFilters,
                  matching: Callable[[str | None], Where | None]) -> dict[str, list[FacetValue]]:
    """Disjunctive counts by the engine over every product the query and filters match: each
    facet ignores its own filter only (`matching(skip)`)."""
    counts = {name: Counter(index.facet(name, where=matching(name), limit=FACET_LIMIT)) for name in _facet_fields()}
    by_price = matching("price") or Where()

    def price_of(low: Decimal | None, high: Decimal | None) -> int:
        bucket = (("price", float(low) if low is not None else None, float(high) if high is not None else None),)
        return index.count(by_price.also(ranges=bucket))

    return _facets_from_counts(filters, counts, price_of)


def _db_facets(filters: SearchFilters, base: QuerySet) -> dict[str, list[FacetValue]]:
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
        for attributes in filters.queryset(base, skip=skip).values_list("attributes", flat=True).iterator(chunk_size=2000):
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

    fields = _facet_fields()
    counted = {name: counts(name) for name in fields if name in ("category", "brand")}
    # an attribute facet counts under every filter but its own: those without a filter of their
    # own share one read of the rows (reading them once per attribute cost 5 reads: 200 ms at 10k)
    attributes = [name for name in fields if name not in ("category", "brand")]
    active = set(filters.active())
    counted.update(attribute_counts([name for name in attributes if name not in active], None))
    for name in attributes:
        if name in active:
            counted.update(attribute_counts([name], name))
    return _facets_from_counts(filters, {name: counted[name] for name in fields}, price_of)


def _browse_counts(filters: SearchFilters, base: QuerySet) -> tuple[int, dict[str, list[FacetValue]]]:
    """Count and facets of the browsed catalog: from the vector engine when it holds every listed
    product (it remembers them between writes: at 100k products the database takes 350 ms), else
    from the database, which lists products still pending or that failed to index, and products
    added during a model switch (indexed into the new model's store, not the one serving)."""
    if not Product.objects.filter(active=True, index_status__in=(IndexStatus.PENDING, IndexStatus.FAILED)).exists():
        try:
            index = providers.get_product_index()
            if index.dim() is not None and not providers.model_switching():
                return (index.count(filters.where()),
                        _index_facets(index, filters, lambda skip=None: filters.where(skip=skip)))
        except IndexUnavailableError:
            pass  # the database answers; the search itself says the index is unavailable
    return filters.queryset(base).count(), _db_facets(filters, base)


def _rank(strategy: str, pool: list[fusion.Candidate], server_scores: dict[int, float] | None,
          weights: Mapping[str, float] | None = None, calibration: fusion.Calibration | None = None
          ) -> list[fusion.Ranked]:
    if strategy == "normalized":
        if calibration is not None:
            return fusion.fuse_calibrated(pool, calibration)
        return fusion.fuse_normalized(pool, providers.fusion_weights() if weights is None else weights)
    if strategy in ("text", "image"):
        return fusion.rank_single(pool, strategy)
    # the engine's ranking of its top candidates, then the other matches as `normalized` ranks them
    ranked = fusion.rank_by_scores(pool, server_scores or {})
    seen = {r.id for r in ranked}
    return ranked + [r for r in fusion.fuse_normalized(pool, providers.fusion_weights()) if r.id not in seen]


def _sort(ranked: list[fusion.Ranked], sort: str) -> list[fusion.Ranked]:
    if sort == "price_asc":
        return sorted(ranked, key=lambda r: float(r.payload.get("price", 0.0)))  # stable: relevance breaks ties
    if sort == "price_desc":
        return sorted(ranked, key=lambda r: -float(r.payload.get("price", 0.0)))
    if sort == "newest":
        return sorted(ranked, key=lambda r: -r.id)  # ids grow with creation
    return ranked


def _validate(strategy: str, sort: str, page: int, page_size: int) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page must be >= 1 and page_size between 1 and {MAX_PAGE_SIZE}")


def product_search(*, query: str = "", image: Image.Image | Callable[[], Image.Image] | None = None,
                   image_key: str = "",
                   filters: SearchFilters | None = None, strategy: str | None = None,
                   sort: str = "relevance", page: int = 1, page_size: int = 20,
                   weights: Mapping[str, float] | None = None,
                   calibration: fusion.Calibration | None = None,
                   merchandising: Merchandising | None = None) -> SearchResult:
    """Rank active products for words or a photo; an empty query browses the catalog.
    `image_key` names a kept photo (services.photo_save): its embedding is reused by the
    filters, sorts and pages of the same photo search, and `image` may then be a function that
    reads the photo, called only when its embedding is not cached.
    `normalized` fuses a word search with the model's fitted calibration when it has one
    (selectors.calibrations), else with SEARCH_FUSION_WEIGHTS; `weights` fuses with those
    weights instead (evaluate_search tunes them), `calibration` with that calibration (the
    evaluation fits one per fold)."""
    filters = filters or SearchFilters()
    strategy = strategy or settings.SEARCH_STRATEGY
    _validate(strategy, sort, page, page_size)
    query = query_normalize(query)
    offset = (page - 1) * page_size
    result = SearchResult(search_id=uuid.uuid4().hex, mode="browse", query=query, strategy=strategy,
                          sort=sort, filters=filters, page=page, page_size=page_size, count=0)

    if image is None and not query:
        base = Product.objects.searchable()
        matching = filters.queryset(base)
        order = {"price_asc": ("price", "id"), "price_desc": ("-price", "id")}.get(sort, ("-created_at", "-id"))
        rows = matching.order_by(*order)[offset:offset + page_size]
        result.hits = [SearchHit(product=p, position=offset + i + 1) for i, p in enumerate(rows)]
        result.count, result.facets = _browse_counts(filters, base)
        return result

    # the model whose vectors the store serves: the configured one, or, while a new model's
    # store is being filled, the previous one
    result.model_id = model_id = providers.serving_model_id()
    index = providers.get_product_index()
    if image is not None:
        result.mode = "image"
        if image_key:
            vector = providers.photo_vector(model_id, image_key, image if callable(image) else lambda: image)
        else:
            vector = providers.query_encoder(model_id).encode_images([image])[0]
        legs = _modality_legs(vector, strategy, None)
    else:
        result.mode = "text"
        words = lexicon()
        merchandising = query_merchandising(query) if merchandising is None else merchandising
        understood = words.vocabulary.understand(query, merchandising.synonyms)
        if any(w.corrected for w in understood):
            result.understood_as = corrected_query(understood)
        vector = providers.query_vector(model_id, query)
        # the towers read the query as it was probably meant too: a misspelt word is another
        # token to them (_text_legs decides which reading searches)
        meant = providers.query_vector(model_id, result.understood_as) if result.understood_as else None
        legs = _text_legs(query, vector, meant, understood, strategy, providers.relevance_cutoff(model_id), words)
        if strategy == "normalized" and weights is None:
            # fitted on word searches: a photo's cosines are another scale, so photos keep the weights
            calibration = calibration or fusion_calibration(model_id)
            result.calibrated = calibration is not None
    if not result.calibrated:
        calibration = None
    limit = settings.SEARCH_MAX_MATCHES if image is None else settings.SEARCH_CANDIDATES

    def ranked_under(where: Where | None) -> tuple[list[fusion.Ranked], bool]:
        matches = index.retrieve_matches(legs, limit=limit, where=where, payload=_match_payload(merchandising))
        server_scores = None
        if strategy in ("avg", "rrf", "dbsf"):
            server_scores = index.retrieve_candidates(
                {"text": vector, "image": vector}, limit=settings.SEARCH_CANDIDATES, where=where,
                server_ranking=strategy, avg_vector=vector, payload=()).server_scores
        ranked = _rank(strategy, matches.pool, server_scores, weights, calibration)
        first = [set(matches.found.get(name, ())) for name in FIRST]  # a whole-query SKU, then brand
        if any(first):
            ranked.sort(key=lambda r: next((i for i, ids in enumerate(first) if r.id in ids), len(first)))
        return ranked, bool(matches.truncated)

    ranked, result.count_capped = ranked_under(filters.where())
    applied = None
    if merchandising is not None and (merchandising.rules or merchandising.synonym_ids):
        relevance = sort == "relevance"  # pins, boosts and buries are the relevance order's
        applied = rules_apply(ranked, merchandising.rules, relevance=relevance,
                              pinnable=_pinnable(merchandising, ranked, filters, index) if relevance else None)
        ranked = applied.ranked
        used = {"rules": applied.rule_ids, "synonyms": list(merchandising.synonym_ids)}
        result.merchandising = {key: ids for key, ids in used.items() if ids}
    ranked = _sort(ranked, sort)
    result.count = len(ranked)
    result.ranked = ranked
    page_ranked = ranked[offset:offset + page_size]
    products = Product.objects.searchable().in_bulk([r.id for r in page_ranked])
    placements, inserted = (applied.placements, applied.inserted) if applied else ({}, set())
    result.hits = [SearchHit(product=products[r.id], position=offset + i + 1,
                             score=None if r.id in inserted else r.score, raw=r.raw, normalized=r.normalized,
                             placement=placements.get(r.id, ""))
                   for i, r in enumerate(page_ranked) if r.id in products]
    # disjunctive facets: a facet whose own filter is on counts the matches without it (which
    # products match is enough: no scores, no fusion)
    rankable = (lambda payload: True) if result.calibrated else _rankable(strategy, weights, legs)
    hidden = applied.hidden if applied else set()
    unfiltered = {key: [c.payload for c in index.retrieve_matches(legs, limit=limit, where=filters.where(skip=key),
                                                                  payload=_match_payload(), score=False).pool
                        if rankable(c.payload) and c.id not in hidden]
                  for key in filters.active()}
    result.facets = _match_facets(filters, [r.payload for r in ranked], unfiltered)
    return result


# Ranks by the model alone: no ranking rule, no synonym (a calibration learns from this ranking).
NO_MERCHANDISING = Merchandising()


def _pinnable(merchandising: Merchandising, ranked: list[fusion.Ranked], filters: SearchFilters,
              index: ProductIndex) -> dict[int, fusion.Ranked]:
    """The products pinned for the query that it did not match but may show: active, and
    passing the shopper's filters. Each with its payload (the facets count it); one not yet
    indexed is shown all the same."""
    matched = {r.id for r in ranked}
    wanted = {r.product_id for r in merchandising.rules if r.action == PIN} - matched
    if not wanted:
        return {}
    allowed = set(filters.queryset(Product.objects.searchable().filter(pk__in=wanted)).values_list("pk", flat=True))
    points = index.retrieve(allowed, with_vectors=False) if allowed else {}
    return {pid: fusion.Ranked(id=pid, score=0.0, raw={}, normalized={},
                               payload=dict(points[pid].payload) if pid in points else {})
            for pid in allowed}


def _rankable(strategy: str, weights: Mapping[str, float] | None, legs: Mapping[str, Leg]) -> Callable[[Mapping], bool]:
    """Whether a match is ranked (and so counted), from its payload: it has a modality the
    ranking weighs (fusion.fuse_normalized leaves out the others)."""
    if strategy in ("text", "image"):
        return lambda payload: bool(payload.get(f"has_{strategy}", True))
    active = {m for m, w in (providers.fusion_weights() if weights is None or strategy != "normalized"
                             else weights).items() if w > 0}
    if "keyword" in active and any(leg.scores == "keyword" for leg in legs.values()):
        return lambda payload: True  # every match has a keyword score (0 when it shares no word)
    return lambda payload: any(payload.get(f"has_{m}", True) for m in active & {"text", "image"})


# What each match carries from the engine: what the facets count and the sorts read.
MATCH_PAYLOAD = ("category", "brand", "price", "has_text", "has_image", "has_description")


def _match_payload(merchandising: Merchandising | None = None) -> tuple[str, ...]:
    """What the facets and sorts read, and the fields the query's boosts and buries look at."""
    ruled = tuple(r.field for r in merchandising.rules if r.field) if merchandising else ()
    return tuple(dict.fromkeys(MATCH_PAYLOAD + tuple(a.field for a in facet_attributes()) + ruled))
# Legs whose products come first, in this order, when the whole query names them.
FIRST = ("sku", "brand")


def _text_legs(query: str, vector: np.ndarray, meant: np.ndarray | None, understood: list[QueryWord],
               strategy: str, cutoff: Cutoff, words: Lexicon) -> dict[str, Leg]:
    """How a text query finds products: each modality from its cutoff up (for the query as
    meant, or also as typed), the keyword leg (every word of the query, or a correction of
    it, in the product), and a product whose SKU or brand is the whole query."""
    if meant is not None and all(w.in_catalog for w in understood if w.corrected):
        vector, meant = meant, None  # every correction is a word of this shop's: the query as meant replaces it
    legs = _modality_legs(vector, strategy, cutoff)
    if meant is not None:
        # a word corrected to one only the model knows may have been right as typed ("shawl" is
        # not "shall"): both readings search, and each product keeps its better cosine
        legs.update({f"{m} as meant": leg for m, leg in _modality_legs(meant, strategy, cutoff).items()})
    plain = legs[next(iter(legs))].vector
    if strategy in ("text", "image"):
        return legs
    keyword = _keyword_leg(understood)
    if keyword is not None:
        legs["keyword"] = keyword
    key = sku_key(query)
    if key:
        legs["sku"] = Leg(using="avg", vector=plain, where=Where(any_of=(("sku_key", (key,)),)))
    brand = words.brands.get(key)
    if brand:
        legs["brand"] = Leg(using="avg", vector=plain, where=Where(any_of=(("brand", (facet_key(brand),)),)))
    return legs


def _keyword_leg(understood: list[QueryWord]) -> Leg | None:
    """BM25 over the words as typed and their corrections (a corrected word weighs less); it
    matches the products that hold each word the vocabulary knows (or a correction of it). Words
    it does not know still score (the vocabulary may lag a new product by a few seconds)."""
    encoder = providers.get_keyword_encoder()
    weighted: dict[str, float] = {}
    groups = []
    for word in understood:
        if not word.variants or not word.in_catalog:
            weighted[word.typed] = 1.0
            continue
        terms = tuple(sorted({t for t in (encoder.term(v) for v in word.variants) if t is not None}))
        if not terms:
            continue  # a stop word
        groups.append(("terms", terms))
        for variant in word.variants:
            weighted[variant] = max(weighted.get(variant, 0.0), CORRECTED_WEIGHT if word.corrected else 1.0)
    sparse = encoder.query(weighted)
    if not sparse:
        return None
    return Leg(using=SPARSE_VECTOR, sparse=sparse, where=Where(any_of=tuple(groups)) if groups else None,
               scores="keyword", matches=bool(groups))


# A corrected word's weight in the keyword score, against 1 for a word typed as the catalog spells it.
CORRECTED_WEIGHT = 0.8


def _modality_legs(vector: np.ndarray, strategy: str, cutoff: Cutoff | None) -> dict[str, Leg]:
    """The query vector against each modality the strategy ranks by, from the cutoff up. A photo
    has none (SEARCH_CANDIDATES nearest of each): the cutoff is measured for words, and a photo
    always looks like something."""
    plain = tuple(np.asarray(vector, dtype=np.float32).tolist())
    modalities = (strategy,) if strategy in ("text", "image") else ("text", "image")
    return {m: Leg(using=m, vector=plain, threshold=cutoff.get(m) if cutoff else None, scores=m) for m in modalities}


def _match_facets(filters: SearchFilters, matched: list[Mapping],
                  unfiltered: Mapping[str, list[Mapping]]) -> dict[str, list[FacetValue]]:
    """Counts over the matches, from the payload each carries."""
    def counter(key: str) -> Counter:
        counted: Counter = Counter()
        for payload in unfiltered.get(key, matched):
            value = payload.get(key)
            counted.update(set(value) if isinstance(value, list) else {str(value or "")})
        return counted

    prices = [float(payload.get("price", 0.0)) for payload in unfiltered.get("price", matched)]

    def price_of(low: Decimal | None, high: Decimal | None) -> int:
        return sum(1 for p in prices if _in_bucket(p, low, high))

    return _facets_from_counts(filters, {name: counter(name) for name in _facet_fields()}, price_of)


def product_similar(*, product: Product, limit: int = 8) -> list[SearchHit]:
    """Products near this one, from its own vectors: text to text and image to image, fused
    the same way as a search, so a product without an image still gets neighbours."""
    index = providers.get_product_index()
    record = index.retrieve([product.pk]).get(product.pk)
    if record is None or not record.vector:
        return []
    own = {m: np.asarray(record.vector[m], dtype=np.float32) for m in ("text", "image") if m in record.vector}
    retrieval = index.retrieve_candidates(own, limit=max(limit * 4, 32), where=Where(not_ids=(product.pk,)),
                                       payload=())
    ranked = fusion.fuse_normalized(retrieval.pool, providers.fusion_weights())[:limit]
    products = Product.objects.searchable().in_bulk([r.id for r in ranked])
    return [SearchHit(product=products[r.id], position=i + 1, score=r.score, raw=r.raw, normalized=r.normalized)
            for i, r in enumerate(ranked) if r.id in products]


__all__ = ["NO_MERCHANDISING", "SearchFilters", "SearchHit", "SearchResult", "product_search", "product_similar",
                      "STRATEGIES", "SORTS", "PRICE_BUCKETS"]
