"""The read path: `searching` (product_search, product_similar, filters and facets), `lexicon`
(the catalog's words: typo correction, brands, the phrases suggestions complete), `suggesting`
(completions as a shopper types) and `merchandising` (the ranking rules and synonyms for a query)."""

from .searching import (
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    NO_MERCHANDISING,
    SORTS,
    STRATEGIES,
    FacetValue,
    SearchFilters,
    SearchHit,
    SearchResult,
    index_facets,
    product_search,
    product_similar,
    query_normalize,
    relevance_rows,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
    "NO_MERCHANDISING",
    "SORTS",
    "STRATEGIES",
    "FacetValue",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "index_facets",
    "product_search",
    "product_similar",
    "query_normalize",
    "relevance_rows",
]
