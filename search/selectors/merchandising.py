"""The merchandiser's rules that apply to a word search: its ranking rules (search.retrieval.rules)
and the synonyms of its words for the keyword leg. Read from the database at each search, so a
saved rule applies to the next search in every process, without a deploy or a restart."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Q

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
    payload_field = {"brand": "brand", "category": "category"}.get(row.field) or (
        attribute_field(row.attribute) if row.field == RankingRule.Field.ATTRIBUTE else "")
    return Rule(id=row.pk or 0, action=row.action, product_id=row.product_id, position=row.position,
                field=payload_field, value=facet_key(row.value) if row.value else "",
                strength=min(max(row.strength or 0, 1), 100) / 100)


def rule_applies(row: RankingRule, query_words: list[str]) -> bool:
    """Whether a rule is for this query (its words, folded)."""
    if row.match == RankingRule.Match.ANY:
        return True
    wanted = words(row.query)
    if not wanted:
        return False
    if row.match == RankingRule.Match.EXACT:
        return wanted == query_words
    n = len(wanted)
    return any(query_words[i:i + n] == wanted for i in range(len(query_words) - n + 1))


def synonym_words(row: Synonym) -> list[str]:
    """A synonym row's words, folded, in order, each once."""
    return list(dict.fromkeys(w for part in row.words.split(",") for w in words(part)))


def query_merchandising(query: str, *, rules: Iterable[RankingRule] | None = None,
                        synonyms: Iterable[Synonym] | None = None) -> Merchandising:
    """The active rules and synonyms for a word search. `rules` / `synonyms`: use these rows
    instead of the saved ones (a preview, with a rule as it would be saved)."""
    query_words = words(query)
    if rules is None:
        rules = RankingRule.objects.filter(active=True).filter(
            Q(match=RankingRule.Match.ANY) | Q(match=RankingRule.Match.EXACT, query_key=" ".join(query_words))
            | Q(match=RankingRule.Match.CONTAINS))
    applying = tuple(rule_of(row) for row in rules if row.active and rule_applies(row, query_words))
    if synonyms is None:
        synonyms = Synonym.objects.filter(active=True)
    found: dict[str, list[str]] = {}
    used: list[int] = []
    for row in synonyms:
        if not row.active:
            continue
        group = synonym_words(row)
        source = words(row.one_way_from)[:1]
        for word in set(query_words) & set(source or group):
            found.setdefault(word, []).extend(w for w in group if w != word and w not in found[word])
            if row.pk not in used:
                used.append(row.pk or 0)
    return Merchandising(rules=applying, synonyms={w: tuple(v) for w, v in found.items() if v},
                         synonym_ids=tuple(used))


__all__ = ["Merchandising", "query_merchandising", "rule_applies", "rule_of", "synonym_words"]
