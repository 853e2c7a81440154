"""The shopper's query and filters as the search reads them: the query normalised, the chosen
categories, brands, attribute values and price range, in the engine's terms and the database's."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform

from search.retrieval.config import search_config

from ...retrieval.facets import FacetAttribute, facet_attributes_parse, facet_key
from ...retrieval.understanding import Understood
from ...retrieval.vector_store import Where
from ..lexicon import lexicon

MAX_QUERY_CHARS = 500


def query_normalize(query: str) -> str:
    """Collapse whitespace and bound the length; what the encoder and cache see."""
    return " ".join(str(query).split())[:MAX_QUERY_CHARS]


def facet_attributes() -> tuple[FacetAttribute, ...]:
    """The attributes shoppers filter on (SEARCH_FACET_ATTRIBUTES), in the order shown."""
    return _facet_attributes(search_config().facet_attributes)


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
    # fields whose values were read from the query's words (SearchRequest.read): a product that
    # has no value there passes too ("green glass vase" keeps a green vase without a colour
    # attribute; the ranking judges it), one with another value does not; "price": the range
    # is the words' (every product has a price: it filters as any range)
    open: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", _folded(self.categories))
        object.__setattr__(self, "brands", _folded(self.brands))
        object.__setattr__(
            self, "attributes", tuple((field, _folded(values)) for field, values in self.attributes if _folded(values))
        )

    def keyword_filters(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each payload field with its chosen values: category, brand, then the attributes."""
        return tuple(
            (name, values)
            for name, values in (("category", self.categories), ("brand", self.brands), *self.attributes)
            if values
        )

    def chosen(self) -> SearchFilters:
        """The filters the shopper chose, without those only the words named (`open`): what a
        pinned product must pass (the merchandiser pinned it for these words)."""
        attributes = tuple((f, v) for f, v in self.attributes if f not in self.open)
        return SearchFilters(
            categories=() if "category" in self.open else self.categories,
            brands=() if "brand" in self.open else self.brands,
            price_min=self.price_min,
            price_max=self.price_max,
            attributes=attributes,
        )

    def read_in(self, understood: Iterable[Understood]) -> SearchFilters:
        """These filters and those a query's words name (understanding.query_read): a value is
        added to its field's, a price phrase's ends replace the range's."""
        return self._changed(understood, add=True)

    def read_out(self, understood: Iterable[Understood]) -> SearchFilters:
        """These filters without those a query's words named: what stays of a search's filters
        when the shopper types other words (the values the old words named go with them)."""
        return self._changed(understood, add=False)

    def _changed(self, understood: Iterable[Understood], *, add: bool) -> SearchFilters:
        chosen = {"category": self.categories, "brand": self.brands, **dict(self.attributes)}
        low, high = self.price_min, self.price_max
        for u in understood:
            if u.field == "price" and add:
                low = u.price_min if u.price_min is not None else low
                high = u.price_max if u.price_max is not None else high
                if low is not None and high is not None and low > high:  # the words' end wins
                    low, high = (low, None) if u.price_max is None else (None, high)
            elif u.field == "price":
                low = None if low == u.price_min else low
                high = None if high == u.price_max else high
            elif add:
                chosen[u.field] = (*chosen.get(u.field, ()), u.value)
            else:
                chosen[u.field] = tuple(v for v in chosen.get(u.field, ()) if v != u.value)
        return SearchFilters(
            categories=chosen.pop("category"),
            brands=chosen.pop("brand"),
            price_min=low,
            price_max=high,
            attributes=tuple(chosen.items()),
        )

    def active(self) -> list[str]:
        price = self.price_min is not None or self.price_max is not None
        return [name for name, _ in self.keyword_filters()] + (["price"] if price else [])

    def where(self, *, skip: str | None = None) -> Where | None:
        """The shopper's filters for the vector index; None when there are none.

        No `active` condition: deactivating a product removes its point, and results are
        read from active rows only, so a late straggler is never shown. Leaving it out
        matters in local mode, which checks every condition on every point in Python."""
        chosen = [(key, values) for key, values in self.keyword_filters() if skip != key]
        any_of = tuple((key, values) for key, values in chosen if key not in self.open)
        # "" is how a payload holds no category or brand; an attribute without values is left out
        or_empty = tuple((key, (*values, "")) for key, values in chosen if key in self.open)
        ranges = ()
        if (self.price_min is not None or self.price_max is not None) and skip != "price":
            ranges = (
                (
                    "price",
                    float(self.price_min) if self.price_min is not None else None,
                    float(self.price_max) if self.price_max is not None else None,
                ),
            )
        where = Where(any_of=any_of, any_or_empty=or_empty, ranges=ranges)
        return where if where else None

    def queryset(self, queryset: QuerySet, *, skip: str | None = None) -> QuerySet:
        """The same filters in the database, which keeps values as typed: compared by a
        case-blind pattern that allows any whitespace between words and around them."""
        for name, values in self.keyword_filters():
            if name == skip:
                continue
            if name in ("category", "brand"):
                empty = Q(**{f"{name}__iregex": r"^\s*$"}) if name in self.open else Q(pk__in=[])
                queryset = queryset.filter(_any_pattern(name, values, whole=True) | empty)
            else:
                queryset = _attribute_filtered(queryset, name, values, or_missing=name in self.open)
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


def _attribute_filtered(
    queryset: QuerySet, field_name: str, values: tuple[str, ...], *, or_missing: bool = False
) -> QuerySet:
    """Products whose attribute (any spelling of its key the catalog uses) holds one of the values;
    `or_missing`: or that have no such attribute."""
    keys = lexicon().attribute_keys.get(field_name, ())
    if not keys:
        return queryset if or_missing else queryset.none()
    q = Q()
    missing = Q()
    for i, key in enumerate(keys):
        alias = f"_attr_{field_name}_{i}"
        queryset = queryset.alias(**{alias: KeyTextTransform(key, "attributes")})
        q |= _any_pattern(alias, values, whole=False)
        missing &= Q(**{f"{alias}__isnull": True})
    return queryset.filter(q | missing) if or_missing else queryset.filter(q)
