"""A search as asked: the query, filters, strategy, sort and page, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from search.retrieval.config import search_config

from .filters import SearchFilters, query_normalize

MAX_PAGE_SIZE = 100
STRATEGIES = ("normalized", "avg", "rrf", "dbsf", "text", "image")
SORTS = ("relevance", "price_asc", "price_desc", "newest")


@dataclass(frozen=True)
class SearchRequest:
    query: str
    filters: SearchFilters
    strategy: str
    sort: str
    page: int
    page_size: int
    prefix: bool = False  # the query's last word is still being typed (search as you type)

    @classmethod
    def of(
        cls,
        *,
        query: str,
        filters: SearchFilters | None,
        strategy: str | None,
        sort: str,
        page: int,
        page_size: int,
        prefix: bool = False,
    ) -> SearchRequest:
        """The request checked (ValueError says what is wrong), its query normalised."""
        strategy = strategy or search_config().strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page must be >= 1 and page_size between 1 and {MAX_PAGE_SIZE}")
        return cls(
            query=query_normalize(query),
            filters=filters or SearchFilters(),
            strategy=strategy,
            sort=sort,
            page=page,
            page_size=page_size,
            prefix=prefix,
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size
