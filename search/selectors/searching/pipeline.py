"""product_search as a pipeline of named steps: a browse, or a plan (a photo's or words'), the
matches it finds above their cutoffs, the merchandiser's rules, and the page with its facets."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from catalog.models import Product
from search.retrieval.config import search_config

from ...retrieval import fusion, providers, relevance
from ...retrieval.cutoff import Cutoff
from ...retrieval.keywords import corrected_query
from ...retrieval.keywords import words as words_of
from ...retrieval.rules import Applied, rules_apply
from ...retrieval.vector_store import Leg, Matches, ProductIndex, Where
from ..calibrations import fusion_calibration, relevance_model
from ..lexicon import lexicon
from ..merchandising import Merchandising, query_merchandising
from .facets import browse_counts, match_facets
from .legs import FIRST, match_payload, modality_legs, query_words, text_legs
from .ranking import photo_rank, pinnable, query_context, rank, rankable, ranked_sort, relevance_rank
from .request import SearchRequest
from .results import SearchHit, SearchResult

PhotoInput = Image.Image | Callable[[], Image.Image]


@dataclass
class SearchPlan:
    """How a query is answered: by which model's vectors in which store, with which legs, fused
    how, and (words only) the merchandiser's rules and synonyms."""

    mode: str  # "text" or "image"
    model_id: str
    index: ProductIndex
    vector: np.ndarray
    legs: dict[str, Leg]
    limit: int  # matches per leg
    weights: Mapping[str, float] | None = None
    calibration: fusion.Calibration | None = None
    merchandising: Merchandising | None = None
    understood_as: str = ""
    # words: how relevant each match is (None: every match above the cutoff, as fused)
    relevance: relevance.RelevanceModel | None = None
    threshold: float = 0.0
    groups: tuple[tuple[int, ...], ...] = ()  # the query's catalog words as terms, kind words first
    kinds: int = 0  # how many of them name what a product is
    unknown: int = 0  # its words no product holds

    def shape(self, context: tuple[Mapping[str, float | None], Mapping[str, float]]) -> relevance.QueryShape:
        """What the relevance model reads of this query, with its context (ranking.query_context)."""
        best, votes = context
        values = len(self.groups) - self.kinds
        return relevance.QueryShape(best.get("text"), best.get("image"), self.kinds, values, self.unknown, votes)

    def held(self, payload: Mapping) -> tuple[int, int]:
        return relevance.held_words(payload.get("terms"), self.groups, self.kinds)


def product_search(
    *,
    query: str = "",
    image: PhotoInput | None = None,
    image_key: str = "",
    filters=None,
    strategy: str | None = None,
    sort: str = "relevance",
    page: int = 1,
    page_size: int = 20,
    weights: Mapping[str, float] | None = None,
    calibration: fusion.Calibration | None = None,
    merchandising: Merchandising | None = None,
    prefix: bool = False,
    understand: bool = False,
    understood: str | None = None,
    ranked_only: bool = False,
    calibrated: bool = True,
    also: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Rank active products for words or a photo; an empty query browses the catalog.
    `image_key` names a kept photo (services.photo_save): its embedding is reused by the
    filters, sorts and pages of the same photo search, and `image` may then be a function that
    reads the photo, called only when its embedding is not cached.
    `normalized` fuses a word search with the model's fitted calibration when it has one
    (selectors.calibrations), else with SEARCH_FUSION_WEIGHTS; `weights` fuses with those
    weights instead (evaluate_search tunes them), `calibration` with that calibration (the
    evaluation fits one per fold). `prefix`: the query's last word is still being typed (the
    storefront's live search): it is never corrected (Vocabulary.understand).
    `understand`: words that name a price or a facet value the shop has become filters
    (SearchRequest.read; the storefront and the API), `understood` the query the filters given
    were already read from. `ranked_only`: the ranking and count alone, no page of products and
    no facets (the candidate's side of an interleaved search). `calibrated=False`: the fitted
    calibration left out, the rest as configured (an experiment's candidate "calibration off").
    `also`: another ranking of the same search (strategy, weights, calibration, calibrated: an
    interleaving experiment's candidate), in `result.also` as with `ranked_only`, or why it
    failed in `result.also_failed` (this search's own result stands either way)."""
    request = SearchRequest.of(
        query=query, filters=filters, strategy=strategy, sort=sort, page=page, page_size=page_size, prefix=prefix
    )
    read, readable = (), False
    if understand and image is None:
        request, read, readable = request.read(understood)
    if image is None and not request.query:
        result = _browse(request)
        result.understood, result.readable, result.foreign_price = read, readable, request.foreign_price
        return result
    if image is not None:
        plan = _photo_plan(request, image, image_key)
    else:
        plan = _text_plan(request, weights, calibration, merchandising, calibrated=calibrated)
    where, other = request.filters.where(), _also_plan(request, plan, also)
    matches = _retrieved(plan, where, terms=isinstance(other, SearchPlan) and other.relevance is not None)
    ranked, capped = _relevant_matches(request, plan, where, matches)
    ranked, applied = _rules_applied(request, plan, ranked)
    result = _result(request, plan, ranked_sort(ranked, request.sort), capped, applied, ranked_only)
    result.understood, result.readable, result.foreign_price = read, readable, request.foreign_price
    if also is not None:
        _also_rank(result, request, other, where, matches, also)
    return result


# what another ranking may change and still rank the same matches: only how they are fused
RERANKS = frozenset({"weights", "calibration", "calibrated"})


def _also_plan(
    request: SearchRequest, plan: SearchPlan, also: Mapping[str, Any] | None
) -> SearchPlan | Exception | None:
    """The plan of `also` when it ranks this search's own matches (words, the same strategy: the
    same legs, the same query vectors; only the fusion differs), else None; or why it cannot."""
    if also is None or plan.mode != "text" or also.get("strategy", request.strategy) != request.strategy:
        return None
    if set(also) - RERANKS - {"strategy"}:
        return None
    try:
        weights, calibrated = also.get("weights"), also.get("calibrated", True)
        calibration, model = _fusion(request, plan.model_id, weights, also.get("calibration"), calibrated)
    except Exception as exc:  # the other ranking never breaks this one
        return exc
    return replace(plan, weights=weights, calibration=calibration, relevance=model)


def _also_rank(
    result: SearchResult,
    request: SearchRequest,
    other: SearchPlan | Exception | None,
    where: Where | None,
    matches: Matches,
    also: Mapping[str, Any],
) -> None:
    """result.also: the other ranking, from this search's matches when its plan could reuse them
    (one retrieval), else from a search of its own; or result.also_failed."""
    try:
        if isinstance(other, Exception):
            raise other
        if other is None:
            kwargs = {"query": request.query, "filters": request.filters, "strategy": request.strategy}
            kwargs |= {"sort": request.sort, "page": request.page, "page_size": request.page_size}
            kwargs |= {"prefix": request.prefix, "ranked_only": True}
            result.also = product_search(**(kwargs | dict(also)))
            return
        ranked, capped = _relevant_matches(request, other, where, matches)
        ranked, applied = _rules_applied(request, other, ranked)
        result.also = _result(request, other, ranked_sort(ranked, request.sort), capped, applied, ranked_only=True)
    except Exception as exc:  # the other ranking never breaks this one
        result.also_failed = exc


def _new_result(request: SearchRequest, mode: str) -> SearchResult:
    return SearchResult(
        search_id=uuid.uuid4().hex,
        mode=mode,
        query=request.shown,
        strategy=request.strategy,
        sort=request.sort,
        filters=request.filters,
        page=request.page,
        page_size=request.page_size,
        count=0,
    )


def _browse(request: SearchRequest) -> SearchResult:
    """The catalog without a query, from the database: newest first, or by price."""
    result = _new_result(request, "browse")
    base = Product.objects.searchable()
    order = {"price_asc": ("price", "id"), "price_desc": ("-price", "id")}.get(request.sort, ("-created_at", "-id"))
    rows = request.filters.queryset(base).order_by(*order)[request.offset : request.offset + request.page_size]
    result.hits = [SearchHit(product=p, position=request.offset + i + 1) for i, p in enumerate(rows)]
    result.count, result.facets = browse_counts(request.filters, base)
    return result


def _photo_plan(request: SearchRequest, image: PhotoInput, image_key: str) -> SearchPlan:
    """A photo: the image tower's vector against each modality, the SEARCH_CANDIDATES nearest
    (no cutoff: a photo always looks like something), fused with the weights."""
    # the model whose vectors the store serves: the configured one, or, while a new model's
    # store is being filled, the previous one
    model_id = providers.serving_model_id()
    if image_key:
        vector = providers.photo_vector(model_id, image_key, image if callable(image) else lambda: image)
    else:
        vector = providers.query_encoder(model_id).encode_images([image() if callable(image) else image])[0]
    on = request.strategy == "normalized" and search_config().relevance_threshold > 0
    model = relevance_model(model_id) if on else None
    if model is not None and model.photo:
        # the products that look like it: above what unrelated products of the catalog reach
        photo = Cutoff(scores=dict(model.photo), queries=0, quantile=relevance.PHOTO_QUANTILE)
        legs, limit = modality_legs(vector, request.strategy, photo), search_config().max_matches
    else:
        legs, limit, model = modality_legs(vector, request.strategy, None), search_config().candidates, None
    return SearchPlan(
        mode="image",
        model_id=model_id,
        index=providers.get_product_index(),
        vector=vector,
        legs=legs,
        limit=limit,
        relevance=model,
    )


def _text_plan(
    request: SearchRequest,
    weights: Mapping[str, float] | None,
    calibration: fusion.Calibration | None,
    merchandising: Merchandising | None,
    model_only: frozenset[str] = frozenset(),
    *,
    calibrated: bool = True,
) -> SearchPlan:
    """Words: typos understood, the query's legs from the measured cutoff up, the rules and
    synonyms for it, and the fusion (the model's calibration unless weights are given).
    `model_only`: words read as if no product held them (relevance_rows)."""
    model_id = providers.serving_model_id()
    words = lexicon()
    merchandising = query_merchandising(request.query) if merchandising is None else merchandising
    understood = words.vocabulary.understand(request.query, merchandising.synonyms, prefix=request.prefix)
    understood = [w for w in understood if w.typed not in model_only]
    understood_as = corrected_query(understood) if any(w.corrected for w in understood) else ""
    vector = providers.query_vector(model_id, request.query)
    # the towers read the query as it was probably meant too: a misspelt word is another token
    # to them, and so is the start of one being typed (text_legs decides which reading searches)
    completed = any(w.completed for w in understood) or (
        request.prefix and len(understood) < len(words_of(request.query))
    )
    meant_text = corrected_query(understood) if understood_as or completed else ""
    meant = providers.query_vector(model_id, meant_text) if meant_text else None
    legs = text_legs(
        request.query, vector, meant, understood, request.strategy, providers.relevance_cutoff(model_id), words
    )
    calibration, model = _fusion(request, model_id, weights, calibration, calibrated)
    groups, kinds, unknown = query_words(understood, words)
    unknown += len(model_only)
    return SearchPlan(
        mode="text",
        model_id=model_id,
        index=providers.get_product_index(),
        vector=vector,
        legs=legs,
        limit=search_config().max_matches,
        weights=weights,
        calibration=calibration,
        merchandising=merchandising,
        understood_as=understood_as,
        relevance=model,
        threshold=search_config().relevance_threshold,
        groups=groups,
        kinds=kinds,
        unknown=unknown,
    )


def _fusion(
    request: SearchRequest,
    model_id: str,
    weights: Mapping[str, float] | None,
    calibration: fusion.Calibration | None,
    calibrated: bool,
) -> tuple[fusion.Calibration | None, relevance.RelevanceModel | None]:
    """How a word search's matches are judged and fused: the relevance model and the fitted (or
    given) calibration for `normalized` without weights, else neither."""
    if request.strategy != "normalized" or weights is not None:
        return None, None
    # fitted on word searches: a photo's cosines are another scale, so photos keep the weights
    calibration = (calibration or fusion_calibration(model_id)) if calibrated else None
    model = relevance_model(model_id) if search_config().relevance_threshold > 0 else None
    return calibration, model


def _retrieved(plan: SearchPlan, where: Where | None, *, terms: bool = False) -> Matches:
    """Every product the plan's legs match under `where`, with the payload ranking reads
    (`terms`: the query words' too, also when the plan's own ranking does not read them)."""
    return plan.index.retrieve_matches(
        plan.legs,
        limit=plan.limit,
        where=where,
        payload=match_payload(plan.merchandising, terms=terms or bool(plan.relevance)),
    )


def _relevant_matches(
    request: SearchRequest, plan: SearchPlan, where: Where | None, matches: Matches
) -> tuple[list[fusion.Ranked], bool]:
    """The plan's `matches` (_retrieved) ranked by the strategy; a whole-query SKU, then brand,
    first. Also whether a leg stopped at its limit."""
    if plan.relevance is not None and plan.mode == "image":
        return photo_rank(matches.pool, plan.relevance.photo), bool(matches.truncated)
    if plan.relevance is not None:
        named = frozenset(pid for name in FIRST for pid in matches.found.get(name, ()))
        shape = plan.shape(query_context(plan.index, plan.legs, matches, where))
        ranked = relevance_rank(
            matches, shape, plan.held, plan.relevance, plan.threshold, kept=named, calibration=plan.calibration
        )
        return _named_first(ranked, matches), bool(matches.truncated)
    server_scores = None
    if request.strategy in ("avg", "rrf", "dbsf"):
        server_scores = plan.index.retrieve_candidates(
            {"text": plan.vector, "image": plan.vector},
            limit=search_config().candidates,
            where=where,
            server_ranking=request.strategy,
            avg_vector=plan.vector,
            payload=(),
        ).server_scores
    ranked = rank(request.strategy, matches.pool, server_scores, plan.weights, plan.calibration)
    return _named_first(ranked, matches), bool(matches.truncated)


def _named_first(ranked: list[fusion.Ranked], matches) -> list[fusion.Ranked]:
    """A whole-query SKU, then brand, first (the sort is stable: relevance orders the rest)."""
    first = [set(matches.found.get(name, ())) for name in FIRST]
    if any(first):
        ranked.sort(key=lambda r: next((i for i, ids in enumerate(first) if r.id in ids), len(first)))
    return ranked


def _rules_applied(
    request: SearchRequest, plan: SearchPlan, ranked: list[fusion.Ranked]
) -> tuple[list[fusion.Ranked], Applied | None]:
    """The merchandiser's pins, hides, boosts and buries for the query (by position: pins,
    boosts and buries are the relevance order's; a sort keeps only the hides)."""
    merchandising = plan.merchandising
    if merchandising is None or not (merchandising.rules or merchandising.synonym_ids):
        return ranked, None
    relevance = request.sort == "relevance"
    applied = rules_apply(
        ranked,
        merchandising.rules,
        relevance=relevance,
        pinnable=pinnable(merchandising, ranked, request.filters.chosen(), plan.index) if relevance else None,
    )
    return applied.ranked, applied


def _result(
    request: SearchRequest,
    plan: SearchPlan,
    ranked: list[fusion.Ranked],
    capped: bool,
    applied: Applied | None,
    ranked_only: bool = False,
    calibrated: bool = True,
) -> SearchResult:
    """The page of products read from the database, the count, and facets over the matches
    (`ranked_only`: the ranking and count alone)."""
    result = _new_result(request, plan.mode)
    result.model_id, result.understood_as = plan.model_id, plan.understood_as
    result.calibrated, result.count_capped = plan.calibration is not None, capped
    if applied is not None:
        used = {"rules": applied.rule_ids, "synonyms": list(plan.merchandising.synonym_ids)}
        result.merchandising = {key: ids for key, ids in used.items() if ids}
    result.count, result.ranked = len(ranked), ranked
    placements, inserted = (applied.placements, applied.inserted) if applied else ({}, set())
    result.placements = dict(placements)
    if ranked_only:
        return result
    page_ranked = ranked[request.offset : request.offset + request.page_size]
    products = Product.objects.searchable().in_bulk([r.id for r in page_ranked])
    result.hits = [
        SearchHit(
            product=products[r.id],
            position=request.offset + i + 1,
            score=None if r.id in inserted else r.score,
            raw=r.raw,
            normalized=r.normalized,
            placement=placements.get(r.id, ""),
            relevance=r.relevance,
        )
        for i, r in enumerate(page_ranked)
        if r.id in products
    ]
    result.facets = match_facets(
        request.filters, [r.payload for r in ranked], _unfiltered(request, plan, applied.hidden if applied else set())
    )
    return result


def _unfiltered(request: SearchRequest, plan: SearchPlan, hidden: set[int]) -> dict[str, list[Mapping]]:
    """Disjunctive facets: a facet whose own filter is on counts the matches without it (which
    products match is enough: no scores, no fusion; with the relevance model, those it keeps)."""
    if plan.relevance is not None:
        return {
            key: _relevant_payloads(plan, request.filters.where(skip=key), hidden) for key in request.filters.active()
        }
    ranked_here = (
        (lambda payload: True) if plan.calibration is not None else rankable(request.strategy, plan.weights, plan.legs)
    )
    return {
        key: [
            c.payload
            for c in plan.index.retrieve_matches(
                plan.legs, limit=plan.limit, where=request.filters.where(skip=key), payload=match_payload(), score=False
            ).pool
            if ranked_here(c.payload) and c.id not in hidden
        ]
        for key in request.filters.active()
    }


def relevance_rows(query: str, *, model_only: frozenset[str] = frozenset()) -> tuple[list[int], np.ndarray]:
    """Every match of a word query (its legs from the cutoff up, no filter) with its relevance
    features (relevance.FEATURES): what the relevance model is fitted on (services.relevance).
    `model_only`: words of the query read as if no product held them, as a synonym only the
    model knows is."""
    request = SearchRequest.of(query=query, filters=None, strategy="normalized", sort="relevance", page=1, page_size=1)
    plan = _text_plan(request, providers.fusion_weights(), None, Merchandising(), model_only)
    matches = plan.index.retrieve_matches(plan.legs, limit=plan.limit, payload=match_payload(terms=True))
    shape = plan.shape(query_context(plan.index, plan.legs, matches, None))
    pool = matches.pool
    rows = relevance.feature_rows(
        [c.raw for c in pool], [c.payload for c in pool], [plan.held(c.payload) for c in pool], shape
    )
    return [c.id for c in pool], rows


def _relevant_payloads(plan: SearchPlan, where: Where | None, hidden: set[int]) -> list[Mapping]:
    """The payloads of the matches under `where` that the relevance model keeps."""
    words = plan.mode == "text"  # a photo's matches are judged by their cosines alone
    matches = plan.index.retrieve_matches(plan.legs, limit=plan.limit, where=where, payload=match_payload(terms=words))
    if not words:
        return [r.payload for r in photo_rank(matches.pool, plan.relevance.photo) if r.id not in hidden]
    named = frozenset(pid for name in FIRST for pid in matches.found.get(name, ()))
    shape = plan.shape(query_context(plan.index, plan.legs, matches, where))
    kept = relevance_rank(matches, shape, plan.held, plan.relevance, plan.threshold, kept=named)
    return [r.payload for r in kept if r.id not in hidden]


def product_similar(*, product: Product, limit: int = 8) -> list[SearchHit]:
    """Products near this one, from its own vectors: text to text and image to image, fused
    the same way as a search, so a product without an image still gets neighbours."""
    index = providers.get_product_index()
    record = index.retrieve([product.pk]).get(product.pk)
    if record is None or not record.vector:
        return []
    own = {m: np.asarray(record.vector[m], dtype=np.float32) for m in ("text", "image") if m in record.vector}
    retrieval = index.retrieve_candidates(own, limit=max(limit * 4, 32), where=Where(not_ids=(product.pk,)), payload=())
    ranked = fusion.fuse_normalized(retrieval.pool, providers.fusion_weights())[:limit]
    products = Product.objects.searchable().in_bulk([r.id for r in ranked])
    return [
        SearchHit(product=products[r.id], position=i + 1, score=r.score, raw=r.raw, normalized=r.normalized)
        for i, r in enumerate(ranked)
        if r.id in products
    ]
