"""Facet values as shoppers compare them, and the attributes they filter on.

A merchandiser's "Mugs ", "mugs" and "MUGS" are one category to a shopper: every engine filters
and counts on the folded value (`facet_key`: whitespace collapsed, case folded) that each
product's payload carries, while the database keeps the value as it was typed and the storefront
shows the spelling most products use (the lexicon's labels).

Attributes (colour, material, size...) are in the payload too, each under a field of its own
(`attr_<key>`, `attribute_field`), so that the attributes chosen as filters
(SEARCH_FACET_ATTRIBUTES) can change without writing any point again: a newly chosen one only
needs its payload index. Pure Python: no Django.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# the longest facet value kept (longer ones are cut), and the most values one attribute holds
MAX_VALUE_CHARS = 120
MAX_VALUES = 32
ATTRIBUTE_PREFIX = "attr_"


def facet_key(value: object) -> str:
    """A facet value as compared: whitespace collapsed and trimmed, case folded."""
    return " ".join(str(value).split()).casefold()[:MAX_VALUE_CHARS]


def facet_label(value: object) -> str:
    """A facet value as shown: whitespace collapsed and trimmed, the case as typed."""
    return " ".join(str(value).split())[:MAX_VALUE_CHARS]


def attribute_slug(key: str) -> str:
    """An attribute's key as the URL and payload name it: "Colour (EU)" -> "colour_eu"."""
    return re.sub(r"[^0-9a-z]+", "_", facet_key(key)).strip("_")[:60]


def attribute_field(key: str) -> str:
    """The payload field that holds an attribute's folded values."""
    return ATTRIBUTE_PREFIX + attribute_slug(key)


def attribute_values(value: object) -> list[str]:
    """An attribute's value as facet values (shown spelling): a text or number is one, a list
    of them is each, yes/no is "yes" or "no"; nested objects and empty values are none."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            text = "yes" if item else "no"
        elif isinstance(item, (str, int, float)):
            text = facet_label(item)
        else:
            continue
        if text and text not in out:
            out.append(text)
    return out[:MAX_VALUES]


def facet_payload(*, category: str, brand: str, attributes: Mapping[str, object] | None) -> dict[str, object]:
    """What a product's payload carries for filters and facets: its category and brand folded, and
    each attribute's folded values under its own field."""
    payload: dict[str, object] = {"category": facet_key(category), "brand": facet_key(brand)}
    for key, value in (attributes or {}).items() if isinstance(attributes, Mapping) else ():
        field = attribute_field(str(key))
        keys = sorted({facet_key(v) for v in attribute_values(value)} | set(payload.get(field, ())))
        if field != ATTRIBUTE_PREFIX and keys:
            payload[field] = keys
    return payload


@dataclass(frozen=True)
class FacetAttribute:
    """An attribute shoppers filter on: its legend, its URL parameter and its payload field."""

    key: str  # as the merchandiser names it in SEARCH_FACET_ATTRIBUTES
    label: str
    param: str
    field: str


# URL parameters a search already has: an attribute with one of these names gets `attr_` before it
RESERVED_PARAMS = frozenset(
    {
        "q",
        "photo",
        "category",
        "brand",
        "price_min",
        "price_max",
        "sort",
        "page",
        "page_size",
        "strategy",
        "image",
        "format",
        "csrfmiddlewaretoken",
    }
)


def facet_attributes_parse(value: str | Iterable[str]) -> tuple[FacetAttribute, ...]:
    """SEARCH_FACET_ATTRIBUTES ("colour,material,size": the attribute keys shoppers filter on,
    in the order the storefront shows them) as FacetAttributes; a key named twice counts once."""
    keys = value.split(",") if isinstance(value, str) else list(value)
    seen: set[str] = set()
    out = []
    for raw in keys:
        key = " ".join(str(raw).split())
        slug = attribute_slug(key)
        if not slug or slug in seen:
            continue
        seen.add(slug)
        param = slug if slug not in RESERVED_PARAMS else ATTRIBUTE_PREFIX + slug
        out.append(FacetAttribute(key=key, label=key[:1].upper() + key[1:], param=param, field=ATTRIBUTE_PREFIX + slug))
    return tuple(out)


__all__ = [
    "ATTRIBUTE_PREFIX",
    "FacetAttribute",
    "attribute_field",
    "attribute_slug",
    "attribute_values",
    "facet_attributes_parse",
    "facet_key",
    "facet_label",
    "facet_payload",
]
