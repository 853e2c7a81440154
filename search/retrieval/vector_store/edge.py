"""Qdrant Edge (PyPI qdrant-edge-py, beta): Qdrant's own engine inside this process, storing one
collection in a folder, with payload indexes, exact counts, facets and a write-ahead log.

Only one process at a time may open a folder: a second one is refused ("Can't init WAL:
WouldBlock"), which `EdgeIndex` reports as `IndexBusyError` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from ..keywords import SPARSE_VECTOR, Sparse
from .base import ProductIndex
from .types import (
    PAYLOAD_INDEXES,
    REBUILD_ADVICE,
    RRF_K,
    VECTOR_NAMES,
    Found,
    IndexBusyError,
    IndexStoreFullError,
    IndexUnavailableError,
    Request,
    StoredPoint,
    Where,
)

SCHEMAS = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
    "integer": qe.PayloadSchemaType.Integer,
}
CONFIG_FILE = "edge_config.json"
# what this app records of the store beside Edge's own files (the payload's schema)
OWN_FILE = "shop_search.json"


# Free disk the store must have beyond what its files hold. Its files are sparse (a new store's
# are 270 MB long and hold under 1 MB) and the engine fills them through memory maps, where a full
# disk is not an error but a SIGBUS that kills the server without a log line.
ROOM_MARGIN = 64 * 2**20
# How often the room is measured again (seconds): a walk over the store's files
ROOM_LOOK_SECONDS = 5

logger = logging.getLogger(__name__)


def store_room_problem(path: Path) -> str:
    """Why the store at `path` cannot safely grow on its disk, or "" when it can."""
    length = held = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            length += stat.st_size
            held += stat.st_blocks * 512
    try:
        free = shutil.disk_usage(path if path.exists() else path.parent).free
    except OSError:
        return ""
    need = max(0, length - held) + ROOM_MARGIN
    if free >= need:
        return ""
    mb = 2**20
    return (
        f"The vector index at {path} cannot grow: its files may fill {length // mb} MB and hold "
        f"{held // mb} MB, and the disk has {free // mb} MB free ({need // mb} MB needed). Nothing was "
        "written and the products stay pending: free space on that disk or move QDRANT_PATH."
    )


def _unreadable(path: Path, exc: BaseException) -> IndexUnavailableError:
    return IndexUnavailableError(f"The vector index at {path} cannot be read ({exc}). {REBUILD_ADVICE}")


class EdgeIndex(ProductIndex):
    sole_writer = True  # one process at a time may open the folder, and writes go through here

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._shard: qe.EdgeShard | None = None
        self._dim: int | None = None
        # opening, creating and dropping the shard; queries and writes go straight to the engine
        self._lock = threading.RLock()
        self._room_looked = -1e9
        self._room_problem = ""

    def _room(self) -> None:
        """Refuse (IndexStoreFullError) where the disk has no room for the store's files to grow."""
        now = time.monotonic()
        if now - self._room_looked >= ROOM_LOOK_SECONDS:
            problem = store_room_problem(self.path) if self.path.exists() else ""
            if problem and not self._room_problem:
                logger.error("%s", problem)
            self._room_looked, self._room_problem = now, problem
        if self._room_problem:
            raise IndexStoreFullError(self._room_problem)

    def _open(self) -> qe.EdgeShard | None:
        """The shard, loaded on first use; None while no collection exists."""
        if self._shard is not None:
            return self._shard
        with self._lock:
            if self._shard is None and (self.path / CONFIG_FILE).is_file():
                self._room()
                try:
                    self._shard = qe.EdgeShard.load(str(self.path))
                except Exception as exc:  # the binding raises plain Exception
                    if "WouldBlock" in str(exc):
                        raise IndexBusyError(f"The vector index at {self.path} is open in another process.") from exc
                    raise _unreadable(self.path, exc) from exc
            return self._shard

    def _broken(self, exc: Exception) -> bool:
        # the binding raises plain Exception for what its files hold; OSError for the files
        return type(exc) is Exception or isinstance(exc, OSError)

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None

    # --- schema -------------------------------------------------------------------
    def _stored_dim(self) -> int | None:
        if self._dim is None and (self.path / CONFIG_FILE).is_file():
            try:
                config = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
                self._dim = int(config["vectors"]["text"]["size"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise _unreadable(self.path, exc) from exc
        return self._dim

    def _create(self, dim: int) -> None:
        with self._lock:
            self.path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(
                vectors={name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine) for name in VECTOR_NAMES},
                sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            shard = qe.EdgeShard.create(str(self.path), config)
            self._shard, self._dim = shard, dim
            self._room_looked = -1e9  # its files are made: measure them
            self._room()
            for key, schema in PAYLOAD_INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(key, SCHEMAS[schema]))

    def has_keywords(self) -> bool:
        try:
            config = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _unreadable(self.path, exc) from exc
        return SPARSE_VECTOR in (config.get("sparse_vectors") or {})

    def _add_keywords(self) -> None:
        with self._lock:
            shard = self._open()
            if shard is None:
                return
            shard.update(qe.UpdateOperation.create_sparse_vector(SPARSE_VECTOR, qe.Modifier.Idf))
            for key, schema in PAYLOAD_INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(key, SCHEMAS[schema]))

    def _payload_schema(self) -> int:
        try:
            return int(json.loads((self.path / OWN_FILE).read_text(encoding="utf-8")).get("payload_schema", 1))
        except FileNotFoundError:
            return 1
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise _unreadable(self.path, exc) from exc

    def _store_payload_schema(self, version: int) -> None:
        with self._lock:
            target = self.path / OWN_FILE
            partial = target.with_suffix(".tmp")
            partial.write_text(json.dumps({"payload_schema": version}), encoding="utf-8")
            partial.replace(target)

    def _keyword_index(self, key: str) -> bool:
        with self._lock:
            shard = self._open()
            if shard is None:
                return False
            if key not in shard.info().payload_schema:
                shard.update(qe.UpdateOperation.create_field_index(key, SCHEMAS["keyword"]))
            return True

    def _drop(self) -> None:
        with self._lock:
            self.close()
            if self.path.exists():
                shutil.rmtree(self.path)
            self._dim = None

    # --- writes -------------------------------------------------------------------
    def _upsert(self, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> None:
        shard = self._open()
        if shard is None:
            raise RuntimeError("ensure_collection() before writing points")
        self._room()
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(id=pid, vector={k: _vector(v) for k, v in vectors.items()}, payload=payload)
                    for pid, vectors, payload in rows
                ]
            )
        )

    def _set_payload(self, point_id: int, payload: dict[str, Any], keywords: Sparse | None) -> None:
        shard = self._open()
        if shard is not None:
            self._room()
            shard.update(qe.UpdateOperation.overwrite_payload([int(point_id)], payload))
            if keywords:
                shard.update(
                    qe.UpdateOperation.update_vectors(
                        [qe.PointVectors(id=int(point_id), vector={SPARSE_VECTOR: _vector(keywords)})]
                    )
                )

    def _delete(self, ids: list[int]) -> None:
        shard = self._open()
        if ids and shard is not None:
            shard.update(qe.UpdateOperation.delete_points(ids))

    # --- reads --------------------------------------------------------------------
    def existing_ids(self, ids: Iterable[int]) -> set[int]:
        ids = [int(i) for i in ids]
        shard = self._open()
        if not ids or shard is None:
            return set()
        return {int(r.id) for r in shard.retrieve(ids, with_payload=False, with_vector=False)}

    def retrieve(self, ids: Iterable[int], *, with_vectors: bool = True) -> dict[int, StoredPoint]:
        ids = [int(i) for i in ids]
        shard = self._open()
        if not ids or shard is None:
            return {}
        return {
            int(r.id): StoredPoint(int(r.id), _dense(r.vector) if with_vectors else {}, dict(r.payload or {}))
            for r in shard.retrieve(ids, with_payload=True, with_vector=list(VECTOR_NAMES) if with_vectors else False)
        }

    def point_ids(self) -> Iterator[int]:
        shard = self._open()
        offset = None
        while shard is not None:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, with_payload=False, with_vector=False)
            )
            yield from (int(r.id) for r in records)
            if offset is None:
                return

    def _count(self, where: Where | None) -> int:
        shard = self._open()
        return int(shard.count(qe.CountRequest(filter=_filter(where), exact=True))) if shard is not None else 0

    def _facet(self, key: str, where: Where | None, limit: int) -> dict[str, int]:
        shard = self._open()
        if shard is None:
            return {}
        # Not `exact`: that counts each value again under the filter (40-70 ms at 100k products,
        # filtered). Edge's default reads the payload index per segment and is exact while no
        # optimizer copies segments, which Edge runs only when asked; the contract suite checks
        # it against counting by hand after updates and deletes.
        response = shard.facet(qe.FacetRequest(key=key, filter=_filter(where), limit=limit, exact=False))
        return {str(hit.value): int(hit.count) for hit in response.hits}

    def _query_batch(self, requests: Sequence[Request]) -> list[list[Found]]:
        shard = self._open()
        if shard is None:
            return [[] for _ in requests]
        responses = shard.query_batch(qe.QueryBatchRequest([_request(r) for r in requests]))
        return [
            [Found(int(p.id), float(p.score), dict(p.vector or {}), dict(p.payload or {})) for p in response]
            for response in responses
        ]


def _vector(value: Any) -> Any:
    return (
        qe.SparseVector(indices=list(value.indices), values=list(value.values)) if isinstance(value, Sparse) else value
    )


def _dense(vectors: Any) -> dict[str, list[float]]:
    return {k: v for k, v in (vectors or {}).items() if k in VECTOR_NAMES}


def _filter(where: Where | None) -> qe.Filter | None:
    if not where:
        return None
    must = [qe.FieldCondition(key=key, match=qe.MatchAny(any=list(values))) for key, values in where.any_of]
    must += [
        qe.Filter(should=[qe.FieldCondition(key=key, match=qe.MatchAny(any=list(values))), qe.IsEmptyCondition(key)])
        for key, values in where.any_or_empty
    ]
    must += [qe.FieldCondition(key=key, range=qe.RangeFloat(gte=gte, lte=lte)) for key, gte, lte in where.ranges]
    if where.ids:
        must.append(qe.HasIdCondition(point_ids=set(where.ids)))
    if where.has_vector:
        must.append(qe.HasVectorCondition(where.has_vector))
    must_not = [qe.HasIdCondition(point_ids=set(where.not_ids))] if where.not_ids else None
    return qe.Filter(must=must or None, must_not=must_not)


def _payload(selection: tuple[str, ...] | bool) -> list[str] | bool:
    return selection if isinstance(selection, bool) else (list(selection) or False)


def _request(r: Request) -> qe.QueryRequest:
    if r.fusion:
        query = qe.Fusion.Rrf(k=RRF_K) if r.fusion == "rrf" else qe.Fusion.Dbsf()
        prefetches = [
            qe.Prefetch(limit=p.limit, query=qe.Query.Nearest(list(p.vector), using=p.using), filter=_filter(p.where))
            for p in r.prefetch
        ]
        return qe.QueryRequest(
            limit=r.limit,
            offset=r.offset,
            query=query,
            prefetches=prefetches,
            filter=_filter(r.where),
            with_payload=_payload(r.with_payload),
            with_vector=list(r.with_vector) or False,
        )
    query = _vector(r.sparse) if r.sparse is not None else list(r.vector)
    return qe.QueryRequest(
        limit=r.limit,
        offset=r.offset,
        query=qe.Query.Nearest(query, using=r.using),
        filter=_filter(r.where),
        with_payload=_payload(r.with_payload),
        with_vector=list(r.with_vector) or False,
        score_threshold=r.score_threshold,
    )
