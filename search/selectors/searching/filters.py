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
            ranges = (
                (
                    "price",
                    float(self.price_min) if self.price_min is not None else None,
                    float(self.price_max) if self.price_max is not None else None,
                ),
            )
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
