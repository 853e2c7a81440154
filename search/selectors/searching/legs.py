"""How a query finds products: its legs (each modality from its cutoff up, the keyword leg, a
SKU or brand that is the whole query), and what each match carries from the engine."""

from __future__ import annotations

import numpy as np

from ...retrieval import providers
from ...retrieval.cutoff import Cutoff
from ...retrieval.facets import facet_key
from ...retrieval.keywords import SPARSE_VECTOR, QueryWord, sku_key
from ...retrieval.vector_store import Leg, Where
from ..lexicon import Lexicon
from ..merchandising import Merchandising
from .filters import facet_attributes

# What each match carries from the engine: what the facets count and the sorts read.
MATCH_PAYLOAD = ("category", "brand", "price", "has_text", "has_image", "has_description")


def match_payload(merchandising: Merchandising | None = None, *, terms: bool = False) -> tuple[str, ...]:
    """What the facets and sorts read, the fields the query's boosts and buries look at, and
    (`terms`) the words a product holds, which the relevance model reads."""
    ruled = tuple(r.field for r in merchandising.rules if r.field) if merchandising else ()
    held = ("terms",) if terms else ()
    return tuple(dict.fromkeys(MATCH_PAYLOAD + tuple(a.field for a in facet_attributes()) + ruled + held))


# Legs whose products come first, in this order, when the whole query names them.
FIRST = ("sku", "brand")


def text_legs(
    query: str,
    vector: np.ndarray,
    meant: np.ndarray | None,
    understood: list[QueryWord],
    strategy: str,
    cutoff: Cutoff,
    words: Lexicon,
) -> dict[str, Leg]:
    """How a text query finds products: each modality from its cutoff up (for the query as
    meant, or also as typed), the keyword leg (every word of the query, or a correction of
    it, in the product), and a product whose SKU or brand is the whole query."""
    if meant is not None and all(w.in_catalog for w in understood if w.corrected):
        vector, meant = meant, None  # every correction is a word of this shop's: the query as meant replaces it
    legs = modality_legs(vector, strategy, cutoff)
    if meant is not None:
        # a word corrected to one only the model knows may have been right as typed ("shawl" is
        # not "shall"): both readings search, and each product keeps its better cosine
        legs.update({f"{m} as meant": leg for m, leg in modality_legs(meant, strategy, cutoff).items()})
    plain = legs[next(iter(legs))].vector
    if strategy in ("text", "image"):
        return legs
    keyword = keyword_leg(understood, words)
    if keyword is not None:
        legs["keyword"] = keyword
    key = sku_key(query)
    if key:
        legs["sku"] = Leg(using="avg", vector=plain, where=Where(any_of=(("sku_key", (key,)),)))
    brand = words.brands.get(key)
    if brand:
        legs["brand"] = Leg(using="avg", vector=plain, where=Where(any_of=(("brand", (facet_key(brand),)),)))
    return legs


def keyword_leg(understood: list[QueryWord], words: Lexicon | None = None) -> Leg | None:
    """BM25 over the words as typed and their corrections (a corrected word weighs less); it
    matches the products that hold each word the catalog holds (or a correction or synonym of
    it). Words it does not hold still score: the vocabulary may lag a new product by a few
    seconds, and a word only the model knows ("coffee" in "coffee cup") must not keep the mugs a
    synonym of "cup" finds from matching."""
    encoder = providers.get_keyword_encoder()
    weighted: dict[str, float] = {}
    groups = []
    for word in understood:
        if not word.variants or not word.in_catalog:
            weighted[word.typed] = 1.0
            continue
        terms = tuple(sorted({t for t in (encoder.term(v) for v in word.variants) if t is not None}))
        if not terms:
            continue  # a stop word
        if words is not None and not words.vocabulary.holds(terms):
            weighted[word.typed] = 1.0
            continue
        groups.append(("terms", terms))
        for variant in word.variants:
            weighted[variant] = max(weighted.get(variant, 0.0), CORRECTED_WEIGHT if word.corrected else 1.0)
    sparse = encoder.query(weighted)
    if not sparse:
        return None
    return Leg(
        using=SPARSE_VECTOR,
        sparse=sparse,
        where=Where(any_of=tuple(groups)) if groups else None,
        scores="keyword",
        matches=bool(groups),
    )


def query_words(understood: list[QueryWord], words: Lexicon) -> tuple[tuple[tuple[int, ...], ...], int, int]:
    """The query's words as the relevance model reads them: per word the catalog holds, its
    terms (the word, its corrections and synonyms), the words that name what a product is
    ("mug": a word of titles and categories) first and brand or attribute values ("red") after;
    how many name what it is; and how many words say neither (none holds them: a synonym only
    the model knows, a new word; or only descriptions do). Stop words are not counted."""
    encoder = providers.get_keyword_encoder()
    kinds, values, unknown = [], [], 0
    for word in understood:
        terms = tuple(sorted({t for t in (encoder.term(v) for v in word.variants or (word.typed,)) if t is not None}))
        if not terms:
            continue
        if word.variants and word.in_catalog and words.value_terms.intersection(terms):
            values.append(terms)
        elif word.variants and word.in_catalog and words.kind_terms.intersection(terms):
            kinds.append(terms)
        else:  # no product holds it, or only in a description ("everyday"): it says neither
            unknown += 1
    return tuple(kinds + values), len(kinds), unknown


# A corrected word's weight in the keyword score, against 1 for a word typed as the catalog spells it.
CORRECTED_WEIGHT = 0.8


def modality_legs(vector: np.ndarray, strategy: str, cutoff: Cutoff | None) -> dict[str, Leg]:
    """The query vector against each modality the strategy ranks by, from the cutoff up. A photo
    has none (SEARCH_CANDIDATES nearest of each): the cutoff is measured for words, and a photo
    always looks like something."""
    plain = tuple(np.asarray(vector, dtype=np.float32).tolist())
    modalities = (strategy,) if strategy in ("text", "image") else ("text", "image")
    return {m: Leg(using=m, vector=plain, threshold=cutoff.get(m) if cutoff else None, scores=m) for m in modalities}
