"""Ranking metrics over plain data: no storage, no model.

Every function takes a ranked list of ids (best first) and the set (or graded dict) of
relevant ids for one query, and returns a float in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from math import log2


def recall_at_k(ranked: Sequence[int], relevant: Iterable[int], k: int) -> float:
    """Share of the relevant ids found in the top k.

    Args:
        ranked: ids, best first.
        relevant: the ids that count as hits.
        k: cut-off.
    Returns:
        |top k ∩ relevant| / |relevant|; 0.0 when nothing is relevant.
    """
    wanted = set(relevant)
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[int], relevant: Iterable[int], k: int | None = None) -> float:
    """1 / rank of the first relevant id (within the top k if given), else 0."""
    wanted = set(relevant)
    for position, item in enumerate(ranked[:k] if k else ranked, start=1):
        if item in wanted:
            return 1.0 / position
    return 0.0


def ndcg_at_k(ranked: Sequence[int], gains: Mapping[int, float], k: int) -> float:
    """Normalised discounted cumulative gain with graded relevance (gain 0 = irrelevant)."""
    dcg = sum(gains.get(item, 0.0) / log2(i + 2) for i, item in enumerate(ranked[:k]))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def slice_view(
    ranked: Sequence[str], grades: Mapping[str, int], keep: set[str], top: int = 3
) -> tuple[list[str], dict[str, int]]:
    """Ranking and gains for one slice of the top-grade products (e.g. those without an image).

    Top-grade products outside the slice are taken out of the ranking, so the slice is judged
    against the irrelevant and partly relevant products only, not against its own peers.
    """
    others = {item for item, g in grades.items() if g >= top and item not in keep}
    return (
        [item for item in ranked if item not in others],
        {item: g for item, g in grades.items() if item not in others},
    )


def reciprocal_ranks(ranked: Sequence[str], items: Iterable[str]) -> list[float]:
    """1 / rank of each item in the full ranking (0 where it was not retrieved)."""
    position = {item: i for i, item in enumerate(ranked, start=1)}
    return [1.0 / position[item] if item in position else 0.0 for item in items]


def relative_loss(missing: Sequence[float], complete: Sequence[float]) -> float | None:
    """How much lower the mean of `missing` is than that of `complete` (0.05 = 5% lower);
    negative when the missing-field products do better; None without both groups."""
    if not missing or not complete or mean(complete) == 0:
        return None
    return 1.0 - mean(missing) / mean(complete)
