"""A search as asked: the query, filters, strategy, sort and page, checked once."""

from __future__ import annotations

from dataclasses import dataclass, replace

from search.retrieval.config import search_config

from ...retrieval.understanding import Understood, query_read
from ..lexicon import lexicon
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
    typed: str = ""  # the query as typed, when the search ranks by less of it (its price phrase read)
    foreign_price: str = ""  # a price phrase in another currency, left as words (Reading.foreign)

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

    @property
    def shown(self) -> str:
        return self.typed or self.query

    def read(self, understood: str | None) -> tuple[SearchRequest, tuple[Understood, ...], bool]:
        """The request with the filters its words name (understanding.query_read) and ranked by
        the rest, what was read, and whether its words name any filter at all. `understood`: the
        query these filters were already read from (the storefront's form carries it): the same
        query is not read again, so a filter the shopper took back stays off; another one's
        filters are taken out first."""
        if not self.query:
            return self, (), False
        words = lexicon()
        reading = query_read(self.query, words.facet_words, words.currency, prefix=self.prefix)
        if understood is not None and query_normalize(understood) == self.query:
            return replace(self, filters=_opened(self.filters, reading.understood)), (), bool(reading.understood)
        filters = filters_unread(self.filters, understood)
        if not reading.understood:
            return replace(self, filters=filters, foreign_price=reading.foreign), (), False
        ranked = query_normalize(reading.ranked_query)
        filters = _opened(filters.read_in(reading.understood), reading.understood)
        request = replace(self, filters=filters, query=ranked, typed=self.query, foreign_price=reading.foreign)
        return request, reading.understood, True


def _opened(filters: SearchFilters, understood: tuple[Understood, ...]) -> SearchFilters:
    """The filters with each field whose every value the words named marked open
    (SearchFilters.open); a field the shopper chose a value of as well stays strict."""
    named: dict[str, set[str]] = {}
    for u in understood:
        named.setdefault(u.field, set()).add(u.value)
    chosen = dict(filters.keyword_filters())
    opened = [f for f, values in named.items() if f in chosen and set(chosen[f]) <= values]
    # a price range the words named (the log tells it from one typed into the boxes)
    price = next((u for u in understood if u.field == "price"), None)
    if price is not None and (filters.price_min, filters.price_max) == (price.price_min, price.price_max):
        opened.append("price")
    return replace(filters, open=tuple(opened))


def filters_unread(filters: SearchFilters, understood: str | None) -> SearchFilters:
    """The filters without those the words `understood` named: what a photo search keeps of a
    word search's filters when the photo replaces the words."""
    if not understood:
        return filters
    words = lexicon()
    return filters.read_out(query_read(understood, words.facet_words, words.currency).understood)
