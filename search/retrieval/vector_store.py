"""ProductIndex: the only module that talks to qdrant-client.

One point per product, id = product id, with named vectors "text", "image" and "avg".
A product without an image has no "image" vector at all (never a zero vector), and one
without usable text has no "text" vector.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from .fusion import Candidate

VECTOR_NAMES = ("text", "image", "avg")


class IndexSchemaError(RuntimeError):
    """The collection exists with vectors of another size than the model produces."""


def average_vector(text: np.ndarray | None, image: np.ndarray | None) -> np.ndarray | None:
    """Normalised mean of the (already normalised) vectors present; the one present if only one."""
    present = [v for v in (text, image) if v is not None]
    if not present:
        return None
    mean = np.mean(np.stack(present), axis=0).astype(np.float32)
    norm = float(np.linalg.norm(mean))
    # Opposite unit vectors average to zero; fall back to the text vector, which is defined.
    return mean / norm if norm > 1e-6 else present[0].astype(np.float32)


@dataclass
class ProductPoint:
    id: int
    text: np.ndarray | None
    image: np.ndarray | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Where:
    """A filter in terms every engine behind ProductIndex expresses: each `any_of` key holds one of
    its values, each range (key, gte, lte; None = open) holds, and no id in `not_ids` is returned."""

    any_of: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    not_ids: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.any_of or self.ranges or self.not_ids)


@dataclass(frozen=True)
class StoredPoint:
    """A point as stored: its named vectors (only those it has) and its payload."""

    id: int
    vector: dict[str, list[float]]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class ProductIndex:
    def __init__(self, client: QdrantClient, collection: str, *, local: bool):
        self.client = client
        self.collection = collection
        # Qdrant's local mode is plain Python state: serialise access from server threads.
        self.local = local
        self._lock: threading.RLock | None = threading.RLock() if local else None
        # Known vector size; saves a round trip per call once the collection is seen.
        self._dim: int | None = None

    def _locked(self):
        return self._lock if self._lock is not None else nullcontext()

    # --- schema -------------------------------------------------------------------
    def dim(self) -> int | None:
        if self._dim is not None:
            return self._dim
        with self._locked():
            if not self.client.collection_exists(self.collection):
                return None
            info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        self._dim = int(vectors["text"].size) if isinstance(vectors, dict) else None
        return self._dim

    def ensure_collection(self, dim: int) -> None:
        current = self.dim()
        if current == dim:
            return
        if current is not None:
            raise IndexSchemaError(
                f"Qdrant collection {self.collection!r} holds {current}-d vectors but the "
                f"embedding model gives {dim}-d; rebuild it with "
                "`python manage.py index_products --all --recreate`.")
        with self._locked():
            self.client.create_collection(
                self.collection,
                vectors_config={name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                                for name in VECTOR_NAMES},
            )
            # Local mode scans payloads and warns that indexes do nothing; servers need them.
            for key, schema in () if self.local else (("category", models.PayloadSchemaType.KEYWORD),
                                ("brand", models.PayloadSchemaType.KEYWORD),
                                ("price", models.PayloadSchemaType.FLOAT),
                                ("active", models.PayloadSchemaType.BOOL)):
                self.client.create_payload_index(self.collection, key, field_schema=schema)
            self._dim = dim

    def drop(self) -> None:
        with self._locked():
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
            self._dim = None

    # --- writes -------------------------------------------------------------------
    def upsert(self, points: Sequence[ProductPoint]) -> None:
        structs = []
        for point in points:
            vectors: dict[str, list[float]] = {}
            if point.text is not None:
                vectors["text"] = point.text.tolist()
            if point.image is not None:
                vectors["image"] = point.image.tolist()
            avg = average_vector(point.text, point.image)
            if avg is None:
                raise ValueError(f"product {point.id} has neither a text nor an image vector")
            vectors["avg"] = avg.tolist()
            structs.append(models.PointStruct(id=point.id, vector=vectors, payload=point.payload))
        if structs:
            with self._locked():
                self.client.upsert(self.collection, points=structs, wait=True)

    def set_payload(self, point_id: int, payload: dict[str, Any]) -> None:
        with self._locked():
            self.client.overwrite_payload(self.collection, payload=payload, points=[point_id], wait=True)

    def delete(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        if not ids or self.dim() is None:
            return
        with self._locked():
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    # --- reads --------------------------------------------------------------------
    def existing_ids(self, ids: Iterable[int]) -> set[int]:
        ids = [int(i) for i in ids]
        if not ids or self.dim() is None:
            return set()
        with self._locked():
            records = self.client.retrieve(self.collection, ids=ids, with_payload=False, with_vectors=False)
        return {int(r.id) for r in records}

    def retrieve(self, ids: Iterable[int], *, with_vectors: bool = True) -> dict[int, StoredPoint]:
        ids = [int(i) for i in ids]
        if not ids or self.dim() is None:
            return {}
        with self._locked():
            records = self.client.retrieve(self.collection, ids=ids, with_payload=True,
                                           with_vectors=with_vectors)
        return {int(r.id): StoredPoint(int(r.id), dict(r.vector) if isinstance(r.vector, dict) else {},
                                       r.payload or {}) for r in records}

    def count(self) -> int:
        if self.dim() is None:
            return 0
        with self._locked():
            return int(self.client.count(self.collection, exact=True).count)

    def retrieve_candidates(self, vectors: Mapping[str, np.ndarray], *, limit: int,
                            filters: Sequence[Where | None] = (None,),
                            server_ranking: str | None = None,
                            avg_vector: np.ndarray | None = None) -> Retrieval:
        """One round trip: per filter, the top `limit` per modality in `vectors` (modality ->
        query vector searched against that named vector), each candidate rescored in every
        modality it has; optionally Qdrant's own ranking ("avg", "rrf", "dbsf") too."""
        return _retrieve(self, vectors, limit=limit, filters=[_qdrant_filter(w) for w in filters],
                         server_ranking=server_ranking, avg_vector=avg_vector)

    def search(self, vector: np.ndarray, *, using: str = "avg", limit: int = 20, offset: int = 0,
               where: Where | None = None) -> list[Hit]:
        if using not in VECTOR_NAMES:
            raise ValueError(f"unknown vector {using!r}; use one of {VECTOR_NAMES}")
        if self.dim() is None:
            return []
        with self._locked():
            response = self.client.query_points(
                self.collection, query=np.asarray(vector, dtype=np.float32).tolist(), using=using,
                limit=limit, offset=offset, query_filter=_qdrant_filter(where), with_payload=True)
        return [Hit(id=int(p.id), score=float(p.score), payload=p.payload or {}) for p in response.points]


@dataclass
class Retrieval:
    """What one round trip returns: a candidate pool per filter, and, if asked, the ranking
    that Qdrant itself computed (avg vector, RRF or DBSF) over the first filter."""

    pools: list[list[Candidate]]
    server_scores: dict[int, float] | None = None


SERVER_RANKINGS = ("avg", "rrf", "dbsf")


def _qdrant_filter(where: Where | None) -> models.Filter | None:
    if not where:
        return None
    must: list[models.Condition] = [models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
                                    for key, values in where.any_of]
    must += [models.FieldCondition(key=key, range=models.Range(gte=gte, lte=lte)) for key, gte, lte in where.ranges]
    must_not = [models.HasIdCondition(has_id=list(where.not_ids))] if where.not_ids else None
    return models.Filter(must=must or None, must_not=must_not)
# What ranking, facets and sorting read from each candidate; the rest of the payload
# stays in Qdrant (copying it cost local mode more than the search itself).
CANDIDATE_PAYLOAD = ["category", "brand", "price"]


def _rescore(points: Iterable[models.ScoredPoint], vectors: Mapping[str, np.ndarray],
             into: dict[int, Candidate]) -> None:
    """Every candidate gets its real cosine in every modality it has a vector for, whichever
    modality found it (stored vectors are unit length, so a dot product is the cosine)."""
    for point in points:
        pid = int(point.id)
        if pid in into:
            continue
        stored = point.vector if isinstance(point.vector, dict) else {}
        raw = {m: float(np.dot(vectors[m], np.asarray(stored[m], dtype=np.float32)))
               for m in vectors if m in stored}
        into[pid] = Candidate(pid, raw, point.payload or {})


def _retrieve(index: "ProductIndex", vectors: Mapping[str, np.ndarray], *, limit: int,
              filters: Sequence[models.Filter | None], server_ranking: str | None = None,
              avg_vector: np.ndarray | None = None) -> Retrieval:
    modalities = [m for m in vectors if vectors[m] is not None]
    if index.dim() is None or not modalities:
        return Retrieval(pools=[[] for _ in filters], server_scores={} if server_ranking else None)
    wanted = ["text", "image"]
    requests = [models.QueryRequest(query=np.asarray(vectors[m], dtype=np.float32).tolist(), using=m,
                                    limit=limit, filter=f, with_payload=CANDIDATE_PAYLOAD, with_vector=wanted)
                for f in filters for m in modalities]
    if server_ranking == "avg":
        query = avg_vector if avg_vector is not None else vectors[modalities[0]]
        requests.append(models.QueryRequest(query=np.asarray(query, dtype=np.float32).tolist(), using="avg",
                                            limit=limit, filter=filters[0], with_payload=CANDIDATE_PAYLOAD,
                                            with_vector=wanted))
    elif server_ranking in ("rrf", "dbsf"):
        fusion = models.Fusion.RRF if server_ranking == "rrf" else models.Fusion.DBSF
        requests.append(models.QueryRequest(
            prefetch=[models.Prefetch(query=np.asarray(vectors[m], dtype=np.float32).tolist(), using=m,
                                      limit=limit, filter=filters[0]) for m in modalities],
            query=models.FusionQuery(fusion=fusion), limit=limit, with_payload=CANDIDATE_PAYLOAD,
            with_vector=wanted))
    elif server_ranking is not None:
        raise ValueError(f"unknown server ranking {server_ranking!r}; use one of {SERVER_RANKINGS}")
    with index._locked():
        responses = index.client.query_batch_points(index.collection, requests=requests)
    unit = {m: np.asarray(vectors[m], dtype=np.float32) for m in modalities}
    pools = []
    for i in range(len(filters)):
        found: dict[int, Candidate] = {}
        for response in responses[i * len(modalities):(i + 1) * len(modalities)]:
            _rescore(response.points, unit, found)
        pools.append(list(found.values()))
    server_scores = None
    if server_ranking is not None:
        extra = responses[-1].points
        known = {c.id: c for c in pools[0]}
        _rescore(extra, unit, known)
        pools[0] = list(known.values())
        server_scores = {int(p.id): float(p.score) for p in extra}
    return Retrieval(pools=pools, server_scores=server_scores)
