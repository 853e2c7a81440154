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
from dataclasses import dataclass

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


def query_suggest(*, query: str, limit: int = SUGGEST_LIMIT) -> list[Suggestion]:
    """Up to `limit` completions of what the shopper has typed so far; [] for nothing typed."""
    typed = words(query)
    if not typed:
        return []
    words_ = lexicon()
    complete = typed if query.endswith(" ") else typed[:-1]
    last = "" if query.endswith(" ") else typed[-1]
    allowed: set[int] | None = None
    for word in complete:
        variants = [word] if word in words_.vocabulary else [word, *words_.vocabulary.corrections(word)]
        found = _postings(words_, variants)
        allowed = found if allowed is None else allowed & found
        if not allowed:
            return []
    if last:
        found = _postings(words_, _prefix_words(words_, last))
        allowed = found if allowed is None else allowed & found
    if not allowed:
        return []
    short = len(last) < TITLE_MIN_PREFIX and not complete
    typed_text = " ".join(typed)
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
        out.append(Suggestion(phrase.text, phrase.kind))
        if len(out) == limit:
            break
    return out


def popular_phrases(*, kind: str, limit: int = 6) -> list[Suggestion]:
    """The heaviest phrases of a kind: the most clicked queries, the largest categories or brands."""
    return [Suggestion(p.text, p.kind) for p in lexicon().phrases if p.kind == kind][:limit]


__all__ = ["MAX_SUGGEST_LIMIT", "SUGGEST_LIMIT", "Suggestion", "popular_phrases", "query_suggest"]
