"""ProductIndex: the one interface to the vector engine, and what every engine shares.

One point per product, id = product id, with named vectors "text", "image" and "avg".
A product without an image has no "image" vector at all (never a zero vector), and one
without usable text has no "text" vector. An engine implements a few primitives over plain
requests (`Request` in, `Found` out); the search's candidate retrieval and rescoring, and the
averaged vector, are written once here.
"""
from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from ..fusion import Candidate

VECTOR_NAMES = ("text", "image", "avg")
# Payload keys the search filters and facets on: every engine indexes them.
PAYLOAD_INDEXES = {"category": "keyword", "brand": "keyword", "price": "float", "active": "bool"}
SERVER_RANKINGS = ("avg", "rrf", "dbsf")
# What a candidate carries by default; the search asks only for what it sorts by (the rest
# of the payload stays in the engine: copying it costs more than the queries themselves).
CANDIDATE_PAYLOAD = ("category", "brand", "price")
# Qdrant's own default for reciprocal rank fusion, 1 / (k + rank): set on every engine alike.
RRF_K = 2
T = TypeVar("T")


class IndexUnavailableError(RuntimeError):
    """The vector index cannot be used (locked, unreadable, or of another model); the message
    says what happened and what rebuilds it. The database still holds every product."""


class IndexBusyError(IndexUnavailableError):
    """Another process holds the embedded index open (one process at a time may): the rows stay
    pending for the process that holds it."""


class IndexSchemaError(IndexUnavailableError):
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
    its values, each range (key, gte, lte; None = open) holds, the point has the named vector
    `has_vector` (if set), its id is one of `ids` (if any), and no id in `not_ids` is returned."""

    any_of: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    not_ids: tuple[int, ...] = ()
    ids: tuple[int, ...] = ()
    has_vector: str = ""

    def __bool__(self) -> bool:
        return bool(self.any_of or self.ranges or self.not_ids or self.ids or self.has_vector)

    def also(self, **conditions: Any) -> "Where":
        """This filter with more conditions: `ranges` and `not_ids` are added to, others replaced."""
        for key in ("ranges", "not_ids"):
            if key in conditions:
                conditions[key] = getattr(self, key) + tuple(conditions[key])
        return replace(self, **conditions)


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


@dataclass(frozen=True)
class Request:
    """One query an engine runs: the nearest points to `vector` in the named vector `using`, or,
    with `fusion` ("rrf" | "dbsf"), the fusion of the `prefetch` queries; under `where`."""

    limit: int
    vector: tuple[float, ...] = ()
    using: str = ""
    where: Where | None = None
    fusion: str | None = None
    prefetch: tuple["Request", ...] = ()
    offset: int = 0
    with_vector: tuple[str, ...] = ()
    with_payload: tuple[str, ...] | bool = ()


@dataclass(frozen=True)
class Found:
    id: int
    score: float
    vector: dict[str, list[float]]
    payload: dict[str, Any]


@dataclass
class Retrieval:
    """The candidate pool of a query (every candidate with its cosine in each modality it has),
    and, if asked, the ranking that the engine itself computed (avg vector, RRF or DBSF)."""

    pool: list[Candidate]
    server_scores: dict[int, float] | None = None


class ProductIndex(abc.ABC):
    """The vector index of the catalog, whatever engine holds it."""

    # Counts and facets are remembered until the next write through this object, where it is
    # the only writer (the embedded engines, which one process holds): facets cost more than the
    # search itself on a large catalog (100k products: 100 ms filtered), and until a write they
    # cannot change. A server is written by other processes, so it is asked every time.
    sole_writer = False
    MEMO_SIZE = 1024

    def _memo_state(self) -> tuple[OrderedDict, list[int]]:
        if not hasattr(self, "_memo"):
            self._memo: OrderedDict = OrderedDict()
            self._generation = [0]
        return self._memo, self._generation

    def _changed(self) -> None:
        """After every write: what was counted before no longer holds."""
        memo, generation = self._memo_state()
        generation[0] += 1
        memo.clear()

    def _remembered(self, key: tuple, compute: Callable[[], T]) -> T:
        if not self.sole_writer:
            return compute()
        memo, generation = self._memo_state()
        seen = generation[0]
        hit = memo.get(key)
        if hit is not None and hit[0] == seen:
            return hit[1]
        value = compute()
        if generation[0] == seen:  # no write meanwhile: the value holds for this generation
            memo[key] = (seen, value)
            while len(memo) > self.MEMO_SIZE:
                memo.popitem(last=False)
        return value

    # --- schema -------------------------------------------------------------------
    @abc.abstractmethod
    def dim(self) -> int | None:
        """The vector size of the collection, or None when there is no collection."""

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (named vectors and payload indexes) if it is missing.

        Raises:
            IndexSchemaError: it exists with vectors of another size.
        """
        current = self.dim()
        if current == dim:
            return
        if current is not None:
            raise self._schema_error(current, dim)
        self._create(dim)
        self._changed()

    @abc.abstractmethod
    def _create(self, dim: int) -> None:
        """Create the collection: the named vectors at this size, a payload index per PAYLOAD_INDEXES."""

    def drop(self) -> None:
        """Remove the collection and everything in it."""
        self._drop()
        self._changed()

    @abc.abstractmethod
    def _drop(self) -> None: ...

    def close(self) -> None:
        """Release what the engine holds (files, locks, connections)."""

    def _schema_error(self, current: int, dim: int) -> IndexSchemaError:
        return IndexSchemaError(
            f"The vector index holds {current}-d vectors but the embedding model gives {dim}-d; "
            "rebuild it with `python manage.py index_products --all --recreate`.")

    # --- writes -------------------------------------------------------------------
    def upsert(self, points: Sequence[ProductPoint]) -> None:
        """Write these points (id = product id); each gets an "avg" of the vectors it has."""
        rows = []
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
            rows.append((point.id, vectors, point.payload))
        if rows:
            self._upsert(rows)
            self._changed()

    @abc.abstractmethod
    def _upsert(self, rows: list[tuple[int, dict[str, list[float]], dict[str, Any]]]) -> None: ...

    def set_payload(self, point_id: int, payload: dict[str, Any]) -> None:
        """Replace the point's payload."""
        self._set_payload(point_id, payload)
        self._changed()

    @abc.abstractmethod
    def _set_payload(self, point_id: int, payload: dict[str, Any]) -> None: ...

    def delete(self, ids: Iterable[int]) -> None:
        """Remove these points; ids without a point are ignored."""
        self._delete([int(i) for i in ids])
        self._changed()

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
        return self._remembered(("count", where), lambda: self._count(where))

    def facet(self, key: str, *, where: Where | None = None, limit: int = 20) -> dict[str, int]:
        """Exact counts of the points under `where` per value of the payload key `key` (which has
        a payload index), the `limit` most frequent values."""
        return dict(self._remembered(("facet", key, where, limit), lambda: self._facet(key, where, limit)))

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
        try:
            return self._query_batch(requests)
        except IndexUnavailableError:
            raise
        except Exception as exc:  # engines raise their own types, or plain Exception (Edge)
            raise IndexUnavailableError(
                f"The vector index cannot be searched ({exc}). Rebuild it from the database with "
                "`python manage.py index_products --all --recreate`.") from exc

    def search(self, vector: np.ndarray, *, using: str = "avg", limit: int = 20, offset: int = 0,
               where: Where | None = None) -> list[Hit]:
        if using not in VECTOR_NAMES:
            raise ValueError(f"unknown vector {using!r}; use one of {VECTOR_NAMES}")
        if self.dim() is None:
            return []
        (found,) = self._searched([Request(limit=limit, offset=offset, vector=_plain(vector), using=using,
                                           where=where, with_payload=True)], len(vector))
        return [Hit(id=f.id, score=f.score, payload=f.payload) for f in found]

    def retrieve_candidates(self, vectors: Mapping[str, np.ndarray], *, limit: int,
                            where: Where | None = None, server_ranking: str | None = None,
                            avg_vector: np.ndarray | None = None,
                            payload: tuple[str, ...] = CANDIDATE_PAYLOAD) -> Retrieval:
        """The top `limit` per modality in `vectors` (modality -> query vector, searched against
        that named vector) under `where`, each candidate with its cosine in every modality it has;
        optionally the engine's own ranking ("avg", "rrf", "dbsf") as well; each candidate
        carries the `payload` keys asked for (none: cheaper).

        Ids first, then the scores the first round missed: returning stored vectors to rescore
        candidates here cost three times the queries themselves. Two round trips: the top k per
        modality (with the payload sorting reads), then, per modality, the candidates another
        modality found, scored by the engine under a filter on their ids."""
        modalities = [m for m in vectors if vectors[m] is not None]
        if self.dim() is None or not modalities:
            return Retrieval(pool=[], server_scores={} if server_ranking else None)
        first = [Request(limit=limit, vector=_plain(vectors[m]), using=m, where=where,
                         with_payload=payload) for m in modalities]
        if server_ranking == "avg":
            query = avg_vector if avg_vector is not None else vectors[modalities[0]]
            first.append(Request(limit=limit, vector=_plain(query), using="avg", where=where,
                                 with_payload=payload))
        elif server_ranking in ("rrf", "dbsf"):
            first.append(Request(
                limit=limit, fusion=server_ranking, with_payload=payload,
                prefetch=tuple(Request(limit=limit, vector=first[i].vector, using=m, where=where)
                               for i, m in enumerate(modalities))))
        elif server_ranking is not None:
            raise ValueError(f"unknown server ranking {server_ranking!r}; use one of {SERVER_RANKINGS}")
        responses = self._searched(first, len(first[0].vector))  # the first is a per-modality query

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
        second = [(m, Request(limit=len(ids), vector=_plain(vectors[m]), using=m, where=Where(ids=ids)))
                  for m, ids in missing.items() if ids]
        if second:
            for (modality, _), response in zip(second, self._searched([r for _, r in second], len(first[0].vector))):
                for found in response:
                    raw[found.id][modality] = found.score
        pool = [Candidate(pid, scores, payloads[pid]) for pid, scores in raw.items() if scores]
        server_scores = {f.id: f.score for f in responses[-1]} if server_ranking is not None else None
        return Retrieval(pool=pool, server_scores=server_scores)


def _plain(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(np.asarray(vector, dtype=np.float32).tolist())
