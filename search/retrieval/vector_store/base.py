"""ProductIndex: the one interface to the vector engine, and the engine base every engine
shares (schema, writes, guarded reads).

One point per product, id = product id, with named vectors "text", "image" and "avg".
A product without an image has no "image" vector at all (never a zero vector), and one
without usable text has no "text" vector. An engine implements a few primitives over plain
requests (`Request` in, `Found` out, types.py); the search's retrieval is written once
(retrieving.py), and counts and facets are remembered between writes (memo.py).
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from ..keywords import SPARSE_VECTOR, Sparse
from .memo import FACET_VALUES, CountMemo, PointState
from .retrieving import candidates_retrieve, matches_retrieve
from .types import (
    CANDIDATE_PAYLOAD,
    PAYLOAD_INDEXES,
    PAYLOAD_SCHEMA,
    REBUILD_ADVICE,
    TRANSIENT_RETRY_SECONDS,
    VECTOR_NAMES,
    Found,
    Hit,
    IndexSchemaError,
    IndexTransientError,
    IndexUnavailableError,
    Leg,
    Matches,
    ProductPoint,
    Request,
    Retrieval,
    StoredPoint,
    Where,
    average_vector,
    plain_vector,
)

T = TypeVar("T")


_MEMO_CREATION = threading.Lock()


class ProductIndex(abc.ABC):
    """The vector index of the catalog, whatever engine holds it."""

    # Counts and facets are remembered where this object is the only writer (the embedded
    # engines, which one process holds): facets cost more than the search itself on a large
    # catalog (100k products: 40-70 ms each, filtered, exact), and only a write through here can
    # change them. A write does not forget them: it reads the old payload of the points it
    # writes, and each remembered count moves by the points that left or joined its filter.
    # A server is written by other processes, so it is asked every time.
    sole_writer = False
    MEMO_SIZE = 1024
    FACET_VALUES = FACET_VALUES  # a facet is remembered whole (every value) when it has fewer values
    # Moving what is remembered costs Python time per remembered value and written point (about
    # 1.6 us each): a merchandiser's save moves them all, a bulk batch past this many pairs
    # forgets them instead (1,024 values x 128 points took 0.4 s per batch).
    MOVE_BUDGET = 16_384

    @property
    def _memo(self) -> CountMemo:
        memo = self.__dict__.get("_count_memo")
        if memo is None:
            # made on first use (engines need not call a base __init__), once even when two
            # threads' first searches race: a second memo would lose the first one's writes
            with _MEMO_CREATION:
                memo = self.__dict__.get("_count_memo")
                if memo is None:
                    memo = self.__dict__["_count_memo"] = CountMemo(self.MEMO_SIZE)
        return memo

    def _changed(self) -> None:
        """After a write the memo cannot follow (a drop, a new collection): forget it all."""
        self._memo.forget()

    def counts_forget(self) -> None:
        """Forget the remembered counts and facets (benchmarks: what a filter costs the first time)."""
        self._changed()

    def _remembered(self, key: tuple, compute: Callable[[], T]) -> T:
        if not self.sole_writer:
            return compute()
        return self._memo.remembered(key, compute)

    def _written(
        self,
        ids: Sequence[int],
        write: Callable[[], None],
        new: Callable[[dict[int, PointState]], dict[int, PointState | None]],
    ) -> None:
        """Run a write of the points `ids`, keeping what is remembered true (memo.CountMemo)."""
        if not self.sole_writer:
            write()
            return
        self._memo.written(
            ids, write, lambda ids, vectors: self._states(ids, vectors=vectors), new, budget=self.MOVE_BUDGET
        )

    def _states(self, ids: Sequence[int], *, vectors: bool) -> dict[int, PointState]:
        """The stored payload (and, if asked, vector names) of the points among `ids` that exist."""
        return {
            pid: PointState(p.payload, frozenset(p.vector) if vectors else None)
            for pid, p in self.retrieve(ids, with_vectors=vectors).items()
        }

    # --- schema -------------------------------------------------------------------
    def dim(self) -> int | None:
        """The vector size of the collection, or None when there is no collection."""
        return self._guarded(self._stored_dim)

    @abc.abstractmethod
    def _stored_dim(self) -> int | None: ...

    def ensure_collection(self, dim: int) -> bool:
        """Create the collection (named vectors, the keyword leg's sparse vector, payload indexes)
        if it is missing; bring a collection made by an older version up to date: the keyword
        leg's sparse vector and payload indexes, the payload's schema (PAYLOAD_SCHEMA). Returns
        True when it did that: every point needs its payload (and keywords) written again.

        Raises:
            IndexSchemaError: it exists with vectors of another size.
        """
        current = self.dim()
        if current is not None and current != dim:
            raise self._schema_error(current, dim)
        if current is None:
            self._create(dim)
            self._payload_schema_set(PAYLOAD_SCHEMA)
            self._changed()
            return False
        if self.__dict__.get("_up_to_date"):
            return False  # checked already: indexing calls this for every batch, the sweep every few seconds
        stale = False
        if not self.has_keywords():
            self._add_keywords()
            stale = True
        if self._payload_schema() < PAYLOAD_SCHEMA:
            self._payload_schema_set(PAYLOAD_SCHEMA)
            stale = True
        if stale:
            self._changed()
        self.__dict__["_up_to_date"] = True
        return stale

    def _payload_schema_set(self, version: int) -> None:
        """Record the PAYLOAD_SCHEMA the points are written with."""
        self._store_payload_schema(version)
        if version < PAYLOAD_SCHEMA:
            self.schema_forget()

    def schema_forget(self) -> None:
        """Forget that the collection was found up to date: look again at the next
        ensure_collection (its schema was changed from outside this object)."""
        self.__dict__.pop("_up_to_date", None)

    @abc.abstractmethod
    def _payload_schema(self) -> int:
        """The PAYLOAD_SCHEMA the collection's points were written with (1: before it was recorded)."""

    @abc.abstractmethod
    def _store_payload_schema(self, version: int) -> None: ...

    def facet_index(self, key: str) -> None:
        """Give the payload key a keyword index, which facets need (an attribute newly chosen as a
        filter: its values are in every payload already)."""
        if key not in self._indexed and self._keyword_index(key):
            self._indexed.add(key)

    @property
    def _indexed(self) -> set[str]:
        known = self.__dict__.get("_indexed_keys")
        if known is None:
            known = self.__dict__["_indexed_keys"] = set(PAYLOAD_INDEXES)
        return known

    @abc.abstractmethod
    def _keyword_index(self, key: str) -> bool:
        """Create a keyword payload index on `key` if it has none; False while there is no collection."""

    @abc.abstractmethod
    def has_keywords(self) -> bool:
        """Whether the collection has the keyword leg's sparse vector (made since 0.5)."""

    @abc.abstractmethod
    def _add_keywords(self) -> None:
        """Add the sparse vector and the payload indexes the keyword leg needs."""

    @abc.abstractmethod
    def _create(self, dim: int) -> None:
        """Create the collection: the named vectors at this size, a payload index per PAYLOAD_INDEXES."""

    def drop(self) -> None:
        """Remove the collection and everything in it."""
        self._drop()
        self.__dict__.pop("_indexed_keys", None)
        self.schema_forget()
        self._changed()

    @abc.abstractmethod
    def _drop(self) -> None: ...

    def close(self) -> None:  # noqa: B027 (an engine that holds nothing has nothing to release)
        """Release what the engine holds (files, locks, connections)."""

    def _schema_error(self, current: int, dim: int) -> IndexSchemaError:
        return IndexSchemaError(
            f"The vector index holds {current}-d vectors but the embedding model gives {dim}-d; "
            "rebuild it with `python manage.py index_products --all --recreate`."
        )

    # --- writes -------------------------------------------------------------------
    def upsert(self, points: Sequence[ProductPoint]) -> None:
        """Write these points (id = product id); each gets an "avg" of the vectors it has."""
        rows = []
        for point in points:
            vectors: dict[str, Any] = {}
            if point.keywords:
                vectors[SPARSE_VECTOR] = point.keywords
            if point.text is not None:
                vectors["text"] = point.text.tolist()
            if point.image is not None:
                vectors["image"] = point.image.tolist()
            avg = average_vector(point.text, point.image)
            if avg is None:
                raise ValueError(f"product {point.id} has neither a text nor an image vector")
            vectors["avg"] = avg.tolist()
            rows.append((point.id, vectors, point.payload))
        if rows:
            states = {
                pid: PointState(payload, frozenset(v for v in vectors if v in VECTOR_NAMES))
                for pid, vectors, payload in rows
            }
            self._written([pid for pid, _, _ in rows], lambda: self._upsert(rows), lambda before: states)

    @abc.abstractmethod
    def _upsert(self, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> None:
        """Write the rows; a vector value is a list of floats, or a `Sparse` for SPARSE_VECTOR."""

    def set_payload(self, point_id: int, payload: dict[str, Any], *, keywords: Sparse | None = None) -> None:
        """Replace the point's payload (and, if given, its keyword vector) and keep its vectors."""
        self._written(
            [point_id],
            lambda: self._set_payload(point_id, payload, keywords),
            lambda before: {pid: PointState(payload, state.vectors) for pid, state in before.items()},
        )

    @abc.abstractmethod
    def _set_payload(self, point_id: int, payload: dict[str, Any], keywords: Sparse | None) -> None: ...

    def delete(self, ids: Iterable[int]) -> None:
        """Remove these points; ids without a point are ignored."""
        ids = [int(i) for i in ids]
        self._written(ids, lambda: self._delete(ids), lambda before: dict.fromkeys(before))

    @abc.abstractmethod
    def _delete(self, ids: list[int]) -> None: ...

    # --- reads --------------------------------------------------------------------
    @abc.abstractmethod
    def existing_ids(self, ids: Iterable[int]) -> set[int]: ...

    @abc.abstractmethod
    def retrieve(self, ids: Iterable[int], *, with_vectors: bool = True) -> dict[int, StoredPoint]: ...

    @abc.abstractmethod
    def point_ids(self) -> Iterator[int]:
        """Every point's id, page by page (reconciling the index with the database)."""

    def stored_model(self) -> str | None:
        """The model whose vectors the index holds (each point's payload names it); None when
        empty. A store is filled by one model: a new model fills a store of its own."""

        def read() -> str | None:
            for point_id in self.point_ids():
                point = self.retrieve([point_id], with_vectors=False).get(point_id)
                return str(point.payload.get("model_id") or "") or None if point else None
            return None

        return self._remembered(("stored_model",), read)

    def count(self, where: Where | None = None) -> int:
        """The exact number of points (under `where`)."""
        return self._remembered(("count", where), lambda: self._guarded(lambda: self._count(where)))

    def facet(self, key: str, *, where: Where | None = None, limit: int = 20) -> dict[str, int]:
        """Exact counts of the points under `where` per value of the payload key `key` (given a
        keyword index if it has none), the `limit` most frequent values."""
        self.facet_index(key)
        if not self.sole_writer:
            return self._guarded(lambda: self._facet(key, where, limit))
        whole, complete = self._remembered(
            ("facet", key, where), lambda: self._guarded(lambda: self._facet_whole(key, where))
        )
        if not complete and limit > self.FACET_VALUES:
            return self._guarded(lambda: self._facet(key, where, limit))
        return dict(sorted(whole.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])

    def _facet_whole(self, key: str, where: Where | None) -> tuple[dict[str, int], bool]:
        counts = self._facet(key, where, self.FACET_VALUES)
        return counts, len(counts) < self.FACET_VALUES

    @abc.abstractmethod
    def _count(self, where: Where | None) -> int: ...

    @abc.abstractmethod
    def _facet(self, key: str, where: Where | None, limit: int) -> dict[str, int]: ...

    @abc.abstractmethod
    def _query_batch(self, requests: Sequence[Request]) -> list[list[Found]]:
        """Run the requests in one round trip; one result list per request, best first."""

    def _searched(self, requests: Sequence[Request], query_dim: int) -> list[list[Found]]:
        """Run a read, or raise IndexUnavailableError saying why it cannot be (a store of another
        model, a locked or unreadable store) instead of whatever the engine raised."""
        current = self.dim()
        if current is not None and current != query_dim:
            raise self._schema_error(current, query_dim)
        return self._guarded(lambda: self._query_batch(requests))

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run an engine call, sorting what it raises: a transient fault (`_transient`) is tried
        once more, then is IndexTransientError ("try again"); a broken store (`_broken`: missing,
        corrupt) is IndexUnavailableError with the rebuild advice; anything else (a bug) is
        raised as it is, never answered with advice that would destroy a sound store."""
        for attempt in (1, 2):
            try:
                return call()
            except IndexUnavailableError:
                raise
            except Exception as exc:
                if self._transient(exc):
                    if attempt == 1:
                        time.sleep(TRANSIENT_RETRY_SECONDS)
                        continue
                    raise IndexTransientError(
                        f"The vector index did not answer ({exc}); try again in a moment."
                    ) from exc
                if self._broken(exc):
                    raise IndexUnavailableError(
                        f"The vector index cannot be searched ({exc}). {REBUILD_ADVICE}"
                    ) from exc
                raise
        raise AssertionError("unreachable")

    def _transient(self, exc: Exception) -> bool:
        """Whether the engine's error means "not now" (each engine adds its client's types)."""
        return isinstance(exc, (TimeoutError, ConnectionError))

    def _broken(self, exc: Exception) -> bool:
        """Whether the engine's error means the store itself is missing or unreadable."""
        return False

    def search(
        self, vector: np.ndarray, *, using: str = "avg", limit: int = 20, offset: int = 0, where: Where | None = None
    ) -> list[Hit]:
        if using not in VECTOR_NAMES:
            raise ValueError(f"unknown vector {using!r}; use one of {VECTOR_NAMES}")
        if self.dim() is None:
            return []
        (found,) = self._searched(
            [
                Request(
                    limit=limit, offset=offset, vector=plain_vector(vector), using=using, where=where, with_payload=True
                )
            ],
            len(vector),
        )
        return [Hit(id=f.id, score=f.score, payload=f.payload) for f in found]

    def best_scores(self, vectors: Sequence[np.ndarray], *, using: str) -> list[float | None]:
        """Each vector's best score in the named vector over the whole collection, in one round
        trip (None where no point has that vector)."""
        if self.dim() is None or not len(vectors):
            return [None] * len(vectors)
        responses = self._searched(
            [Request(limit=1, vector=plain_vector(v), using=using) for v in vectors], len(vectors[0])
        )
        return [r[0].score if r else None for r in responses]

    def retrieve_candidates(
        self,
        vectors: Mapping[str, np.ndarray],
        *,
        limit: int,
        where: Where | None = None,
        server_ranking: str | None = None,
        avg_vector: np.ndarray | None = None,
        payload: tuple[str, ...] = CANDIDATE_PAYLOAD,
    ) -> Retrieval:
        """retrieving.candidates_retrieve on this store."""
        return candidates_retrieve(
            self,
            vectors,
            limit=limit,
            where=where,
            server_ranking=server_ranking,
            avg_vector=avg_vector,
            payload=payload,
        )

    def retrieve_matches(
        self,
        legs: Mapping[str, Leg],
        *,
        limit: int,
        where: Where | None = None,
        payload: tuple[str, ...] = CANDIDATE_PAYLOAD,
        score: bool = True,
    ) -> Matches:
        """retrieving.matches_retrieve on this store."""
        return matches_retrieve(self, legs, limit=limit, where=where, payload=payload, score=score)

    def query_batch(self, requests: Sequence[Request]) -> list[list[Found]]:
        """The engine's own queries, run as they are (benchmarks: the floor of a search)."""
        return self._query_batch(requests)
