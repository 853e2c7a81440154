"""The keyword leg: words as the engine scores them, and the words a shopper meant.

Scoring is Qdrant's own BM25 (the `Bm25` of qdrant-edge-py, the same tokenizer, stemmer and
hashing that Qdrant's server-side BM25 uses) run in this process for either engine: a product
gets a sparse vector of term weights, the engine multiplies each query term by its inverse
document frequency (the IDF modifier) and adds them up. The same hashed terms go to the payload
(`terms`, a keyword index) so that the engine can say which products hold every word of a query.

Typos are fixed before the engine sees the query: each word that is not in the catalog's
vocabulary is replaced by the vocabulary words one edit away (a letter left out, added,
replaced, or two swapped: Damerau-Levenshtein distance 1, the edits people make) or, failing
that, by two vocabulary words it runs together (a space left out). Character n-grams were the
other choice; they cannot tell "mgu" from "gum" and match nonsense by its fragments, which an
honest zero-results page cannot afford. Pure Python over plain data: no Django, no I/O.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import qdrant_edge as qe

SPARSE_VECTOR = "keywords"
# Words shorter than this are never corrected: one edit turns them into too many others.
MIN_TYPO_LENGTH = 3
# Corrections kept per word, the most frequent in the catalog first.
MAX_VARIANTS = 3
# a word still being typed is read from its second letter ("k" could be anything)
MIN_PREFIX_LENGTH = 2
# Typical length (in tokens) of what a product's keyword text holds; BM25 normalises by it.
AVERAGE_LENGTH = 40.0

_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case without accents: what every comparison of words here sees."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    """The words of a text: runs of letters and digits, folded."""
    return _WORD.findall(fold(text))


def sku_key(text: str) -> str:
    """A SKU as compared: "S7-00046", "s7 00046" and "s700046" are all "s700046"."""
    return "".join(words(text))


def attribute_texts(value: object) -> Iterable[str]:
    """The values of a product's attributes as text (nested lists and objects walked; keys,
    booleans and empty values left out)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from attribute_texts(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from attribute_texts(v)
    elif value is not None and not isinstance(value, bool) and str(value).strip():
        yield str(value)


@dataclass(frozen=True)
class Sparse:
    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@dataclass(frozen=True)
class KeywordText:
    """What the keyword leg reads of a product; the title counts twice."""

    title: str = ""
    brand: str = ""
    category: str = ""
    sku: str = ""
    attributes: tuple[str, ...] = ()
    description: str = ""

    def text(self) -> str:
        key = sku_key(self.sku)
        parts = [
            self.title,
            self.title,
            self.brand,
            self.category,
            *self.attributes,
            self.sku,
            key if key != fold(self.sku) else "",
            self.description,
        ]
        return " ".join(p for p in parts if p)


class KeywordEncoder:
    """Qdrant's BM25 for documents and queries. Stateless apart from its configuration."""

    def __init__(self, *, avg_len: float = AVERAGE_LENGTH):
        self._bm25 = qe.Bm25(qe.Bm25Config(language="english", lowercase=True, ascii_folding=True, avg_len=avg_len))

    def document(self, source: KeywordText) -> Sparse:
        vector = self._bm25.embed_document(source.text())
        return Sparse(tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values))

    def term(self, word: str) -> int | None:
        """The hashed term of one word (its stem); None for a stop word."""
        indices = self._bm25.embed_query(word).indices
        return int(indices[0]) if len(indices) == 1 else None

    def query(self, weighted: Mapping[str, float]) -> Sparse:
        """The query vector: each word's term with its weight (the engine applies the IDF)."""
        terms: dict[int, float] = {}
        for word, weight in weighted.items():
            term = self.term(word)
            if term is not None:
                terms[term] = max(terms.get(term, 0.0), float(weight))
        ordered = sorted(terms)
        return Sparse(tuple(ordered), tuple(terms[t] for t in ordered))


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _neighbourhood(words: frozenset[str]) -> dict[str, list[str]]:
    """Each word of 3+ letters, and each of its one-letter deletions, to the words it comes from."""
    near: dict[str, list[str]] = {}
    for word in words:
        if len(word) >= MIN_TYPO_LENGTH:
            for key in _deletes(word) | {word}:
                near.setdefault(key, []).append(word)
    return near


@functools.lru_cache(maxsize=2)
def _model_neighbourhood(words: frozenset[str]) -> dict[str, list[str]]:
    """The model's words change only with the model, the catalog's with every edit (tens of
    thousands of tokenizer words: about 0.4 s to index, a vocabulary build of its own)."""
    return _neighbourhood(words)


def damerau1(a: str, b: str) -> bool:
    """True when a and b differ by exactly one edit: a letter added, left out, replaced, or two
    neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True)
class QueryWord:
    """A word of the query and what it is matched as: itself, its corrections, or nothing."""

    typed: str
    variants: tuple[str, ...]  # vocabulary words it stands for; () when it is unknown
    corrected: bool = False
    in_catalog: bool = True  # False: corrected to words only the model knows (no product holds them)
    completed: bool = False  # the start of a word still being typed: the catalog words it begins


class Vocabulary:
    """The catalog's words with how many products use each, for typo correction and prefixes.

    Corrections are found through deletion neighbourhoods (SymSpell): every word and every
    one-letter deletion of it is a key; two words one edit apart share a key.
    """

    def __init__(
        self, counts: Mapping[str, int], *, encoder: KeywordEncoder | None = None, model_words: Iterable[str] = ()
    ):
        self.counts = {w: int(n) for w, n in counts.items() if w and n > 0}
        # words the model reads though no product uses them ("sneakers" in a shop of "trainers"):
        # known, and corrected to when no catalog word is one edit away
        self.model_words = frozenset(model_words)
        # with an encoder, a word whose stem the catalog uses ("sock" for "socks") or a stop word
        # is known, never a typo
        self._encoder = encoder
        self._terms = {t for t in map(encoder.term, self.counts) if t is not None} if encoder else set()
        self.sorted = sorted(self.counts)
        self._near = _neighbourhood(frozenset(self.counts))
        # the same for every build of this process's vocabulary: indexed once per model
        self._near_model = _model_neighbourhood(self.model_words)

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], *, encoder: KeywordEncoder | None = None, model_words: Iterable[str] = ()
    ) -> Vocabulary:
        counts: Counter = Counter()
        for text in texts:
            counts.update(set(words(text)))
        return cls(counts, encoder=encoder, model_words=model_words)

    def __contains__(self, word: str) -> bool:
        return word in self.counts

    def known(self, word: str) -> bool:
        """In the catalog as it is, or by its stem; a word the model reads; or a stop word."""
        if word in self.counts or word in self.model_words or self._encoder is None:
            return word in self.counts or word in self.model_words
        term = self._encoder.term(word)
        return term is None or term in self._terms

    def held(self, word: str) -> bool:
        """Whether a product holds the word, as it is or by its stem (a stop word counts as held:
        it begins nothing a shopper means)."""
        if word in self.counts:
            return True
        if self._encoder is None:
            return False
        term = self._encoder.term(word)
        return term is None or term in self._terms

    def holds(self, terms: Iterable[int]) -> bool:
        """Whether some product holds one of these terms (without an encoder: unknown, so True)."""
        return not self._encoder or any(t in self._terms for t in terms)

    def __len__(self) -> int:
        return len(self.counts)

    def corrections(self, word: str, *, model: bool = False) -> list[str]:
        """Catalog words one edit from `word`, the most used first (`model`: the model's words)."""
        if len(word) < MIN_TYPO_LENGTH or word.isdigit():
            return []
        near = self._near_model if model else self._near
        found = set()
        for key in _deletes(word) | {word}:
            for candidate in near.get(key, ()):
                if candidate != word and damerau1(word, candidate):
                    found.add(candidate)
        return sorted(found, key=lambda w: (-self.counts.get(w, 0), w))[:MAX_VARIANTS]

    def split(self, word: str) -> tuple[str, str] | None:
        """Two known words of 3+ letters that `word` runs together, the most used pair (catalog
        words count their products, the model's words nothing); None if none."""
        best: tuple[int, tuple[str, str]] | None = None
        for i in range(MIN_TYPO_LENGTH, len(word) - MIN_TYPO_LENGTH + 1):
            left, right = word[:i], word[i:]
            if all(part in self.counts or part in self.model_words for part in (left, right)):
                score = min(self.counts.get(left, 0), self.counts.get(right, 0))
                if best is None or score > best[0]:
                    best = (score, (left, right))
        return best[1] if best else None

    def split_corrected(self, word: str) -> tuple[str, str] | None:
        """Two words run together, one of them with a typo ("cqnvasbackpack"): one part a known
        word of 4+ letters, the other one edit from a catalog word (else from a word of the
        model's); the likeliest pair or None."""
        best: tuple[int, tuple[str, str]] | None = None
        for i in range(MIN_TYPO_LENGTH, len(word) - MIN_TYPO_LENGTH + 1):
            left, right = word[:i], word[i:]
            for known, other, first in ((left, right, True), (right, left, False)):
                if len(known) < 4 or not (known in self.counts or known in self.model_words):
                    continue
                for fixed in (self.corrections(other) or self.corrections(other, model=True))[:1]:
                    score = min(self.counts.get(known, 0), self.counts.get(fixed, 0))
                    if best is None or score > best[0]:
                        best = (score, (known, fixed) if first else (fixed, known))
        return best[1] if best else None

    def with_prefix(self, prefix: str, *, limit: int = 200) -> list[str]:
        """Vocabulary words that start with `prefix`, the most used first."""
        start = bisect.bisect_left(self.sorted, prefix)
        end = bisect.bisect_left(self.sorted, prefix + "\uffff")
        return sorted(self.sorted[start:end], key=lambda w: (-self.counts[w], w))[:limit]

    def understand(
        self, query: str, synonyms: Mapping[str, Sequence[str]] | None = None, *, prefix: bool = False
    ) -> list[QueryWord]:
        """Each word of the query with the vocabulary words it stands for. `synonyms`: a word's
        synonyms (the merchandiser's) it stands for too, those the catalog uses; a word with
        one is not corrected. The last word, when no product holds it, stands for the catalog
        words it begins ("kest": Kestrel; "lum" is the start of Lumen, not a typo of "bum"), so
        a search reads the same typed and sent; else it is corrected as the others are.
        `prefix`: it is still being typed (search as you type): never corrected, and a single
        letter is not read yet."""
        typed = words(query)
        last = typed.pop() if typed else None
        out = self._understood(typed, synonyms)
        if last is None:
            return out
        whole = last in self.counts or bool((synonyms or {}).get(last))
        if prefix and not whole and len(last) < MIN_PREFIX_LENGTH:
            return out
        # a word the model reads but no product holds begins catalog words all the same ("lam":
        # lamps, typed or sent), so that Enter finds what typing showed
        begins = not whole and len(last) >= MIN_PREFIX_LENGTH and (prefix or not self.held(last))
        begun = self.with_prefix(last, limit=MAX_VARIANTS) if begins else []
        if begun:
            out.append(QueryWord(last, tuple(begun), completed=True))
        elif prefix and not whole and not self.known(last):
            out.append(QueryWord(last, ()))  # begins no word the shop has: unknown, not corrected yet
        else:
            out += self._understood([last], synonyms)  # a whole word, the model's, or a typo
        return out

    def _understood(self, typed: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None) -> list[QueryWord]:
        out = []
        for word in typed:
            also = tuple(s for s in (synonyms or {}).get(word, ()) if s != word and self.known(s))
            if also:
                out.append(QueryWord(word, (word, *also)))
                continue
            if self.known(word):
                out.append(QueryWord(word, (word,)))
                continue
            variants = self.corrections(word)
            if variants:
                out.append(QueryWord(word, tuple(variants), corrected=True))
                continue
            variants = self.corrections(word, model=True)
            if variants:
                out.append(QueryWord(word, tuple(variants), corrected=True, in_catalog=False))
                continue
            pair = self.split(word) or self.split_corrected(word)
            if pair:
                out.extend(QueryWord(part, (part,), corrected=True, in_catalog=part in self.counts) for part in pair)
                continue
            out.append(QueryWord(word, ()))
        return out


def corrected_query(understood: Sequence[QueryWord]) -> str:
    """The query as it was probably meant (each corrected word by its likeliest variant)."""
    return " ".join(w.variants[0] if w.variants else w.typed for w in understood)


__all__ = [
    "SPARSE_VECTOR",
    "KeywordEncoder",
    "attribute_texts",
    "KeywordText",
    "QueryWord",
    "Sparse",
    "Vocabulary",
    "corrected_query",
    "damerau1",
    "fold",
    "sku_key",
    "words",
]
