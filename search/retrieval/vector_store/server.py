"""A Qdrant server or cluster (QDRANT_URL) through qdrant-client; in tests its in-memory mode,
which speaks the same API, stands in for the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..keywords import SPARSE_VECTOR, Sparse
from .base import ProductIndex
from .types import PAYLOAD_INDEXES, VECTOR_NAMES, Found, Request, StoredPoint, Where

SCHEMAS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "integer": models.PayloadSchemaType.INTEGER,
}


# How often a process looks again at a shared server's collection schema (as at the alias:
# providers.SERVING_LOOK_SECONDS)
SCHEMA_LOOK_SECONDS = 5.0
# A server's answers that mean "not now": too many requests, a node restarting or overloaded.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def server_transient(exc: BaseException) -> bool:
    """Whether qdrant-client's error means the server did not answer this time (a timeout, a
    refused or dropped connection, a busy node), not that the collection is broken."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in TRANSIENT_STATUSES
    return isinstance(exc, (ResponseHandlingException, httpx.TransportError, TimeoutError, ConnectionError))


def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection the alias points at; None when there is no such alias."""
    return next((a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias), None)


def alias_point(client: QdrantClient, alias: str, collection: str) -> None:
    """Point the alias at the collection in one atomic step. A collection with the alias's own
    name (0.2 kept the vectors there, under the name shoppers' queries use) is deleted first:
    a name cannot be both, so that one upgrade has a moment without it."""
    operations: list[models.AliasOperations] = []
    if alias_target(client, alias) is not None:
        operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    elif client.collection_exists(alias):
        client.delete_collection(alias)
    operations.append(
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
    )
    client.update_collection_aliases(change_aliases_operations=operations)


def _client_lock(client: QdrantClient) -> threading.RLock:
    """One lock per local-mode client, shared by every index on it (the serving collection and
    the one a new model fills use the same client)."""
    lock = getattr(client, "_shop_search_lock", None)
    if lock is None:
        lock = threading.RLock()
        client._shop_search_lock = lock  # type: ignore[attr-defined]
    return lock


class QdrantServerIndex(ProductIndex):
    def __init__(self, client: QdrantClient, collection: str, *, local: bool, layout: dict[str, int] | None = None):
        self.client = client
        self.collection = collection
        # shard_number, replication_factor, write_consistency_factor for a new collection (a cluster)
        self.layout = dict(layout or {})
        # qdrant-client's local mode is plain Python state: serialise access from server threads.
        self.local = local
        self.sole_writer = local  # local mode's folder is locked to this process; a server is shared
        self._lock: threading.RLock | None = _client_lock(client) if local else None
        # Known vector size; saves a round trip per call once the collection is seen.
        self._dim: int | None = None
        self._keywords: bool | None = None
        self._schema_seen = time.monotonic()

    def _locked(self):
        return self._lock if self._lock is not None else nullcontext()

    def _transient(self, exc: Exception) -> bool:
        return server_transient(exc)

    def _broken(self, exc: Exception) -> bool:
        # the collection is gone (a server's 404; local mode raises ValueError "... not found")
        if isinstance(exc, UnexpectedResponse):
            return exc.status_code == 404
        return isinstance(exc, ValueError) and "not found" in str(exc)

    def close(self) -> None:
        self.client.close()

    # --- schema -------------------------------------------------------------------
    def _schema_stale(self) -> bool:
        """A shared server's collection can be dropped or made anew by another process (a
        rebuild, a model switch): what this process knows of it is looked at again this often."""
        if self.local or time.monotonic() - self._schema_seen < SCHEMA_LOOK_SECONDS:
            return False
        self._schema_seen = time.monotonic()
        self._dim = self._keywords = None
        self.__dict__.pop("_indexed_keys", None)  # a new collection has only the indexes it was made with
        return True

    def _stored_dim(self) -> int | None:
        self._schema_stale()
        if self._dim is not None:
            return self._dim
        with self._locked():
            if not self.client.collection_exists(self.collection):
                return None
            info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        self._dim = int(vectors["text"].size) if isinstance(vectors, dict) else None
        return self._dim

    def _create(self, dim: int) -> None:
        with self._locked():
            self.client.create_collection(
                self.collection,
                vectors_config={
                    name: models.VectorParams(size=dim, distance=models.Distance.COSINE) for name in VECTOR_NAMES
                },
                sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                **({} if self.local else self.layout),
            )
            # Local mode scans payloads and warns that indexes do nothing; servers need them.
            for key, schema in () if self.local else PAYLOAD_INDEXES.items():
                self.client.create_payload_index(self.collection, key, field_schema=SCHEMAS[schema])
            self._dim, self._keywords = dim, True

    def has_keywords(self) -> bool:
        self._schema_stale()
        if self._keywords is None:
            with self._locked():
                sparse = self.client.get_collection(self.collection).config.params.sparse_vectors
            self._keywords = SPARSE_VECTOR in (sparse or {})
        return self._keywords

    def _add_keywords(self) -> None:
        with self._locked():
            self.client.create_vector_name(
                self.collection,
                SPARSE_VECTOR,
                models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)),
            )
            for key, schema in () if self.local else PAYLOAD_INDEXES.items():
                self.client.create_payload_index(self.collection, key, field_schema=SCHEMAS[schema])
            self._keywords = True

    # the payload's schema, in the collection's metadata (Qdrant 1.16+)
    SCHEMA_METADATA = "shop_search_payload_schema"

    def _payload_schema(self) -> int:
        with self._locked():
            metadata = self.client.get_collection(self.collection).config.metadata or {}
        return int(metadata.get(self.SCHEMA_METADATA, 1))

    def _store_payload_schema(self, version: int) -> None:
        with self._locked():
            self.client.update_collection(self.collection, metadata={self.SCHEMA_METADATA: version})

    def _keyword_index(self, key: str) -> bool:
        if self.dim() is None:
            return False
        if self.local:
            return True  # local mode scans payloads (and warns that an index does nothing)
        with self._locked():
            if key not in (self.client.get_collection(self.collection).payload_schema or {}):
                self.client.create_payload_index(self.collection, key, field_schema=SCHEMAS["keyword"])
        return True

    def _drop(self) -> None:
        with self._locked():
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
            self._dim = self._keywords = None

    # --- writes -------------------------------------------------------------------
    def _upsert(self, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> None:
        structs = [
            models.PointStruct(id=pid, vector={k: _vector(v) for k, v in vectors.items()}, payload=payload)
            for pid, vectors, payload in rows
        ]
        with self._locked():
            self.client.upsert(self.collection, points=structs, wait=True)

    def _set_payload(self, point_id: int, payload: dict[str, Any], keywords: Sparse | None) -> None:
        with self._locked():
            self.client.overwrite_payload(self.collection, payload=payload, points=[point_id], wait=True)
            if keywords:
                self.client.update_vectors(
                    self.collection,
                    points=[models.PointVectors(id=point_id, vector={SPARSE_VECTOR: _vector(keywords)})],
                    wait=True,
                )

    def _delete(self, ids: list[int]) -> None:
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
            records = self.client.retrieve(
                self.collection, ids=ids, with_payload=True, with_vectors=list(VECTOR_NAMES) if with_vectors else False
            )
        return {
            int(r.id): StoredPoint(
                int(r.id),
                {k: v for k, v in r.vector.items() if k in VECTOR_NAMES} if isinstance(r.vector, dict) else {},
                r.payload or {},
            )
            for r in records
        }

    def point_ids(self) -> Iterator[int]:
        if self.dim() is None:
            return
        offset = None
        while True:
            with self._locked():
                records, offset = self.client.scroll(
                    self.collection, offset=offset, limit=1000, with_payload=False, with_vectors=False
                )
            yield from (int(r.id) for r in records)
            if offset is None:
                return

    def _count(self, where: Where | None) -> int:
        if self.dim() is None:
            return 0
        with self._locked():
            return int(self.client.count(self.collection, count_filter=_filter(where), exact=True).count)

    def _facet(self, key: str, where: Where | None, limit: int) -> dict[str, int]:
        if self.dim() is None:
            return {}
        with self._locked():
            response = self.client.facet(self.collection, key, facet_filter=_filter(where), limit=limit, exact=True)
        return {str(hit.value): int(hit.count) for hit in response.hits}

    def _query_batch(self, requests: Sequence[Request]) -> list[list[Found]]:
        with self._locked():
            responses = self.client.query_batch_points(self.collection, requests=[_request(r) for r in requests])
        return [
            [
                Found(int(p.id), float(p.score), dict(p.vector) if isinstance(p.vector, dict) else {}, p.payload or {})
                for p in response.points
            ]
            for response in responses
        ]


def _vector(value: Any) -> Any:
    return (
        models.SparseVector(indices=list(value.indices), values=list(value.values))
        if isinstance(value, Sparse)
        else value
    )


def _filter(where: Where | None) -> models.Filter | None:
    if not where:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchAny(any=list(values))) for key, values in where.any_of
    ]
    must += [
        models.Filter(
            should=[
                models.FieldCondition(key=key, match=models.MatchAny(any=list(values))),
                models.IsEmptyCondition(is_empty=models.PayloadField(key=key)),
            ]
        )
        for key, values in where.any_or_empty
    ]
    must += [models.FieldCondition(key=key, range=models.Range(gte=gte, lte=lte)) for key, gte, lte in where.ranges]
    if where.ids:
        must.append(models.HasIdCondition(has_id=list(where.ids)))
    if where.has_vector:
        must.append(models.HasVectorCondition(has_vector=where.has_vector))
    must_not = [models.HasIdCondition(has_id=list(where.not_ids))] if where.not_ids else None
    return models.Filter(must=must or None, must_not=must_not)


def _payload(selection: tuple[str, ...] | bool) -> list[str] | bool:
    return selection if isinstance(selection, bool) else (list(selection) or False)


def _request(r: Request) -> models.QueryRequest:
    if r.fusion:
        # Qdrant's RRF uses k = RRF_K by default; the plain FusionQuery keeps older servers working.
        fusion = models.FusionQuery(fusion=models.Fusion.RRF if r.fusion == "rrf" else models.Fusion.DBSF)
        return models.QueryRequest(
            prefetch=[
                models.Prefetch(query=list(p.vector), using=p.using, limit=p.limit, filter=_filter(p.where))
                for p in r.prefetch
            ],
            query=fusion,
            limit=r.limit,
            offset=r.offset,
            filter=_filter(r.where),
            with_payload=_payload(r.with_payload),
            with_vector=list(r.with_vector) or False,
        )
    query = _vector(r.sparse) if r.sparse is not None else list(r.vector)
    return models.QueryRequest(
        query=query,
        using=r.using,
        limit=r.limit,
        offset=r.offset,
        filter=_filter(r.where),
        with_payload=_payload(r.with_payload),
        with_vector=list(r.with_vector) or False,
        score_threshold=r.score_threshold,
    )
