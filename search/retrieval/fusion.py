"""Fusion of per-modality scores: pure functions over plain data, no Django, no I/O.

A query vector meets a product's `text` vector and its `image` vector. The two cosines live
on different scales (CLIP text-text cosines are high and bunched, text-image cosines low and
narrow), so adding them raw lets the scale decide the ranking. Each modality is therefore
standardised on its own distribution over this query's candidates, and a product's score is
the weighted mean over the modalities it HAS: a missing image is neither a penalty nor a bonus.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# text-text and text-image cosines, and the keyword leg's BM25 score (keywords.py)
MODALITIES = ("text", "image", "keyword")
WEIGHTS_EXAMPLE = "text=1,image=0.8,keyword=1"
# Below this spread a modality carries no ranking information for this query (all scores
# equal up to float noise), so every candidate gets 0 there instead of amplified noise.
MIN_STD = 1e-6


@dataclass(frozen=True)
class Candidate:
    """A product found for a query, with its raw cosine per modality it has a vector for."""

    id: int
    raw: Mapping[str, float]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    id: int
    score: float
    raw: Mapping[str, float]
    normalized: Mapping[str, float]
    payload: Mapping[str, Any] = field(default_factory=dict)


def zscore(scores: np.ndarray) -> np.ndarray:
    """Per-query standardisation: text-text and text-image cosines live on different scales.

    Args:
        scores: raw scores of one modality for this query's candidates.
    Returns:
        (scores - mean) / std; all zeros when there are fewer than two distinct scores,
        because one candidate or a tie says nothing about relative relevance.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    std = scores.std()
    if std < MIN_STD:
        return np.zeros_like(scores)
    return (scores - scores.mean()) / std


def normalize_per_modality(candidates: Sequence[Candidate],
                           modalities: Iterable[str] = MODALITIES) -> dict[int, dict[str, float]]:
    """Standardise each modality over the candidates that have it.

    Returns:
        {candidate id: {modality: normalised score}}, with a modality absent where the
        candidate has no vector for it (not zero: absent).
    """
    out: dict[int, dict[str, float]] = {c.id: {} for c in candidates}
    for modality in modalities:
        having = [c for c in candidates if modality in c.raw]
        if not having:
            continue
        normalized = zscore(np.array([c.raw[modality] for c in having]))
        for candidate, value in zip(having, normalized):
            out[candidate.id][modality] = float(value)
    return out


def fuse_normalized(candidates: Sequence[Candidate], weights: Mapping[str, float]) -> list[Ranked]:
    """Rank by the weighted mean of normalised scores over the modalities each product has.

    Args:
        candidates: this query's candidates with raw per-modality cosines.
        weights: weight per modality (e.g. {"text": 1.0, "image": 1.0}); a modality with
            weight 0 or absent from the mapping is ignored.
    Returns:
        Candidates with at least one weighted modality, best first; ties broken by id so
        the order is stable across calls and pages.
    """
    active = {m: float(w) for m, w in weights.items() if w > 0}
    # every modality is normalised for reporting; only the weighted ones enter the score
    normalized = normalize_per_modality(candidates)
    ranked = []
    for candidate in candidates:  # plain loops: this runs for every candidate of every search
        own = normalized[candidate.id]
        total = weighted = 0.0
        for modality, weight in active.items():
            value = own.get(modality)
            if value is not None:
                total += weight
                weighted += weight * value
        if total:
            ranked.append(Ranked(candidate.id, weighted / total, candidate.raw, own, candidate.payload))
    return sort_ranked(ranked)


def rank_single(candidates: Sequence[Candidate], modality: str) -> list[Ranked]:
    """Rank by one modality's raw cosine; products without that vector are left out."""
    normalized = normalize_per_modality(candidates)
    ranked = [Ranked(c.id, float(c.raw[modality]), dict(c.raw), normalized[c.id], c.payload)
              for c in candidates if modality in c.raw]
    return sort_ranked(ranked)


def rank_by_scores(candidates: Sequence[Candidate], scores: Mapping[int, float]) -> list[Ranked]:
    """Order candidates by scores computed elsewhere (the avg vector, Qdrant's RRF or DBSF)."""
    normalized = normalize_per_modality(candidates)
    by_id = {c.id: c for c in candidates}
    ranked = [Ranked(pid, float(score), dict(by_id[pid].raw), normalized[pid], by_id[pid].payload)
              for pid, score in scores.items() if pid in by_id]
    return sort_ranked(ranked)


def sort_ranked(ranked: Iterable[Ranked]) -> list[Ranked]:
    return sorted(ranked, key=lambda r: (-r.score, r.id))


def weights_parse(raw: str | Mapping[str, float]) -> dict[str, float]:
    """The one reader of the fusion-weights format (SEARCH_FUSION_WEIGHTS, evaluate_search).

    Args:
        raw: "text=1,image=0.8", or a mapping such as {"text": 1, "image": 0.8}.
    Returns:
        {"text": 1.0, "image": 0.8}: known modalities, weights >= 0, at least one above 0.
    Raises:
        ValueError: the text is not modality=weight pairs, or the weights are not usable;
            the message says what to write.
    """
    if isinstance(raw, Mapping):
        pairs = [(str(k), v) for k, v in raw.items()]
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in str(raw).split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"{raw!r}: write modality=weight pairs such as {WEIGHTS_EXAMPLE}")
            pairs.append((key.strip(), value.strip()))
    try:
        weights = {key: float(value) for key, value in pairs}
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r}: write modality=weight pairs such as {WEIGHTS_EXAMPLE}") from None
    unknown = [key for key in weights if key not in MODALITIES]
    if unknown or not any(w > 0 for w in weights.values()) or any(w < 0 for w in weights.values()):
        raise ValueError(f"{raw!r}: weights are for {', '.join(MODALITIES)}, >= 0, at least one above 0"
                         + (f" ({', '.join(unknown)} is not a modality)" if unknown else ""))
    return weights


def weights_format(weights: Mapping[str, float]) -> str:
    """{"text": 1.0, "image": 0.8} -> "text=1,image=0.8", the form weights_parse reads."""
    return ",".join(f"{k}={v:g}" for k, v in weights.items())
