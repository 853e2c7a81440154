"""What a search answers: the page of products, the count, the facets, and the ranking behind them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from catalog.models import Product

from ...retrieval import fusion
from ...retrieval.understanding import Understood
from .filters import SearchFilters


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool = False
    # a price bucket's filter, both ends included (bucket_range)
    price_min: Decimal | None = None
    price_max: Decimal | None = None


@dataclass(frozen=True)
class Chip:
    """A filter in use as the storefront shows it above the results, removable on its own."""

    param: str  # its URL parameter ("category", "brand", an attribute's, "price")
    field: str  # its payload field ("category", "attr_colour", "price")
    value: str  # as compared (empty for a price)
    label: str  # "Colour: red", "Under $20"
    words: str = ""  # the query's words it was read from; empty: the shopper chose it
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
    relevance: float | None = None  # the probability that it is a good match for the query
    team: str = ""  # an interleaved search: the ranking that placed it ("control" or "candidate")


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
    # the filters the query's words named (SearchRequest.read), in `filters` too
    understood: tuple[Understood, ...] = ()
    readable: bool = False  # its words name a filter (read now, or before: SearchRequest.read)
    foreign_price: str = ""  # a price phrase in another currency than the shop's, searched as words
    # every ranked product a ranking rule placed: product id -> "pinned", "boosted", "buried"
    placements: dict[int, str] = field(default_factory=dict, repr=False)
    # the online experiment it was part of, its arm (search.retrieval.experiments), and why the
    # candidate's ranking failed when it did (the shopper got the control's)
    experiment: str = ""
    arm: str = ""
    experiment_failed: str = ""
    # the position bias intervention: its chance, and the position k whose product traded
    # places with k + 1's (None: none)
    swap_probability: float = 0.0
    swapped_at: int | None = None
    # product_search(also=...): that other ranking of the same search (its ranking and count
    # only), or why it failed
    also: SearchResult | None = field(default=None, repr=False)
    also_failed: Exception | None = None

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.num_pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1
