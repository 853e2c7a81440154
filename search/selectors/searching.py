"""Read path: shopper queries (words or a photo) to ranked, filtered, faceted products."""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from PIL import Image

from catalog.models import IndexStatus, Product

from .retrieval import fusion, providers
from .retrieval.vector_store import IndexUnavailableError, ProductIndex, Where

MAX_QUERY_CHARS = 500
MAX_PAGE_SIZE = 100
STRATEGIES = ("normalized", "avg", "rrf", "dbsf", "text", "image")
SORTS = ("relevance", "price_asc", "price_desc", "newest")
# Price facet buckets: (min, max) inclusive, None = open. Chosen for a general shop's
# price range; a filter picked from a bucket returns exactly the products it counted.
PRICE_BUCKETS: tuple[tuple[int | None, int | None], ...] = (
    (None, 25), (25, 50), (50, 100), (100, 200), (200, None))
FACET_LIMIT = 20


def query_normalize(query: str) -> str:
    """Collapse whitespace and bound the length; what the encoder and cache see."""
    return " ".join(str(query).split())[:MAX_QUERY_CHARS]


@dataclass(frozen=True)
class SearchFilters:
    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    price_min: Decimal | None = None
    price_max: Decimal | None = None

    def active(self) -> list[str]:
        return [name for name, on in (("category", self.categories), ("brand", self.brands),
                                      ("price", self.price_min is not None or self.price_max is not None)) if on]

    def where(self, *, skip: str | None = None) -> Where | None:
        """The shopper's filters for the vector index; None when there are none.

        No `active` condition: deactivating a product removes its point, and results are
        read from active rows only, so a late straggler is never shown. Leaving it out
        matters in local mode, which checks every condition on every point in Python."""
        any_of = tuple((key, values) for key, values in (("category", self.categories), ("brand", self.brands))
                       if values and skip != key)
        ranges = ()
        if (self.price_min is not None or self.price_max is not None) and skip != "price":
            ranges = (("price", float(self.price_min) if self.price_min is not None else None,
                       float(self.price_max) if self.price_max is not None else None),)
        where = Where(any_of=any_of, ranges=ranges)
        return where if where else None

    def queryset(self, queryset: QuerySet, *, skip: str | None = None) -> QuerySet:
        if self.categories and skip != "category":
            queryset = queryset.filter(category__in=self.categories)
        if self.brands and skip != "brand":
            queryset = queryset.filter(brand__in=self.brands)
        if skip != "price":
            if self.price_min is not None:
                queryset = queryset.filter(price__gte=self.price_min)
            if self.price_max is not None:
                queryset = queryset.filter(price__lte=self.price_max)
        return queryset


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool = False
    price_min: int | None = None
    price_max: int | None = None


@dataclass
class SearchHit:
    product: Product
    position: int
    score: float | None = None
    raw: Mapping[str, float] = field(default_factory=dict)
    normalized: Mapping[str, float] = field(default_factory=dict)


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
        return f"Up to {high}"
    if high is None:
        return f"{low} and up"
    return f"{low}–{high}"


def _in_bucket(price: float, low: int | None, high: int | None) -> bool:
    return (low is None or price >= low) and (high is None or price <= high)


def _facets_from_counts(filters: SearchFilters, categories: Counter, brands: Counter,
                        price_of: Callable[[int | None, int | None], int]) -> dict[str, list[FacetValue]]:
    def values(counter: Counter, selected: tuple[str, ...]) -> list[FacetValue]:
        top = [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if v][:FACET_LIMIT]
        top += [v for v in selected if v not in top]  # a chosen value stays visible to be unchosen
        return [FacetValue(v, v, counter.get(v, 0), v in selected) for v in top]

    prices = []
    for low, high in PRICE_BUCKETS:
        selected = (filters.price_min == (Decimal(low) if low is not None else None)
                    and filters.price_max == (Decimal(high) if high is not None else None))
        prices.append(FacetValue(f"{low or ''}-{high or ''}", _price_label(low, high), price_of(low, high),
                                 selected, low, high))
    return {"category": values(categories, filters.categories), "brand": values(brands, filters.brands),
            "price": prices}


def _index_facets(index: ProductIndex, filters: SearchFilters,
                  matching: Callable[[str | None], Where | None]) -> dict[str, list[FacetValue]]:
    """Disjunctive counts by the engine over every product the query and filters match: each
    facet ignores its own filter only (`matching(skip)`)."""
    categories = Counter(index.facet("category", where=matching("category"), limit=FACET_LIMIT))
    brands = Counter(index.facet("brand", where=matching("brand"), limit=FACET_LIMIT))
    by_price = matching("price") or Where()

    def price_of(low: int | None, high: int | None) -> int:
        bucket = (("price", float(low) if low is not None else None, float(high) if high is not None else None),)
        return index.count(by_price.also(ranges=bucket))

    return _facets_from_counts(filters, categories, brands, price_of)


def _db_facets(filters: SearchFilters, base: QuerySet) -> dict[str, list[FacetValue]]:
    def counts(name: str) -> Counter:
        rows = filters.queryset(base, skip=name).values(name).annotate(n=Count("id"))
        return Counter({row[name]: row["n"] for row in rows})

    price_qs = filters.queryset(base, skip="price")

    def price_of(low: int | None, high: int | None) -> int:
        q = Q()
        if low is not None:
            q &= Q(price__gte=low)
        if high is not None:
            q &= Q(price__lte=high)
        return price_qs.filter(q).count()

    return _facets_from_counts(filters, counts("category"), counts("brand"), price_of)


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
          weights: Mapping[str, float] | None = None) -> list[fusion.Ranked]:
    if strategy == "normalized":
        return fusion.fuse_normalized(pool, providers.fusion_weights() if weights is None else weights)
    if strategy in ("text", "image"):
        return fusion.rank_single(pool, strategy)
    return fusion.rank_by_scores(pool, server_scores or {})


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


def product_search(*, query: str = "", image: Image.Image | None = None,
                   filters: SearchFilters | None = None, strategy: str | None = None,
                   sort: str = "relevance", page: int = 1, page_size: int = 20,
                   weights: Mapping[str, float] | None = None) -> SearchResult:
    """Rank active products for words or a photo; an empty query browses the catalog.
    `weights` overrides SEARCH_FUSION_WEIGHTS for `normalized` (evaluate_search tunes them)."""
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
    if image is not None:
        result.mode = "image"
        vector = providers.query_encoder(model_id).encode_images([image])[0]
    else:
        result.mode = "text"
        vector = providers.query_vector(model_id, query)
    index = providers.get_product_index()
    # What the query matches: every product under the filters (the relevance cutoff comes with
    # the keyword leg), with the modality a single-modality strategy ranks by.
    single = strategy if strategy in ("text", "image") else ""

    def matching(skip: str | None = None) -> Where | None:
        where = filters.where(skip=skip)
        return (where or Where()).also(has_vector=single) if single else where

    # The query meets both the text and the image vectors of every product: the top candidates
    # per modality, ranked here; the products past them follow in the engine's own order.
    server_ranking = strategy if strategy in ("avg", "rrf", "dbsf") else None
    retrieval = index.retrieve_candidates(
        {"text": vector, "image": vector}, limit=settings.SEARCH_CANDIDATES, where=matching(),
        server_ranking=server_ranking, avg_vector=vector,
        payload=("price",) if sort in ("price_asc", "price_desc") else ())
    ranked = _sort(_rank(strategy, retrieval.pool, retrieval.server_scores, weights), sort)
    result.count = index.count(matching())
    page_ranked = ranked[offset:offset + page_size]
    tail_ids: list[int] = []
    if len(page_ranked) < page_size and result.count > len(ranked):
        tail_ids = _tail(index, vector, single, matching(), filters, sort, exclude=[r.id for r in ranked],
                         offset=max(0, offset - len(ranked)), limit=page_size - len(page_ranked))
    products = Product.objects.searchable().in_bulk([r.id for r in page_ranked] + tail_ids)
    result.hits = [SearchHit(product=products[r.id], position=offset + i + 1, score=r.score, raw=r.raw,
                             normalized=r.normalized)
                   for i, r in enumerate(page_ranked) if r.id in products]
    result.hits += [SearchHit(product=products[pid], position=offset + len(page_ranked) + i + 1)
                    for i, pid in enumerate(tail_ids) if pid in products]
    result.facets = _index_facets(index, filters, matching)
    return result


def _tail(index: ProductIndex, vector: np.ndarray, single: str, where: Where | None, filters: SearchFilters,
          sort: str, *, exclude: list[int], offset: int, limit: int) -> list[int]:
    """The matching products past the ranked candidates: by relevance, the engine's nearest on
    the averaged vector (or the single modality ranked by); sorted, the database's order."""
    if sort == "relevance":
        rest = (where or Where()).also(not_ids=exclude)
        # Not the engine's offset: equal scores (two variants with the same text and no image)
        # come back in any order, so pages cut by offset could show one twice and lose the
        # other. Fetch up to the page end and past every tie at it, then order ties by id.
        end, fetch = offset + limit, offset + limit + 16
        while True:
            hits = sorted(index.search(vector, using=single or "avg", limit=fetch, where=rest),
                          key=lambda h: (-h.score, h.id))
            if len(hits) < fetch or hits[min(end, len(hits)) - 1].score > hits[-1].score:
                return [hit.id for hit in hits[offset:end]]
            fetch *= 2
    queryset = filters.queryset(Product.objects.searchable()).exclude(pk__in=exclude)
    if single == "image":
        queryset = queryset.exclude(image="")
    order = {"price_asc": ("price", "-id"), "price_desc": ("-price", "-id")}.get(sort, ("-id",))
    return list(queryset.order_by(*order).values_list("pk", flat=True)[offset:offset + limit])


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


__all__ = ["SearchFilters", "SearchHit", "SearchResult", "product_search", "product_similar",
                      "STRATEGIES", "SORTS", "PRICE_BUCKETS"]
