"""The catalog's words as this process knows them: the vocabulary that corrects typos, the brands
a whole query can name, and the phrases suggestions complete (titles, brands, categories, and
queries shoppers clicked a result of).

Built from the database (titles, brands, categories and attribute values of listed products) and
kept per process; a process looks whether the catalog changed (its size and newest edit) every
SEARCH_VOCABULARY_SECONDS and then builds it again in the background, answering with the one it
has meanwhile. At 100,000 products a build takes about a second (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connections
from django.db.models import Count, Max

from catalog.models import Product
from search.retrieval.config import search_config

from ..models import Click, SearchEvent
from ..retrieval import providers
from ..retrieval.encoders import ModelUnavailableError, tokenizer_words
from ..retrieval.facets import attribute_field, attribute_values, facet_attributes_parse, facet_key, facet_label
from ..retrieval.keywords import Vocabulary, attribute_texts, fold, sku_key, words
from ..retrieval.understanding import FacetWords
from ..retrieval.vector_store import IndexUnavailableError

logger = logging.getLogger(__name__)

# what of a description the vocabulary reads (its words are for typos, not suggestions)
DESCRIPTION_CHARS = 2000
# past queries suggested: those clicked at least this often, the most clicked, up to this many
QUERY_MIN_CLICKS = 1
QUERY_LIMIT = 5_000


@dataclass(frozen=True)
class Phrase:
    """A completion: what is shown, its kind, its words and how much it weighs."""

    text: str
    kind: str  # "query" | "brand" | "category" | "product"
    words: tuple[str, ...]
    weight: float
    # a brand's or category's listed products; a title's products (the most clicked first), with
    # each one's category and brand (as facets compare them)
    count: int = 0
    ids: tuple[int, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()


@dataclass
class Lexicon:
    vocabulary: Vocabulary
    brands: dict[str, str]  # sku_key(brand) -> brand (as most products spell it)
    # payload field ("category", "brand", "attr_colour") -> facet value as compared -> as shown
    # (the spelling most listed products use)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # attribute payload field -> the keys products spell it with ("Colour", "colour")
    attribute_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    phrases: list[Phrase] = field(default_factory=list)
    # word -> indices of the phrases holding it
    postings: dict[str, list[int]] = field(default_factory=dict)
    first_product: int = 0  # the index of the first product title among the phrases (they come last)
    # "brand" and "category": each value's phrase, by its folded text
    groups: dict[str, dict[str, Phrase]] = field(default_factory=dict)
    fingerprint: tuple = ()
    # the terms of brand and attribute values ("red", "ceramic", "Kestrel"): a query's other
    # words name what the product is ("mug"), which the relevance model reads apart
    value_terms: frozenset[int] = frozenset()
    # the terms of the other words of titles and categories: what a product is ("mug", "lamp")
    kind_terms: frozenset[int] = frozenset()
    # the price facet's bucket bounds, round numbers from the catalog's own prices (price_bounds)
    price_bounds: tuple[Decimal, ...] = ()
    currency: str = "USD"  # the one most listed products are priced in
    # the facet values a query's words can name (category, brand, SEARCH_FACET_ATTRIBUTES)
    facet_words: FacetWords = field(default_factory=FacetWords)


def _fingerprint() -> tuple:
    """What changes when the lexicon would: the listed products' count, the catalog's latest
    change (bulk paths move it too: ProductQuerySet.mark_pending), the latest click. Index
    lookups only: counting a large click table is a scan."""
    listed = Product.objects.searchable().count()
    newest = Product.objects.aggregate(newest=Max("updated_at"))["newest"]
    return listed, newest, Click.objects.aggregate(last=Max("id"))["last"]


def lexicon_build() -> Lexicon:
    """Read the listed catalog and the clicked queries into a Lexicon."""
    fingerprint = _fingerprint()
    catalog = _CatalogWords.read()
    labels, listed = _labels(catalog.spellings)
    brands, categories = listed.get("brand", {}), listed.get("category", {})
    phrases = _phrases(catalog, brands, categories)
    postings: dict[str, list[int]] = {}
    for i, phrase in enumerate(phrases):
        for word in set(phrase.words):
            postings.setdefault(word, []).append(i)
    try:
        model_words = tokenizer_words(providers.query_encoder())
    except (ModelUnavailableError, IndexUnavailableError) as exc:  # the search says so itself
        logger.warning("Typo correction uses the catalog's words only: %s", exc)
        model_words = frozenset()
    encoder = providers.get_keyword_encoder()
    vocabulary = Vocabulary(catalog.counts, encoder=encoder, model_words=model_words)
    valued = {w for name, values in labels.items() if name != "category" for v in values.values() for w in words(v)}
    value_terms = frozenset(t for t in map(encoder.term, valued) if t is not None)
    named = {w for text in [*catalog.titles, *categories] for w in words(text)}
    return Lexicon(
        value_terms=value_terms,
        kind_terms=frozenset(t for t in map(encoder.term, named) if t is not None) - value_terms,
        vocabulary=vocabulary,
        brands={sku_key(b): b for b in brands if sku_key(b)},
        labels=labels,
        attribute_keys={f: tuple(sorted(k)) for f, k in catalog.attribute_keys.items()},
        phrases=phrases,
        postings=postings,
        first_product=next((i for i, p in enumerate(phrases) if p.kind == "product"), len(phrases)),
        groups={k: {facet_key(p.text): p for p in phrases if p.kind == k} for k in ("brand", "category")},
        fingerprint=fingerprint,
        price_bounds=price_bounds(catalog.prices),
        currency=catalog.currencies.most_common(1)[0][0] if catalog.currencies else "USD",
        facet_words=FacetWords.of(
            labels, ("category", "brand", *(a.field for a in facet_attributes_parse(search_config().facet_attributes)))
        ),
    )


# the price facet's buckets: about this many, each about as full, bounded by round numbers
PRICE_BUCKETS = 5
# round numbers a bound is moved to, times a power of ten (25, 40, 75, 150, 2,000)
ROUND = tuple(Decimal(m) for m in ("1", "1.5", "2", "2.5", "3", "4", "5", "6", "7.5"))


def round_price(value: Decimal) -> Decimal:
    """The round number nearest `value` by ratio (26.39 -> 25, 47 -> 50, 1,234 -> 1,500)."""
    if value <= 0:
        return Decimal(0)
    power = Decimal(10) ** value.adjusted()
    mantissa = value / power
    best = min((*ROUND, Decimal(10)), key=lambda m: abs(math.log(float(mantissa / m))))
    rounded = (best * power).quantize(Decimal("0.01"))
    return rounded.quantize(Decimal(1)) if rounded == rounded.to_integral_value() else rounded.normalize()


def price_bounds(prices: list[Decimal]) -> tuple[Decimal, ...]:
    """Bounds between PRICE_BUCKETS buckets that hold about as many of these prices each, moved to
    round numbers; a bound at or below the lowest price or above the highest is left out (its
    bucket would be empty), so a shop of sofas and one of stickers both get buckets that split
    them. () for fewer than two distinct prices."""
    ordered = sorted(p for p in prices if p is not None)
    if len(set(ordered)) < 2:
        return ()
    bounds = []
    for i in range(1, PRICE_BUCKETS):
        bound = round_price(ordered[len(ordered) * i // PRICE_BUCKETS])
        if ordered[0] < bound <= ordered[-1] and (not bounds or bound > bounds[-1]):
            bounds.append(bound)
    return tuple(bounds)


@dataclass
class _CatalogWords:
    """The listed catalog's words (in how many products each is), each facet value's spellings,
    the keys each attribute is spelt with, and the titles."""

    counts: Counter = field(default_factory=Counter)
    spellings: dict[str, Counter] = field(default_factory=dict)  # field -> Counter of (facet key, spelling)
    attribute_keys: dict[str, set[str]] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # each title's product
    groups: list[tuple[str, str]] = field(default_factory=list)  # each title's (category, brand), compared
    prices: list[Decimal] = field(default_factory=list)
    currencies: Counter = field(default_factory=Counter)

    @classmethod
    def read(cls) -> _CatalogWords:
        found = cls()
        rows = Product.objects.searchable().values_list(
            "pk", "title", "brand", "category", "attributes", "description", "price", "currency"
        )
        for pk, title, brand, category, attributes, description, price, currency in rows.iterator(chunk_size=2000):
            found.ids.append(pk)
            found.prices.append(price)
            found.currencies[currency] += 1
            own = set(words(title)) | set(words(brand)) | set(words(category))
            own |= set(words(description[:DESCRIPTION_CHARS]))
            for text in attribute_texts(attributes or {}):
                own.update(words(text))
            found.counts.update(own)
            for name, value in (("brand", brand), ("category", category)):
                if facet_key(value):
                    found.spellings.setdefault(name, Counter())[(facet_key(value), facet_label(value))] += 1
            if isinstance(attributes, dict):
                for key, value in attributes.items():
                    found.attribute_keys.setdefault(attribute_field(str(key)), set()).add(str(key))
                    for label in attribute_values(value):
                        found.spellings.setdefault(attribute_field(str(key)), Counter())[(facet_key(label), label)] += 1
            found.titles.append(title)
            found.groups.append((facet_key(category), facet_key(brand)))
        return found


def _phrases(catalog: _CatalogWords, brands: dict[str, int], categories: dict[str, int]) -> list[Phrase]:
    """What suggestions complete, heaviest first: the queries shoppers clicked from, brands and
    categories by how many products have them, then product titles (each once, with its
    products), the most clicked and the shortest first."""
    clicked = (
        SearchEvent.objects.filter(mode="text", clicks__isnull=False)
        .exclude(query_normalized="")
        .values("query_normalized")
        .annotate(n=Count("clicks"))
        .filter(n__gte=QUERY_MIN_CLICKS)
        .order_by("-n", "query_normalized")[:QUERY_LIMIT]
    )
    phrases = [
        Phrase(r["query_normalized"], "query", tuple(words(r["query_normalized"])), 3.0 + r["n"]) for r in clicked
    ]
    phrases += [Phrase(b, "brand", tuple(words(b)), 2.0 + n, count=n) for b, n in brands.items()]
    phrases += [Phrase(c, "category", tuple(words(c)), 2.0 + n, count=n) for c, n in categories.items()]
    popular = dict(
        Click.objects.filter(product__isnull=False)
        .values_list("product_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("product_id", "n")[:QUERY_LIMIT]
    )
    by_title: dict[str, tuple[str, list[tuple[int, tuple[str, str]]]]] = {}
    for title, pk, group in zip(catalog.titles, catalog.ids, catalog.groups):
        key = fold(title).strip()
        if key:
            by_title.setdefault(key, (title, []))[1].append((pk, group))
    for title, products in by_title.values():
        products.sort(key=lambda p: -popular.get(p[0], 0))
        # a clicked product's title comes before the others (at most 1 above them)
        clicks = popular.get(products[0][0], 0)
        phrases.append(
            Phrase(
                title,
                "product",
                tuple(words(title)),
                1.0 + clicks / (clicks + 10),
                ids=tuple(pk for pk, _ in products),
                groups=tuple(group for _, group in products),
            )
        )
    phrases = [p for p in phrases if p.words]
    phrases.sort(key=lambda p: (-p.weight, len(p.words) if p.kind == "product" else 0, p.text))
    return phrases


def _labels(spellings: dict[str, Counter]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, int]]]:
    """Per field, each facet value's label (its most used spelling; the first in order on a tie)
    and, per label, how many listed products have the value."""
    labels: dict[str, dict[str, str]] = {}
    listed: dict[str, dict[str, int]] = {}
    for name, counter in spellings.items():
        best: dict[str, tuple[int, str]] = {}
        totals: Counter = Counter()
        for (key, label), n in counter.items():
            totals[key] += n
            if key not in best or (-n, label) < (-best[key][0], best[key][1]):
                best[key] = (n, label)
        labels[name] = {key: label for key, (_, label) in best.items()}
        listed[name] = {labels[name][key]: n for key, n in totals.items()}
    return labels, listed


class _Holder:
    def __init__(self) -> None:
        self.lexicon: Lexicon | None = None
        self.looked = -1e9
        self.lock = threading.Lock()  # guards `building`
        self.building = False
        self.built = threading.Event()  # set when a background build ends
        self.sync = threading.Lock()  # one build in the caller's thread at a time


_holder = _Holder()


def _build_start() -> None:
    """Build in the background unless a build is under way (call with the holder's lock)."""
    if _holder.building:
        return
    _holder.building = True
    _holder.built.clear()
    threading.Thread(target=_rebuild, name="lexicon-build", daemon=True).start()


def lexicon_warm() -> None:
    """Start building this process's lexicon in the background (a web server at start-up: at
    100,000 products the first search would otherwise wait about two seconds for it)."""
    with _holder.lock:
        if _holder.lexicon is None:
            _build_start()


def lexicon() -> Lexicon:
    """This process's lexicon: built on first use (or by lexicon_warm), built again in the
    background after the catalog or the clicks changed; with SEARCH_VOCABULARY_SECONDS = 0,
    exact at every call (tests)."""
    holder = _holder
    if search_config().vocabulary_seconds <= 0:
        with holder.sync:
            if holder.lexicon is None or holder.lexicon.fingerprint != _fingerprint():
                holder.lexicon = lexicon_build()
            return holder.lexicon
    if holder.lexicon is None:
        with holder.lock:
            _build_start()
        holder.built.wait(timeout=120)
        with holder.sync:
            if holder.lexicon is None:  # the background build failed: build here, and say why if it fails
                holder.lexicon = lexicon_build()
        return holder.lexicon
    now = time.monotonic()
    if now - holder.looked >= search_config().vocabulary_seconds:
        with holder.lock:
            if holder.building or now - holder.looked < search_config().vocabulary_seconds:
                return holder.lexicon
            holder.looked = now
            _build_start()  # looks at the fingerprint off the request's thread, builds if it moved
    return holder.lexicon


def _rebuild() -> None:
    try:
        current = _holder.lexicon
        if current is None or current.fingerprint != _fingerprint():
            _holder.lexicon = lexicon_build()
    except Exception:  # the old lexicon keeps serving; the next look tries again
        logger.exception("Building the search vocabulary failed")
    finally:
        connections.close_all()  # this thread's own connections
        _holder.looked = time.monotonic()
        with _holder.lock:
            _holder.building = False
        _holder.built.set()


def lexicon_forget() -> None:
    """Build anew at next use (tests, after settings change)."""
    _holder.lexicon = None
    _holder.looked = -1e9


__all__ = ["Lexicon", "Phrase", "lexicon", "lexicon_build", "lexicon_forget", "lexicon_warm"]
