"""Suggestions as a shopper types: completions from past queries that shoppers clicked a result
of, brands, categories and product titles (lexicon.py), tolerant of a typo in each word.

The words typed before the last must each be in a suggestion (as typed, or one edit away); the
last word is a prefix of one of its words (as typed or, when no word starts so, one edit away).
Suggestions come in the lexicon's order: clicked queries by clicks, then brands and categories
by size, then titles.
"""

from __future__ import annotations

import heapq
import string
from collections import Counter
from dataclasses import dataclass

from catalog.models import Product

from ..retrieval.keywords import fold, words
from .lexicon import Lexicon, lexicon

SUGGEST_LIMIT = 8
MAX_SUGGEST_LIMIT = 20
# prefixes shorter than this complete only to queries, brands and categories: a single letter
# starts thousands of titles, none of which is a better guess than another
TITLE_MIN_PREFIX = 2
PREFIX_WORDS = 64  # vocabulary words a prefix stands for, the most used first


@dataclass(frozen=True)
class Suggestion:
    text: str
    kind: str  # "query" | "brand" | "category" | "product"
    count: int = 0  # a brand's or category's products (predictive_search: those whose titles hold the words)
    more: bool = False  # the count is a lower bound (more titles matched than were counted)


@dataclass
class Predictive:
    """What the search box shows while a shopper types: completions, the products whose titles
    hold the words (the best matches first), and the brands and categories they name."""

    suggestions: list[Suggestion]
    products: list[Product]
    categories: list[Suggestion]
    brands: list[Suggestion]


def _prefix_words(words_: Lexicon, prefix: str) -> list[str]:
    """Vocabulary words starting with the prefix; if none, with a prefix one edit away."""
    found = words_.vocabulary.with_prefix(prefix, limit=PREFIX_WORDS)
    if found or len(prefix) < 3:
        return found
    edits = {prefix[:i] + prefix[i + 1 :] for i in range(len(prefix))}
    edits |= {prefix[:i] + prefix[i + 1] + prefix[i] + prefix[i + 2 :] for i in range(len(prefix) - 1)}
    edits |= {prefix[:i] + c + prefix[i + 1 :] for i in range(len(prefix)) for c in string.ascii_lowercase}
    edits |= {prefix[:i] + c + prefix[i:] for i in range(len(prefix) + 1) for c in string.ascii_lowercase}
    edits.discard(prefix)
    out: list[str] = []
    for edit in sorted(edits):
        if len(edit) >= 2:
            out += words_.vocabulary.with_prefix(edit, limit=PREFIX_WORDS)
    return sorted(set(out), key=lambda w: (-words_.vocabulary.counts.get(w, 0), w))[:PREFIX_WORDS]


def _postings(words_: Lexicon, variants: list[str]) -> set[int]:
    out: set[int] = set()
    for variant in variants:
        out.update(words_.postings.get(variant, ()))
    return out


def _matching(words_: Lexicon, query: str) -> tuple[set[int], list[str], str]:
    """The phrases holding every word typed (the last as a prefix; each may be one edit off),
    with the finished words and the one being typed."""
    typed = words(query)
    complete = typed if query.endswith(" ") else typed[:-1]
    last = "" if query.endswith(" ") else typed[-1] if typed else ""
    allowed: set[int] | None = None
    for word in complete:
        variants = [word] if word in words_.vocabulary else [word, *words_.vocabulary.corrections(word)]
        found = _postings(words_, variants)
        allowed = found if allowed is None else allowed & found
        if not allowed:
            return set(), complete, last
    if last:
        found = _postings(words_, _prefix_words(words_, last))
        allowed = found if allowed is None else allowed & found
    return allowed or set(), complete, last


def query_suggest(*, query: str, limit: int = SUGGEST_LIMIT) -> list[Suggestion]:
    """Up to `limit` completions of what the shopper has typed so far; [] for nothing typed."""
    words_ = lexicon()
    allowed, complete, last = _matching(words_, query)
    return _completions(words_, allowed, complete, last, limit)


def _completions(words_: Lexicon, allowed: set[int], complete: list[str], last: str, limit: int) -> list[Suggestion]:
    short = len(last) < TITLE_MIN_PREFIX and not complete
    typed_text = " ".join([*complete, last]).strip()
    out: list[Suggestion] = []
    seen = set()
    for i in heapq.nsmallest(limit * 4, allowed):
        phrase = words_.phrases[i]
        if short and phrase.kind == "product":
            continue
        key = fold(phrase.text).strip()
        if key in seen or key == typed_text:
            continue
        seen.add(key)
        out.append(Suggestion(phrase.text, phrase.kind, phrase.count))
        if len(out) == limit:
            break
    return out


# completions read for the categories and brands the words name
GROUP_SCAN = 50
# titles scored for the products shown (the heaviest first: the most clicked, the shortest)
PRODUCT_CANDIDATES = 200


def predictive_search(*, query: str, limit: int = SUGGEST_LIMIT, products: int = 4, groups: int = 3) -> Predictive:
    """Completions (query_suggest), up to `products` products whose titles hold the words typed,
    the best matches first (every word as typed rather than one edit off, the word being typed
    as a whole word rather than its start, then the most clicked and the shortest title), and up
    to `groups` categories and brands of the products whose titles hold the words, each with how
    many of them it has (_title_groups)."""
    words_ = lexicon()
    allowed, complete, last = _matching(words_, query)
    if not allowed:
        return Predictive([], [], [], [])
    # one pass for the completions shown and the groups the words name (the first `limit` of a
    # longer list are the same ones)
    completed = _completions(words_, allowed, complete, last, max(limit, GROUP_SCAN))
    suggestions = completed[:limit]
    found = []
    if len(last) >= TITLE_MIN_PREFIX or complete:
        first = words_.first_product
        titles = heapq.nsmallest(PRODUCT_CANDIDATES, (i for i in allowed if i >= first))
        titles.sort(key=lambda i: _title_rank(words_.phrases[i], complete, last))
        ids = [words_.phrases[i].ids[0] for i in titles[:products]]
        rows = Product.objects.searchable().in_bulk(ids)
        found = [rows[pk] for pk in ids if pk in rows]
    categories, brands = _title_groups(words_, allowed, groups)
    return Predictive(suggestions, found, categories, brands)


def _title_rank(phrase, complete: list[str], last: str) -> tuple:
    held = set(phrase.words)
    missing = sum(w not in held for w in complete) + (bool(last) and last not in held)
    partial = bool(last) and not any(w.startswith(last) for w in phrase.words)
    return (missing + partial, -phrase.weight, len(phrase.words), phrase.text)


# product titles counted for the groups (the heaviest first); past it, counts are lower bounds
GROUP_TITLES = 5000


def _title_groups(words_: Lexicon, allowed: set[int], limit: int) -> tuple[list[Suggestion], list[Suggestion]]:
    """The categories and brands of the products whose titles hold the words, each with how
    many of them it has, the most first."""
    first = words_.first_product
    titles = [i for i in allowed if i >= first]
    more = len(titles) > GROUP_TITLES
    if more:
        titles = heapq.nsmallest(GROUP_TITLES, titles)
    counts: tuple[Counter, Counter] = (Counter(), Counter())
    for i in titles:
        for category, brand in words_.phrases[i].groups:
            counts[0][category] += 1
            counts[1][brand] += 1
    out = []
    for name, counter in zip(("category", "brand"), counts):
        labels = words_.labels.get(name, {})
        top = sorted(((n, v) for v, n in counter.items() if v), key=lambda nv: (-nv[0], nv[1]))[:limit]
        out.append([Suggestion(labels.get(v, v), name, n, more) for n, v in top])
    return out[0], out[1]


def popular_phrases(*, kind: str, limit: int = 6) -> list[Suggestion]:
    """The heaviest phrases of a kind: the most clicked queries, the largest categories or brands."""
    return [Suggestion(p.text, p.kind) for p in lexicon().phrases if p.kind == kind][:limit]


__all__ = [
    "MAX_SUGGEST_LIMIT",
    "SUGGEST_LIMIT",
    "Predictive",
    "Suggestion",
    "popular_phrases",
    "predictive_search",
    "query_suggest",
]
