"""Read path: shopper queries (words or a photo) to the products that match, ranked, filtered
and faceted; browsing the catalog without a query.

`pipeline` (product_search's steps, product_similar) over `request` (the search as asked),
`filters` (the shopper's filters), `legs` (how a query finds products), `ranking` (fusion,
sorts, pins), `facets` (the counts) and `results` (what a search answers)."""

from .facets import bucket_range, filter_chips, index_facets
from .filters import MAX_QUERY_CHARS, SearchFilters, facet_attributes, query_normalize
from .pipeline import product_search, product_similar, relevance_rows
from .ranking import NO_MERCHANDISING
from .request import MAX_PAGE_SIZE, SORTS, STRATEGIES, filters_unread
from .results import Chip, FacetValue, SearchHit, SearchResult

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
    "NO_MERCHANDISING",
    "SORTS",
    "STRATEGIES",
    "Chip",
    "FacetValue",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "bucket_range",
    "facet_attributes",
    "filter_chips",
    "filters_unread",
    "index_facets",
    "product_search",
    "product_similar",
    "query_normalize",
    "relevance_rows",
]
