"""The merchandiser's rules that apply to a word search: its ranking rules (search.retrieval.rules)
and the synonyms of its words for the keyword leg. Each process keeps them compiled and asks the
database at each search only whether they changed, so a saved rule applies to the next search
in every process, without a deploy or a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Max, Q
from django.utils import timezone

from ..models import RankingRule, Synonym
from ..retrieval.facets import attribute_field, facet_key
from ..retrieval.keywords import words
from ..retrieval.rules import Rule


@dataclass(frozen=True)
class Merchandising:
    rules: tuple[Rule, ...] = ()
    # each word of the query with synonyms: the words it also finds, and the synonym ids used
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    synonym_ids: tuple[int, ...] = ()


def rule_of(row: RankingRule) -> Rule:
    """A rule row as the ranking applies it."""
    payload_field = attribute_field(row.attribute) if row.field == RankingRule.Field.ATTRIBUTE else row.field
    return Rule(
        id=row.pk or 0,
        action=row.action,
        product_id=row.product_id,
        position=row.position,
        field=payload_field,
        value=facet_key(row.value) if row.value else "",
        strength=min(max(row.strength or 0, 1), 100) / 100,
    )


def _applies(match: str, wanted: tuple[str, ...], query_words: list[str]) -> bool:
    """Whether a rule is for this query: by its match and its query's words, folded."""
    if match == RankingRule.Match.ANY:
        return True
    if not wanted:
        return False
    if match == RankingRule.Match.EXACT:
        return list(wanted) == query_words
    n = len(wanted)
    return any(tuple(query_words[i : i + n]) == wanted for i in range(len(query_words) - n + 1))


def synonym_words(row: Synonym) -> list[str]:
    """A synonym row's words, folded, in order, each once."""
    return list(dict.fromkeys(w for part in row.words.split(",") for w in words(part)))


Dated = tuple[datetime | None, datetime | None, Rule]  # from, until, the rule


@dataclass(frozen=True)
class _Rules:
    """Active rules as the search reads them, with their dates: exact ones by their query's
    words, the others with their match and words. Dates are checked at each search (a compiled
    rule starts and ends on time without a change to the table)."""

    exact: dict[tuple[str, ...], tuple[Dated, ...]]
    other: tuple[tuple[str, tuple[str, ...], Dated], ...]

    @classmethod
    def of(cls, rows: Iterable[RankingRule]) -> _Rules:
        exact: dict[tuple[str, ...], list[Dated]] = {}
        other = []
        for row in rows:
            if not row.active:
                continue
            wanted, dated = tuple(words(row.query)), (row.starts_at, row.ends_at, rule_of(row))
            if row.match == RankingRule.Match.EXACT:
                exact.setdefault(wanted, []).append(dated)
            else:
                other.append((row.match, wanted, dated))
        return cls({k: tuple(v) for k, v in exact.items()}, tuple(other))

    def applying(self, query_words: list[str], at: datetime) -> tuple[Rule, ...]:
        dated = self.exact.get(tuple(query_words), ()) + tuple(
            d for match, wanted, d in self.other if _applies(match, wanted, query_words)
        )
        return tuple(
            rule for starts, ends, rule in dated if (starts is None or starts <= at) and (ends is None or at < ends)
        )


@dataclass(frozen=True)
class _Synonyms:
    """Active synonyms: each word that finds others, with (synonym id, the words it finds)."""

    finds: dict[str, tuple[tuple[int, tuple[str, ...]], ...]]

    @classmethod
    def of(cls, rows: Iterable[Synonym]) -> _Synonyms:
        finds: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for row in rows:
            if not row.active:
                continue
            group = synonym_words(row)
            for word in words(row.one_way_from)[:1] or group:
                finds.setdefault(word, []).append((row.pk or 0, tuple(w for w in group if w != word)))
        return cls({k: tuple(v) for k, v in finds.items()})


# Each process keeps the rules and synonyms compiled, with the version they were read at: a
# search asks the database only whether they changed (a count and the latest change of each
# table), so a saved rule applies to the next search of every process.
_saved: dict[type, tuple[tuple, object, float]] = {}
_saved_lock = threading.Lock()


# Read afresh at least this often whatever the version says: a QuerySet.update() of another
# field than `active` moves neither the count nor the latest change.
MAX_AGE_SECONDS = 60.0


def _version(model) -> tuple:
    return tuple(
        model.objects.aggregate(
            n=Count("id"), live=Count("id", filter=Q(active=True)), last=Max("updated_at"), top=Max("id")
        ).values()
    )


def _compiled(model, compile_):
    version = _version(model)
    held = _saved.get(model)
    now = time.monotonic()
    if held is not None and held[0] == version and now - held[2] < MAX_AGE_SECONDS:
        return held[1]
    compiled = compile_(model.objects.filter(active=True))
    with _saved_lock:
        _saved[model] = (version, compiled, now)
    return compiled


def query_merchandising(
    query: str, *, rules: Iterable[RankingRule] | None = None, synonyms: Iterable[Synonym] | None = None
) -> Merchandising:
    """The active rules and synonyms for a word search. `rules` / `synonyms`: use these rows
    instead of the saved ones (a preview, with a rule as it would be saved)."""
    query_words = words(query)
    book = _compiled(RankingRule, _Rules.of) if rules is None else _Rules.of(rules)
    thesaurus = _compiled(Synonym, _Synonyms.of) if synonyms is None else _Synonyms.of(synonyms)
    found: dict[str, list[str]] = {}
    used: list[int] = []
    for word in dict.fromkeys(query_words):
        for synonym_id, others in thesaurus.finds.get(word, ()):
            found.setdefault(word, []).extend(w for w in others if w not in found[word])
            if synonym_id not in used:
                used.append(synonym_id)
    return Merchandising(
        rules=book.applying(query_words, timezone.now()),
        synonyms={w: tuple(v) for w, v in found.items() if v},
        synonym_ids=tuple(used),
    )


__all__ = ["Merchandising", "query_merchandising", "rule_of", "synonym_words"]
