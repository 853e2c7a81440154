"""What a query says beyond its words: a price phrase ("under $20", "20-50", "between 50 and 20")
and words that are a facet value the shop has ("red", "mugs", "Kestrel"), read as filters the
shopper can see and take back. Pure Python over plain data: no Django, no I/O.

The values a query can name come from the catalog (selectors.lexicon builds `FacetWords`); a word
is read only when it names one value of one field, whole ("red", not "re"; "mug" for "Mugs" and
"socks" for "Sock", a plural either way), so a word two fields share is left to the ranking.
Prices are read only in the shop's own currency: "under €20" in a dollar shop is left as words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from babel.numbers import get_currency_symbol, is_currency

from .keywords import fold, words

# the longest facet value (in words) a query is read for, and the shortest word that names one
MAX_VALUE_WORDS = 4
MIN_VALUE_CHARS = 3
# words that are never a value on their own, whatever the catalog holds
NOT_VALUES = frozenset({"and", "for", "the", "with", "from", "under", "over", "new", "one", "all", "yes", "not"})
# the largest price a phrase names (more digits than this are left as words)
MAX_PRICE_DIGITS = 9
# an amount in another currency than the shop's (_amount)
FOREIGN = "foreign"
# a cent: "under $20" is below 20, as a price bucket's upper end
CENT = Decimal("0.01")
# currency symbols and codes people type; one that is not the shop's leaves the phrase as words
NAMES = {"dollar": ("USD", "CAD", "AUD", "NZD"), "euro": ("EUR",), "pound": ("GBP",), "yen": ("JPY",)}
# the symbol people type for a currency where it is not Babel's English one ("CA$")
NARROW = {"CAD": "$", "AUD": "$", "NZD": "$", "HKD": "$", "SGD": "$", "MXN": "$", "CNY": "¥"}
_CODES = "usd|eur|gbp|jpy|cad|aud|nzd|chf|sek|nok|dkk|pln|inr|cny|hkd|sgd|mxn"

_NUMBER = rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d{{1,{MAX_PRICE_DIGITS}}})(?:\.\d{{1,2}})?k?"
_MONEY = (
    rf"(?P<{{n}}s1>[^\w\s.,<>=–-]{{1,3}}|[a-z]{{1,2}}\$|(?:{_CODES})(?=\s?\d))?\s?(?P<{{n}}>{_NUMBER})(?!\w|[.,]\d)"
    rf"\s?(?P<{{n}}s2>[^\w\s.,<>=–-]{{1,3}}|(?:{_CODES}|dollars?|euros?|pounds?|yen)\b)?"
)


def _money(name: str) -> str:
    return _MONEY.replace("{n}", name)


_BELOW = r"under|below|less than|cheaper than|lower than|beneath"
_AT_MOST = r"up to|upto|at most|max|maximum|no more than|not over|within|<=|<"
_ABOVE = r"over|above|more than|higher than|greater than|>"
_AT_LEAST = r"at least|from|min|minimum|starting at|no less than|>="
_PHRASES = (
    ("range", rf"(?:between|from)?\s?{_money('a')}\s?(?:-|–|to|and)\s?{_money('b')}"),
    ("below", rf"(?:{_BELOW})\s?{_money('b')}"),
    ("at_most", rf"(?:{_AT_MOST})\s?{_money('b')}"),
    ("above", rf"(?:{_ABOVE})\s?{_money('a')}"),
    ("at_least", rf"(?:{_AT_LEAST})\s?{_money('a')}"),
)
_PRICE = re.compile(
    "|".join(rf"(?P<{kind}>(?<![\w.,$€£¥-]){pattern.replace('(?P<', f'(?P<{kind}_')})" for kind, pattern in _PHRASES)
)


@dataclass(frozen=True)
class Understood:
    """One filter a query's words name: a facet value of `field` ("category", "brand",
    "attr_colour"), or a price range (`field` "price"), with the words it was read from."""

    field: str
    words: str  # as the shopper typed them ("under $20", "red")
    value: str = ""  # a facet value as compared (facets.facet_key)
    price_min: Decimal | None = None
    price_max: Decimal | None = None


@dataclass(frozen=True)
class Reading:
    """A query read: the filters it names, and the query to rank by (its price phrases taken out:
    "under $20" says what a product costs, not what it is)."""

    understood: tuple[Understood, ...] = ()
    ranked_query: str = ""
    foreign: str = ""  # a price phrase in another currency ("under €20" in a dollar shop), left as words

    def price(self) -> Understood | None:
        return next((u for u in self.understood if u.field == "price"), None)


def stem(word: str) -> str:
    """A word and its plural compared alike: "mugs", "mug"; "glasses", "glass"; "boxes", "box"."""
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@dataclass
class FacetWords:
    """The facet values a query can name: their words (stemmed) -> (field, value as compared);
    a phrase two fields or two values share is kept out (`ambiguous`)."""

    phrases: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    ambiguous: set[tuple[str, ...]] = field(default_factory=set)

    @classmethod
    def of(cls, labels: Mapping[str, Mapping[str, str]], fields: Iterable[str]) -> FacetWords:
        """From the lexicon's labels (field -> value as compared -> as shown), for `fields`."""
        found = cls()
        for name in fields:
            for value, label in labels.get(name, {}).items():
                key = tuple(stem(w) for w in words(label))
                if not _nameable(key):
                    continue
                if key in found.phrases and found.phrases[key] != (name, value):
                    found.ambiguous.add(key)
                found.phrases.setdefault(key, (name, value))
        for key in found.ambiguous:
            found.phrases.pop(key, None)
        return found


def _nameable(key: tuple[str, ...]) -> bool:
    """Whether a value's words can stand for it in a query: not a number, not a stopword, not
    one or two letters, not longer than MAX_VALUE_WORDS words."""
    if not key or len(key) > MAX_VALUE_WORDS:
        return False
    if len(key) == 1 and (key[0] in NOT_VALUES or key[0].isdigit()):
        return False
    return len("".join(key)) >= MIN_VALUE_CHARS and not all(w.isdigit() for w in key)


def query_read(query: str, facets: FacetWords, currency: str, *, prefix: bool = False) -> Reading:
    """The filters `query` names: its first price phrase in `currency`, then each facet value its
    other words name (the longest first). `prefix`: its last word is still being typed and is not
    read ("under $2" on its way to "under $25", "re" on its way to "red")."""
    text = fold(query)
    price, span, foreign = _price_read(text, currency, prefix=prefix)
    rest = text if span is None else text[: span[0]] + " " * (span[1] - span[0]) + text[span[1] :]
    tokens = [(m.group(), m.end()) for m in re.finditer(r"[a-z0-9]+", rest)]
    if prefix and tokens and tokens[-1][1] == len(text.rstrip()):
        tokens.pop()
    stems = [stem(w) for w, _ in tokens]
    found: list[Understood] = [price] if price else []
    taken: set[int] = set()
    for size in range(min(MAX_VALUE_WORDS, len(stems)), 0, -1):
        for i in range(len(stems) - size + 1):
            hit = facets.phrases.get(tuple(stems[i : i + size]))
            if hit is None or taken & set(range(i, i + size)) or any((u.field, u.value) == hit for u in found):
                continue
            taken |= set(range(i, i + size))
            typed = " ".join(w for w, _ in tokens[i : i + size])
            found.append(Understood(field=hit[0], value=hit[1], words=typed))
    return Reading(understood=tuple(found), ranked_query=" ".join(rest.split()) if price else query, foreign=foreign)


def _price_read(text: str, currency: str, *, prefix: bool) -> tuple[Understood | None, tuple[int, int] | None, str]:
    """The first price phrase of the folded query in the shop's currency, where it stands, and
    the first one in another currency (left as words)."""
    foreign = ""
    for match in _PRICE.finditer(text):
        if prefix and match.end() >= len(text.rstrip()):
            continue  # its number may still be growing
        kind = match.lastgroup
        low, high = _amount(match, f"{kind}_a", currency), _amount(match, f"{kind}_b", currency)
        if FOREIGN in (low, high):
            foreign = foreign or " ".join(match.group().split())
            continue
        if low is False or high is False or (low is None and high is None):
            continue  # too large to be a price
        if kind == "range" and low > high:
            low, high = high, low
        if kind == "below" and high <= 0:
            continue  # nothing costs less than nothing: words
        if kind == "below":
            high = max(high - CENT, Decimal(0))
        elif kind == "above":
            low = low + CENT
        typed = " ".join(match.group().split())
        return Understood(field="price", words=typed, price_min=low, price_max=high), match.span(), ""
    return None, None, foreign


def _amount(match: re.Match, name: str, currency: str) -> Decimal | None | bool | str:
    """The amount a group names (None: the phrase has no such end; FOREIGN: in another
    currency; False: too large to be a price)."""
    if name not in match.re.groupindex or match.group(name) is None:
        return None
    symbols = [s for s in (match.group(f"{name}s1"), match.group(f"{name}s2")) if s]
    if not all(_ours(s, currency) for s in symbols):
        return FOREIGN
    raw = match.group(name)
    value = Decimal(raw.rstrip("k").replace(",", "")) * (1000 if raw.endswith("k") else 1)
    return False if value.adjusted() >= MAX_PRICE_DIGITS else value


def _ours(symbol: str, currency: str) -> bool:
    """Whether a typed symbol ("$", "US$"), code ("usd") or currency word ("dollars") is the
    shop's currency."""
    typed, currency = symbol.strip(), currency.upper()
    if typed.isalpha():
        name = typed.removesuffix("s") if typed.removesuffix("s") in NAMES else typed
        return currency in NAMES[name] if name in NAMES else typed == currency.lower()
    if typed.endswith("$") and typed[:-1].isalpha():  # "us$", "ca$"
        return currency.lower().startswith(typed[:-1])
    own = {NARROW.get(currency, "")}
    if is_currency(currency):
        own.add(fold(get_currency_symbol(currency, locale="en")))
    return typed in own


__all__ = ["FacetWords", "Reading", "Understood", "query_read", "stem"]
