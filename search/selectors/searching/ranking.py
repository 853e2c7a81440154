"""Ranking the matches: the fusion a strategy names, the sorts, which matches a ranking counts,
and the pinned products a query did not match."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from catalog.models import Product

from ...retrieval import fusion, providers
from ...retrieval.rules import PIN
from ...retrieval.vector_store import Leg, ProductIndex
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
