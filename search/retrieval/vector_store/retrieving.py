"""The search's retrieval, written once for every engine over its few primitives (`dim`,
`_searched`, `retrieve`): the candidates of each modality with their cosines in every modality
they have, and the products that match a query's legs, each scored by every scoring leg."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..fusion import Candidate
from .types import (
    CANDIDATE_PAYLOAD,
    SERVER_RANKINGS,
    Found,
    Leg,
    Matches,
    Request,
    Retrieval,
    StoredPoint,
    Where,
    plain_vector,
    where_both,
)


class Engine(Protocol):
    """What the retrieval asks of an engine (ProductIndex)."""

    def dim(self) -> int | None: ...

    def _searched(self, requests: Sequence[Request], query_dim: int) -> list[list[Found]]: ...

    def retrieve(self, ids: Iterable[int], *, with_vectors: bool = True) -> dict[int, StoredPoint]: ...


def candidates_retrieve(
    engine: Engine,
    vectors: Mapping[str, np.ndarray],
    *,
    limit: int,
    where: Where | None = None,
    server_ranking: str | None = None,
    avg_vector: np.ndarray | None = None,
    payload: tuple[str, ...] = CANDIDATE_PAYLOAD,
) -> Retrieval:
    """The top `limit` per modality in `vectors` (modality -> query vector, searched against
    that named vector) under `where`, each candidate with its cosine in every modality it has;
    optionally the engine's own ranking ("avg", "rrf", "dbsf") as well; each candidate
    carries the `payload` keys asked for (none: cheaper).

    Ids first, then the scores the first round missed: returning stored vectors to rescore
    candidates here cost three times the queries themselves. Two round trips: the top k per
    modality (with the payload sorting reads), then, per modality, the candidates another
    modality found, scored by the engine under a filter on their ids."""
    modalities = [m for m in vectors if vectors[m] is not None]
    if engine.dim() is None or not modalities:
        return Retrieval(pool=[], server_scores={} if server_ranking else None)
    first = _candidate_requests(vectors, modalities, limit, where, server_ranking, avg_vector, payload)
    dim = len(first[0].vector)  # the first is a per-modality query
    responses = engine._searched(first, dim)
    payloads: dict[int, dict[str, Any]] = {}
    raw: dict[int, dict[str, float]] = {}
    for response in responses:
        for found in response:
            payloads.setdefault(found.id, found.payload)
            raw.setdefault(found.id, {})
    for modality, response in zip(modalities, responses):
        for found in response:
            raw[found.id][modality] = found.score
    # every candidate gets its cosine in every modality it has, whichever modality found it
    missing = {m: tuple(sorted(pid for pid in raw if m not in raw[pid])) for m in modalities}
    second = [
        (m, Request(limit=len(ids), vector=plain_vector(vectors[m]), using=m, where=Where(ids=ids)))
        for m, ids in missing.items()
        if ids
    ]
    if second:
        for (modality, _), response in zip(second, engine._searched([r for _, r in second], dim)):
            for found in response:
                raw[found.id][modality] = found.score
    pool = [Candidate(pid, scores, payloads[pid]) for pid, scores in raw.items() if scores]
    server_scores = {f.id: f.score for f in responses[-1]} if server_ranking is not None else None
    return Retrieval(pool=pool, server_scores=server_scores)


def _candidate_requests(
    vectors: Mapping[str, np.ndarray],
    modalities: list[str],
    limit: int,
    where: Where | None,
    server_ranking: str | None,
    avg_vector: np.ndarray | None,
    payload: tuple[str, ...],
) -> list[Request]:
    """The first round: the top `limit` of each modality, and the engine's own ranking if asked."""
    first = [
        Request(limit=limit, vector=plain_vector(vectors[m]), using=m, where=where, with_payload=payload)
        for m in modalities
    ]
    if server_ranking == "avg":
        query = avg_vector if avg_vector is not None else vectors[modalities[0]]
        first.append(Request(limit=limit, vector=plain_vector(query), using="avg", where=where, with_payload=payload))
    elif server_ranking in ("rrf", "dbsf"):
        prefetch = tuple(
            Request(limit=limit, vector=first[i].vector, using=m, where=where) for i, m in enumerate(modalities)
        )
        first.append(Request(limit=limit, fusion=server_ranking, with_payload=payload, prefetch=prefetch))
    elif server_ranking is not None:
        raise ValueError(f"unknown server ranking {server_ranking!r}; use one of {SERVER_RANKINGS}")
    return first


def matches_retrieve(
    engine: Engine,
    legs: Mapping[str, Leg],
    *,
    limit: int,
    where: Where | None = None,
    payload: tuple[str, ...] = CANDIDATE_PAYLOAD,
    score: bool = True,
) -> Matches:
    """The products that match a query: those that reach each leg's threshold under `where`
    and the leg's own conditions (at most `limit` per leg, best first), each with its score in
    every modality that a scoring leg measures, whichever leg found it. Two round trips:
    every leg, then each modality's scores for the matches another leg found (not with
    `score=False`: which products match, and their payload, is all that is asked)."""
    legs = {name: leg for name, leg in legs.items() if leg.vector or leg.sparse}
    dense = next((len(leg.vector) for leg in legs.values() if leg.vector), 0)
    names = [name for name, leg in legs.items() if leg.matches]
    if engine.dim() is None or not names:
        return Matches(pool=[], found={name: [] for name in legs})
    scored: dict[str, dict[int, float]] = {name: {} for name, leg in legs.items() if leg.scores}
    # The legs overlap (a red mug is near "red mug" in text and in image): the payload comes
    # once per product, from the first scoring leg, which the second round asks for the rest
    # (copying a payload out of the engine costs more than its score).
    carrier = next((n for n in scored if legs[n].matches), None) if score else None
    first = [
        _leg_request(
            legs[n],
            limit=limit,
            where=where_both(where, legs[n].where),
            threshold=legs[n].threshold,
            payload=payload if carrier in (None, n) else (),
        )
        for n in names
    ]
    responses = engine._searched(first, dense)
    payloads: dict[int, dict[str, Any]] = {}
    found: dict[str, list[int]] = {}
    for name, response in zip(names, responses):
        found[name] = [f.id for f in response]
        for f in response:
            if carrier in (None, name):
                payloads.setdefault(f.id, f.payload)
            if name in scored:
                scored[name][f.id] = f.score
    matched = {pid for ids in found.values() for pid in ids}
    if score:
        _scores_completed(engine, legs, scored, matched, carrier, payload, payloads, dense)
    lacking = [pid for pid in matched if pid not in payloads]  # no vector of the carrier's modality
    if lacking:
        for pid, point in engine.retrieve(lacking, with_vectors=False).items():
            payloads[pid] = {key: point.payload[key] for key in payload if key in point.payload}
    pool = _best_per_modality(legs, scored, matched, payloads)
    return Matches(pool=pool, found=found, truncated=[n for n, r in zip(names, responses) if len(r) >= limit])


def _leg_request(
    leg: Leg, *, limit: int, where: Where | None, threshold: float | None = None, payload: tuple[str, ...] = ()
) -> Request:
    return Request(
        limit=limit,
        vector=leg.vector,
        sparse=leg.sparse,
        using=leg.using,
        where=where,
        score_threshold=threshold,
        with_payload=payload,
    )


def _scores_completed(
    engine: Engine,
    legs: Mapping[str, Leg],
    scored: dict[str, dict[int, float]],
    matched: set[int],
    carrier: str | None,
    payload: tuple[str, ...],
    payloads: dict[int, dict[str, Any]],
    dense: int,
) -> None:
    """The second round: every scoring leg scores every match, whichever leg found it (the
    carrier brings the payload of the matches it had not found)."""
    second = []
    for name, scores in scored.items():
        ids = tuple(sorted(pid for pid in matched if pid not in scores))
        if ids:
            request = _leg_request(
                legs[name], limit=len(ids), where=Where(ids=ids), payload=payload if name == carrier else ()
            )
            second.append((name, request))
    if not second:
        return
    for (name, _), response in zip(second, engine._searched([r for _, r in second], dense)):
        for f in response:
            scored[name][f.id] = f.score
            if name == carrier:
                payloads.setdefault(f.id, f.payload)


def _best_per_modality(
    legs: Mapping[str, Leg],
    scored: dict[str, dict[int, float]],
    matched: set[int],
    payloads: dict[int, dict[str, Any]],
) -> list[Candidate]:
    """Each match with its score per modality: a modality measured by several legs (the query as
    typed and as corrected) keeps the best; a product gone meanwhile (no payload) is left out."""
    raw: dict[int, dict[str, float]] = {pid: {} for pid in matched if pid in payloads}
    for name, scores in scored.items():
        modality, sparse = legs[name].scores, legs[name].sparse is not None
        for pid, own in raw.items():
            value = scores.get(pid, 0.0 if sparse else None)  # no shared term: 0; no vector: absent
            if value is not None and value > own.get(modality, float("-inf")):
                own[modality] = value
    return [Candidate(pid, scores, payloads[pid]) for pid, scores in raw.items()]
