"""Fusion of per-modality scores: pure functions over plain data, no Django, no I/O.

A query vector meets a product's `text` vector and its `image` vector. The two cosines live
on different scales (CLIP text-text cosines are high and bunched, text-image cosines low and
narrow), so adding them raw lets the scale decide the ranking. Each modality is therefore
standardised on its own distribution over this query's candidates, and a product's score is
the weighted mean over the modalities it HAS: a missing image is neither a penalty nor a bonus.
"""

from __future__ import annotations

import math
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
    relevance: float | None = None  # the probability that it is a good match (relevance.py), when known


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


def normalize_per_modality(
    candidates: Sequence[Candidate], modalities: Iterable[str] = MODALITIES
) -> dict[int, dict[str, float]]:
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
    ranked = [
        Ranked(c.id, float(c.raw[modality]), dict(c.raw), normalized[c.id], c.payload)
        for c in candidates
        if modality in c.raw
    ]
    return sort_ranked(ranked)


def rank_by_scores(candidates: Sequence[Candidate], scores: Mapping[int, float]) -> list[Ranked]:
    """Order candidates by scores computed elsewhere (the avg vector, Qdrant's RRF or DBSF)."""
    normalized = normalize_per_modality(candidates)
    by_id = {c.id: c for c in candidates}
    ranked = [
        Ranked(pid, float(score), dict(by_id[pid].raw), normalized[pid], by_id[pid].payload)
        for pid, score in scores.items()
        if pid in by_id
    ]
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
        raise ValueError(
            f"{raw!r}: weights are for {', '.join(MODALITIES)}, >= 0, at least one above 0"
            + (f" ({', '.join(unknown)} is not a modality)" if unknown else "")
        )
    return weights


def weights_format(weights: Mapping[str, float]) -> str:
    """{"text": 1.0, "image": 0.8} -> "text=1,image=0.8", the form weights_parse reads."""
    return ",".join(f"{k}={v:g}" for k, v in weights.items())


# --- calibration: every candidate on one relevance scale -----------------------------------
# A mean of z-scores does not put a product scored on one modality and one scored on two on
# the same scale (the mean of two correlated z-scores has a smaller spread than one), and the
# text cosine of a title alone is not that of a title with a description. A calibration maps
# what a candidate has into a relevance score within its query (a log-odds up to the query's
# constant), fitted on the shop's own labelled
# queries and clicks: the same scale whichever fields a product has. Its features (one model,
# with an indicator and interactions per missing field, so little data fits it):
FEATURES = (
    "z_text",
    "raw_text",  # the text tower: this query's z-score and the raw cosine
    "z_keyword",
    "log_keyword",  # the keyword leg (0 where the product shares no word)
    "has_image",
    "z_image",
    "raw_image",  # the image tower, 0 where the product has no image
    # without an image the text and keyword legs are all there is: their own weights
    "no_image_z_text",
    "no_image_raw_text",
    "no_image_z_keyword",
    # a title alone, as the text tower saw it: its own weights too
    "no_description",
    "no_description_z_text",
    "no_description_raw_text",
    "no_description_z_image",
)
CALIBRATION_VERSION = 1
RIDGE = 1e-3  # L2 penalty on the coefficients (the lists' weights sum to 1)


def candidate_features(
    raw: Mapping[str, float], normalized: Mapping[str, float], payload: Mapping[str, Any]
) -> list[float]:
    """FEATURES of one candidate, from its raw scores, their z-scores and its payload."""
    has_image = "image" in raw
    no_description = 0.0 if payload.get("has_description", True) else 1.0
    z_text = normalized.get("text", 0.0)
    keyword = max(float(raw.get("keyword", 0.0)), 0.0)
    raw_text, z_keyword, z_image = (
        float(raw.get("text", 0.0)),
        normalized.get("keyword", 0.0),
        normalized.get("image", 0.0),
    )
    no_image = 0.0 if has_image else 1.0
    return [
        z_text,
        raw_text,
        z_keyword,
        math.log1p(keyword),
        1.0 - no_image,
        z_image,
        float(raw.get("image", 0.0)),
        no_image * z_text,
        no_image * raw_text,
        no_image * z_keyword,
        no_description,
        no_description * z_text,
        no_description * raw_text,
        no_description * z_image,
    ]


@dataclass(frozen=True)
class Calibration:
    """A candidate's relevance score within its query, linear in FEATURES (no intercept: only
    the order within a query matters); `fitted` says on what."""

    coefficients: Mapping[str, float]
    fitted: Mapping[str, Any] = field(default_factory=dict)

    def score(self, features: Sequence[float]) -> float:
        return sum(self.coefficients.get(name, 0.0) * value for name, value in zip(FEATURES, features))

    def as_dict(self) -> dict:
        return {"version": CALIBRATION_VERSION, "coefficients": dict(self.coefficients), "fitted": dict(self.fitted)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Raises ValueError when the data is not a calibration this code can apply."""
        if not isinstance(data, Mapping) or data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"not a version {CALIBRATION_VERSION} fusion calibration; fit it again (calibrate_fusion)")
        coefficients = data.get("coefficients")
        if not isinstance(coefficients, Mapping) or set(coefficients) - set(FEATURES):
            raise ValueError(f"the coefficients must be for {', '.join(FEATURES)}; fit it again (calibrate_fusion)")
        try:
            return cls({k: float(v) for k, v in coefficients.items()}, dict(data.get("fitted") or {}))
        except (TypeError, ValueError):
            raise ValueError("the coefficients must be numbers; fit it again (calibrate_fusion)") from None


def fuse_calibrated(candidates: Sequence[Candidate], calibration: Calibration) -> list[Ranked]:
    """Rank by the calibrated relevance score: every candidate, whatever fields it has, on one
    scale. The z-scores are those of normalize_per_modality, as in fuse_normalized."""
    normalized = normalize_per_modality(candidates)
    ranked = [
        Ranked(
            c.id,
            calibration.score(candidate_features(c.raw, normalized[c.id], c.payload)),
            c.raw,
            normalized[c.id],
            c.payload,
        )
        for c in candidates
    ]
    return sort_ranked(ranked)


def calibration_fit(
    features: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    group_weights: np.ndarray,
    *,
    ridge: float = RIDGE,
    iterations: int = 50,
) -> dict[str, float]:
    """A listwise ranking fit (ListNet): per list of one query's matches, the softmax of the
    scores is pulled towards the targets' shares, by Newton's method with an L2 penalty.

    Equal targets ask for equal scores, so products of the same relevance are pulled to the
    same score whichever fields they have; only the order within a query matters, so there
    is no intercept.

    Args:
        features: one row of FEATURES per (list, product).
        targets: >= 0 per row; a list's targets are its relevance shares (e.g. 1 for the
            products of a grade or better, 0 for the others).
        groups: the list of each row, rows of a list adjacent.
        group_weights: per list (indexed by the group number), e.g. so every query weighs the same.
    Returns:
        {feature: coefficient}.
    """
    x = np.asarray(features, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    groups = np.asarray(groups)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sums = np.add.reduceat(t, starts)
    keep = sums > 0
    t = t / np.repeat(np.where(keep, sums, 1.0), np.diff(np.r_[starts, len(t)]))
    w_list = np.asarray(group_weights, dtype=np.float64)[groups[starts]] * keep
    w_list = w_list / w_list.sum()
    w_row = np.repeat(w_list, np.diff(np.r_[starts, len(t)]))
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        s = x @ beta
        s = s - np.repeat(np.maximum.reduceat(s, starts), np.diff(np.r_[starts, len(s)]))
        e = np.exp(s)
        p = e / np.repeat(np.add.reduceat(e, starts), np.diff(np.r_[starts, len(e)]))
        gradient = x.T @ (w_row * (t - p)) - ridge * beta
        mean_x = np.add.reduceat(x * p[:, None], starts)  # per list: E_p[x]
        hessian = (x * (w_row * p)[:, None]).T @ x - (mean_x * w_list[:, None]).T @ mean_x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return {name: float(b) for name, b in zip(FEATURES, beta)}


# The indicator of each missing field: complete products have has_image 1 and no_description 0.
FIELD_INDICATORS = {"no_image": ("has_image", -1.0), "no_description": ("no_description", 1.0)}


def calibration_level(
    coefficients: Mapping[str, float], features: np.ndarray, targets: np.ndarray, groups: np.ndarray, *, rounds: int = 2
) -> dict[str, float]:
    """Level the fields: shift the scores of products missing a field until, over the lists
    given, its relevant products rank as high as the complete relevant ones (the same mean
    reciprocal rank, paired per list, as the evaluation measures it).

    A fit ranks by the evidence a product has, so a relevant product with less evidence (no
    image) tends to rank below an equally relevant complete one; the shift puts equal
    relevance on an equal footing (docs/architecture.md, "Fusion calibration"). Pass the lists whose
    positives are the top grade (or the clicks). Returns the coefficients with the shifts
    folded into the indicators of FIELD_INDICATORS.
    """
    x = np.asarray(features, dtype=np.float64)
    column = {name: FEATURES.index(name) for name in FEATURES}
    no_image = x[:, column["has_image"]] == 0
    no_description = (x[:, column["no_description"]] == 1) & ~no_image
    complete = ~no_image & ~no_description
    relevant = np.asarray(targets) > 0
    groups = np.asarray(groups)
    lists = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = dict(coefficients)

    def loss(missing: np.ndarray) -> float | None:
        """1 - mean RR of relevant `missing` products / that of relevant complete ones."""
        beta = np.array([out.get(name, 0.0) for name in FEATURES])
        scores = x @ beta
        ours, theirs = [], []
        for rows in lists:
            a, b = rows[relevant[rows] & missing[rows]], rows[relevant[rows] & complete[rows]]
            if not len(a) or not len(b):
                continue
            order = rows[np.argsort(-scores[rows], kind="stable")]
            rank = {row: i for i, row in enumerate(order, start=1)}
            ours.append(np.mean([1 / rank[r] for r in a]))
            theirs.append(np.mean([1 / rank[r] for r in b]))
        return 1.0 - np.mean(ours) / np.mean(theirs) if ours else None

    for _ in range(rounds):
        for field_name, missing in (("no_image", no_image), ("no_description", no_description)):
            indicator, sign = FIELD_INDICATORS[field_name]
            start = out.get(indicator, 0.0)
            if loss(missing) is None:
                continue
            low, high = -4.0, 4.0  # the shift, in score units: bisection on a loss that falls as it grows
            for _ in range(24):
                middle = (low + high) / 2
                out[indicator] = start + sign * middle
                if loss(missing) > 0:
                    low = middle
                else:
                    high = middle
            out[indicator] = start + sign * (low + high) / 2
    return out
