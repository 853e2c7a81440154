"""Read path: shopper queries to ranked products."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from qdrant_client import models

from catalog.models import Product

MAX_QUERY_CHARS = 500
MAX_PAGE_SIZE = 100


def query_normalize(query: str) -> str:
    """Collapse whitespace and bound the length; what the encoder and cache see."""
    return " ".join(str(query).split())[:MAX_QUERY_CHARS]


@lru_cache(maxsize=1024)
def query_vector(model_id: str, query: str) -> np.ndarray:
    """Text-tower embedding of a query; repeated queries skip the model."""
    from .providers import get_encoder

    vector = get_encoder().encode_texts([query])[0]
    vector.setflags(write=False)  # shared between callers through the cache
    return vector


@dataclass
class ProductResult:
    product: Product
    score: float | None


@dataclass
class SearchPage:
    query: str
    results: list[ProductResult] = field(default_factory=list)
    page: int = 1
    page_size: int = 20
    has_next: bool = False


def product_search(*, query: str, page: int = 1, page_size: int = 20) -> SearchPage:
    """Rank active products by the averaged vector; an empty query browses newest first."""
    from .providers import embedding_model_id, get_product_index

    query = query_normalize(query)
    page = max(1, int(page))
    page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
    offset = (page - 1) * page_size
    result = SearchPage(query=query, page=page, page_size=page_size)
    if not query:
        rows = list(Product.objects.searchable().order_by("-created_at", "-id")[offset:offset + page_size + 1])
        result.results = [ProductResult(product=p, score=None) for p in rows[:page_size]]
        result.has_next = len(rows) > page_size
        return result

    vector = query_vector(embedding_model_id(), query)
    active_only = models.Filter(must=[models.FieldCondition(key="active", match=models.MatchValue(value=True))])
    hits = get_product_index().search(vector, using="avg", limit=page_size + 1, offset=offset,
                                      query_filter=active_only)
    products = Product.objects.searchable().in_bulk([h.id for h in hits])
    ranked = [ProductResult(product=products[h.id], score=h.score) for h in hits if h.id in products]
    result.results = ranked[:page_size]
    result.has_next = len(hits) > page_size
    return result
