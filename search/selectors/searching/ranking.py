"""Ranking the matches: the fusion a strategy names, the sorts, which matches a ranking counts,
and the pinned products a query did not match."""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping

import numpy as np

from catalog.models import Product

from ...retrieval import fusion, providers, relevance
from ...retrieval.rules import PIN
from ...retrieval.vector_store import Leg, Matches, ProductIndex, Where
from ..merchandising import Merchandising
from .filters import SearchFilters


def rank(
    strategy: str,
    pool: list[fusion.Candidate],
    server_scores: dict[int, float] | None,
    weights: Mapping[str, float] | None = None,
    calibration: fusion.Calibration | None = None,
) -> list[fusion.Ranked]:
    if strategy == "normalized":
        if calibration is not None:
            return fusion.fuse_calibrated(pool, calibration)
        return fusion.fuse_normalized(pool, providers.fusion_weights() if weights is None else weights)
    if strategy in ("text", "image"):
        return fusion.rank_single(pool, strategy)
    # the engine's ranking of its top candidates, then the other matches as `normalized` ranks them
    ranked = fusion.rank_by_scores(pool, server_scores or {})
    seen = {r.id for r in ranked}
    return ranked + [r for r in fusion.fuse_normalized(pool, providers.fusion_weights()) if r.id not in seen]


def ranked_sort(ranked: list[fusion.Ranked], sort: str) -> list[fusion.Ranked]:
    if sort == "price_asc":
        return sorted(ranked, key=lambda r: float(r.payload.get("price", 0.0)))  # stable: relevance breaks ties
    if sort == "price_desc":
        return sorted(ranked, key=lambda r: -float(r.payload.get("price", 0.0)))
    if sort == "newest":
        return sorted(ranked, key=lambda r: -r.id)  # ids grow with creation
    return ranked


# Ranks by the model alone: no ranking rule, no synonym (a calibration learns from this ranking).
NO_MERCHANDISING = Merchandising()


def pinnable(
    merchandising: Merchandising, ranked: list[fusion.Ranked], filters: SearchFilters, index: ProductIndex
) -> dict[int, fusion.Ranked]:
    """The products pinned for the query that it did not match but may show: active, and
    passing the shopper's filters. Each with its payload (the facets count it); one not yet
    indexed is shown all the same."""
    matched = {r.id for r in ranked}
    wanted = {r.product_id for r in merchandising.rules if r.action == PIN} - matched
    if not wanted:
        return {}
    allowed = set(filters.queryset(Product.objects.searchable().filter(pk__in=wanted)).values_list("pk", flat=True))
    points = index.retrieve(allowed, with_vectors=False) if allowed else {}
    return {
        pid: fusion.Ranked(
            id=pid, score=0.0, raw={}, normalized={}, payload=dict(points[pid].payload) if pid in points else {}
        )
        for pid in allowed
    }


def rankable(strategy: str, weights: Mapping[str, float] | None, legs: Mapping[str, Leg]) -> Callable[[Mapping], bool]:
    """Whether a match is ranked (and so counted), from its payload: it has a modality the
    ranking weighs (fusion.fuse_normalized leaves out the others)."""
    if strategy in ("text", "image"):
        return lambda payload: bool(payload.get(f"has_{strategy}", True))
    active = {
        m
        for m, w in (providers.fusion_weights() if weights is None or strategy != "normalized" else weights).items()
        if w > 0
    }
    if "keyword" in active and any(leg.scores == "keyword" for leg in legs.values()):
        return lambda payload: True  # every match has a keyword score (0 when it shares no word)
    return lambda payload: any(payload.get(f"has_{m}", True) for m in active & {"text", "image"})


# --- relevance: how likely each match is a good one (retrieval/relevance.py) ------------------
# (index, vectors, modality) -> (when, (best score, categories of the nearest)) over the whole
# catalog: a filtered search, its pages and facets read the query's unfiltered context, asked of
# the engine once a minute at most
_near_seen: dict[tuple, tuple[float, weakref.ref, tuple[float | None, tuple[str, ...]]]] = {}
_near_lock = threading.Lock()
NEAR_SECONDS = 60.0
NEAR_KEPT = 2048
# the nearest products per modality whose categories say what the query asks for
VOTERS = 10


def query_context(
    index: ProductIndex, legs: Mapping[str, Leg], matches: Matches, where: Where | None
) -> tuple[dict[str, float | None], dict[str, float]]:
    """Per modality, the query's best cosine over the whole catalog; and the categories of its
    VOTERS nearest products in each, as shares: what the query most likely asks for (read where a
    word of it is one no product holds). From the unfiltered legs' own matches when the search
    is unfiltered, else asked of the engine (and kept a minute)."""
    best: dict[str, float | None] = {}
    voters: list[str] = []
    for modality in ("text", "image"):
        names = [n for n, leg in legs.items() if leg.scores == modality and leg.vector]
        if not names:
            best[modality] = None
            continue
        found = {pid for n in names for pid in matches.found.get(n, ())}
        near = sorted((c for c in matches.pool if c.id in found and modality in c.raw), key=lambda c: -c.raw[modality])
        if where is None and len(near) >= VOTERS:
            best[modality] = near[0].raw[modality]
            voters += [str(c.payload.get("category", "")) for c in near[:VOTERS]]
            continue
        best[modality], categories = _near_asked(index, tuple(legs[n].vector for n in names), modality)
        voters += categories
    votes = {category: voters.count(category) / len(voters) for category in set(voters)} if voters else {}
    return best, votes


def _near_asked(index: ProductIndex, vectors: tuple, modality: str) -> tuple[float | None, tuple[str, ...]]:
    key = (id(index), vectors, modality)
    now = time.monotonic()
    with _near_lock:
        seen = _near_seen.get(key)
    # the store itself: the id of a closed store is reused by the next one
    if seen is not None and now - seen[0] < NEAR_SECONDS and seen[1]() is index:
        return seen[2]
    near: dict[int, tuple[float, str]] = {}
    for vector in vectors:
        retrieval = index.retrieve_candidates(
            {modality: np.asarray(vector, dtype=np.float32)}, limit=VOTERS, payload=("category",)
        )
        for c in retrieval.pool:
            if modality in c.raw and c.raw[modality] > near.get(c.id, (-math.inf, ""))[0]:
                near[c.id] = (c.raw[modality], str(c.payload.get("category", "")))
    top = sorted(near.values(), key=lambda v: -v[0])[:VOTERS]
    found = (top[0][0] if top else None, tuple(category for _, category in top))
    with _near_lock:
        if len(_near_seen) >= NEAR_KEPT:
            _near_seen.clear()
        _near_seen[key] = (now, weakref.ref(index), found)
    return found


def relevance_rank(
    matches: Matches,
    shape: relevance.QueryShape,
    held: Callable[[Mapping], tuple[int, int]],
    model: relevance.RelevanceModel,
    threshold: float,
    *,
    kept: frozenset[int] = frozenset(),
    calibration: fusion.Calibration | None = None,
) -> list[fusion.Ranked]:
    """The matches at or above the relevance threshold (and those in `kept`: a SKU or brand the
    whole query names), best first: by the model's ranking score, or by the labelled calibration
    when the shop fitted one (it orders; the model still decides what matches). `held` counts
    the query's words a payload holds."""
    pool = matches.pool
    if not pool:
        return []
    payloads = [c.payload for c in pool]
    rows = relevance.feature_rows([c.raw for c in pool], payloads, [held(p) for p in payloads], shape)
    probabilities = model.probabilities(rows)
    good, scores = probabilities["good"], probabilities["rank"]
    normalized = fusion.normalize_per_modality(pool)
    ranked = []
    for i, c in enumerate(pool):
        if good[i] < threshold and c.id not in kept:
            continue
        score = float(scores[i])
        if calibration is not None:
            score = calibration.score(fusion.candidate_features(c.raw, normalized[c.id], c.payload))
        ranked.append(fusion.Ranked(c.id, score, c.raw, normalized[c.id], c.payload, relevance=float(good[i])))
    return fusion.sort_ranked(ranked)


def photo_rank(pool: list[fusion.Candidate], thresholds: Mapping[str, float]) -> list[fusion.Ranked]:
    """A photo's matches that look like it (relevance.photo_score), the most alike first: the
    very same picture scores 1."""
    normalized = fusion.normalize_per_modality(pool)
    ranked = []
    for c in pool:
        score = relevance.photo_score(c.raw, thresholds)
        if score is not None:
            ranked.append(fusion.Ranked(c.id, score, c.raw, normalized[c.id], c.payload))
    return fusion.sort_ranked(ranked)
