"""ProductIndex: the one interface to the vector engine, and what every engine shares.

One point per product, id = product id, with named vectors "text", "image" and "avg".
A product without an image has no "image" vector at all (never a zero vector), and one
without usable text has no "text" vector. An engine implements a few primitives over plain
requests (`Request` in, `Found` out); the search's candidate retrieval and rescoring, and the
averaged vector, are written once here.
"""
from __future__ import annotations

import abc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from ..fusion import Candidate
from ..keywords import SPARSE_VECTOR, Sparse

VECTOR_NAMES = ("text", "image", "avg")
# Payload keys the search filters and facets on: every engine indexes them. `terms` holds the
# hashed keyword terms of the product (which products hold every word of a query), `sku_key`
# its SKU as compared (keywords.sku_key).
PAYLOAD_INDEXES = {"category": "keyword", "brand": "keyword", "price": "float", "active": "bool",
                   "terms": "integer", "sku_key": "keyword"}
# What each point's payload holds, by version (a store of an older one has every payload written
# again, without encoding): 2 = category, brand and attributes folded for facets (facets.py);
# 3 = `has_description`, which the fusion calibration reads (fusion.candidate_features).
PAYLOAD_SCHEMA = 3
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


class IndexTransientError(IndexUnavailableError):
    """The engine did not answer this time (a timeout, a refused or dropped connection, a server
    restarting): the store is fine, and the same call may succeed in a moment."""


# A transient fault is tried once more after this pause before the caller is told to try again.
TRANSIENT_RETRY_SECONDS = 0.2
REBUILD_ADVICE = "Rebuild it from the database with `python manage.py index_products --all --recreate`."


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
    keywords: Sparse | None = None  # the keyword leg's term weights (keywords.KeywordEncoder)


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
        """This filter with more conditions: `any_of`, `ranges` and `not_ids` are added to, others
        replaced."""
        for key in ("any_of", "ranges", "not_ids"):
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
    """One query an engine runs: the nearest points to `vector` (or, on the sparse vector, the
    best scores for `sparse`) in the named vector `using`, or, with `fusion` ("rrf" | "dbsf"),
    the fusion of the `prefetch` queries; under `where`, scoring at least `score_threshold`."""

    limit: int
    vector: tuple[float, ...] = ()
    sparse: Sparse | None = None
    score_threshold: float | None = None
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
    FACET_VALUES = 512  # a facet is remembered whole (every value) when it has fewer values
    # Moving what is remembered costs Python time per remembered value and written point (about
    # 1.6 us each): a merchandiser's save moves them all, a bulk batch past this many pairs
    # forgets them instead (1,024 values x 128 points took 0.4 s per batch).
    MOVE_BUDGET = 16_384

    def _memo_state(self) -> tuple[OrderedDict, list[int], threading.Lock]:
        state = self.__dict__.get("_memo_parts")
        if state is None:
            # made on first use (engines need not call a base __init__), once even when two
            # threads' first searches race: a second memo would lose the first one's writes
            with _MEMO_CREATION:
                state = self.__dict__.get("_memo_parts")
                if state is None:
                    state = self.__dict__["_memo_parts"] = (OrderedDict(), [0], threading.Lock())
        return state

    def _changed(self) -> None:
        """After a write the memo cannot follow (a drop, a new collection): forget it all."""
        memo, generation, lock = self._memo_state()
        with lock:
            generation[0] += 1
            memo.clear()

    def _remembered(self, key: tuple, compute: Callable[[], T]) -> T:
        if not self.sole_writer:
            return compute()
        memo, generation, lock = self._memo_state()
        seen = generation[0]
        hit = memo.get(key)
        if hit is not None and hit[0] == seen:
            return hit[1]
        value = compute()
        with lock:
            if generation[0] == seen:  # no write began meanwhile: the value holds for this generation
                memo[key] = (seen, value)
                while len(memo) > self.MEMO_SIZE:
                    memo.popitem(last=False)
        return value

    def _written(self, ids: Sequence[int], write: Callable[[], None],
                 new: Callable[[dict[int, "PointState"]], dict[int, "PointState | None"]]) -> None:
        """Run a write of the points `ids`, keeping what is remembered true: `new` gives each
        point's state after the write from its state before (None: the point is gone)."""
        memo, generation, lock = self._memo_state()
        if not self.sole_writer or not memo or len(memo) * len(ids) > self.MOVE_BUDGET:
            write()
            self._changed()
            return
        with lock:
            generation[0] += 1  # reads that began before the write do not store what they saw
            mine = generation[0]
            kept = {key: value for key, (tag, value) in memo.items() if tag == mine - 1}
        try:
            before = self._states(ids, vectors=any(_uses_vectors(key) for key in kept))
            write()
        except BaseException:
            self._changed()
            raise
        after = new(before)
        moved = {key: _moved(key, value, before, after) for key, value in kept.items()}
        with lock:
            generation[0] += 1
            memo.clear()
            if generation[0] == mine + 1:  # no other write began meanwhile, or it is not counted
                for key, value in moved.items():
                    if value is not None:
                        memo[key] = (generation[0], value)

    def _states(self, ids: Sequence[int], *, vectors: bool) -> dict[int, "PointState"]:
        """The stored payload (and, if asked, vector names) of the points among `ids` that exist."""
        return {pid: PointState(p.payload, frozenset(p.vector) if vectors else None)
                for pid, p in self.retrieve(ids, with_vectors=vectors).items()}

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
            states = {pid: PointState(payload, frozenset(v for v in vectors if v in VECTOR_NAMES))
                      for pid, vectors, payload in rows}
            self._written([pid for pid, _, _ in rows], lambda: self._upsert(rows), lambda before: states)

    @abc.abstractmethod
    def _upsert(self, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> None:
        """Write the rows; a vector value is a list of floats, or a `Sparse` for SPARSE_VECTOR."""

    def set_payload(self, point_id: int, payload: dict[str, Any], *, keywords: Sparse | None = None) -> None:
        """Replace the point's payload (and, if given, its keyword vector) and keep its vectors."""
        self._written([point_id], lambda: self._set_payload(point_id, payload, keywords),
                      lambda before: {pid: PointState(payload, state.vectors) for pid, state in before.items()})

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
        whole, complete = self._remembered(("facet", key, where),
                                           lambda: self._guarded(lambda: self._facet_whole(key, where)))
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
                        f"The vector index did not answer ({exc}); try again in a moment.") from exc
                if self._broken(exc):
                    raise IndexUnavailableError(f"The vector index cannot be searched ({exc}). {REBUILD_ADVICE}") from exc
                raise
        raise AssertionError("unreachable")

    def _transient(self, exc: Exception) -> bool:
        """Whether the engine's error means "not now" (each engine adds its client's types)."""
        return isinstance(exc, (TimeoutError, ConnectionError))

    def _broken(self, exc: Exception) -> bool:
        """Whether the engine's error means the store itself is missing or unreadable."""
        return False

    def search(self, vector: np.ndarray, *, using: str = "avg", limit: int = 20, offset: int = 0,
               where: Where | None = None) -> list[Hit]:
        if using not in VECTOR_NAMES:
            raise ValueError(f"unknown vector {using!r}; use one of {VECTOR_NAMES}")
        if self.dim() is None:
            return []
        (found,) = self._searched([Request(limit=limit, offset=offset, vector=_plain(vector), using=using,
                                           where=where, with_payload=True)], len(vector))
        return [Hit(id=f.id, score=f.score, payload=f.payload) for f in found]

    def best_scores(self, vectors: Sequence[np.ndarray], *, using: str) -> list[float | None]:
        """Each vector's best score in the named vector over the whole collection, in one round
        trip (None where no point has that vector)."""
        if self.dim() is None or not len(vectors):
            return [None] * len(vectors)
        responses = self._searched([Request(limit=1, vector=_plain(v), using=using) for v in vectors], len(vectors[0]))
        return [r[0].score if r else None for r in responses]

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


    def retrieve_matches(self, legs: Mapping[str, "Leg"], *, limit: int, where: Where | None = None,
                         payload: tuple[str, ...] = CANDIDATE_PAYLOAD, score: bool = True) -> "Matches":
        """The products that match a query: those that reach each leg's threshold under `where`
        and the leg's own conditions (at most `limit` per leg, best first), each with its score in
        every modality that a scoring leg measures, whichever leg found it. Two round trips:
        every leg, then each modality's scores for the matches another leg found (not with
        `score=False`: which products match, and their payload, is all that is asked)."""
        legs = {name: leg for name, leg in legs.items() if leg.vector or leg.sparse}
        dense = next((len(leg.vector) for leg in legs.values() if leg.vector), 0)
        names = [name for name, leg in legs.items() if leg.matches]
        if self.dim() is None or not names:
            return Matches(pool=[], found={name: [] for name in legs})
        scored: dict[str, dict[int, float]] = {name: {} for name, leg in legs.items() if leg.scores}
        # The legs overlap (a red mug is near "red mug" in text and in image): the payload comes
        # once per product, from the first scoring leg, which the second round asks for the rest
        # (copying a payload out of the engine costs more than its score).
        carrier = next((n for n in scored if legs[n].matches), None) if score else None
        first = [Request(limit=limit, vector=legs[n].vector, sparse=legs[n].sparse, using=legs[n].using,
                         where=_both(where, legs[n].where), score_threshold=legs[n].threshold,
                         with_payload=payload if carrier in (None, n) else ()) for n in names]
        responses = self._searched(first, dense)
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
        # every scoring leg scores every match, whichever leg found it
        second = []
        for name, scores in scored.items() if score else ():
            ids = tuple(sorted(pid for pid in matched if pid not in scores))
            if ids:
                leg = legs[name]
                second.append((name, Request(limit=len(ids), vector=leg.vector, sparse=leg.sparse, using=leg.using,
                                             where=Where(ids=ids), with_payload=payload if name == carrier else ())))
        if second:
            for (name, _), response in zip(second, self._searched([r for _, r in second], dense)):
                for f in response:
                    scored[name][f.id] = f.score
                    if name == carrier:
                        payloads.setdefault(f.id, f.payload)
        lacking = [pid for pid in matched if pid not in payloads]  # no vector of the carrier's modality
        if lacking:
            for pid, point in self.retrieve(lacking, with_vectors=False).items():
                payloads[pid] = {key: point.payload[key] for key in payload if key in point.payload}
        # a modality measured by several legs (the query as typed and as corrected) keeps the best
        raw: dict[int, dict[str, float]] = {pid: {} for pid in matched if pid in payloads}  # gone meanwhile: out
        for name, scores in scored.items():
            modality, sparse = legs[name].scores, legs[name].sparse is not None
            for pid, own in raw.items():
                value = scores.get(pid, 0.0 if sparse else None)  # no shared term: 0; no vector: absent
                if value is not None and value > own.get(modality, float("-inf")):
                    own[modality] = value
        pool = [Candidate(pid, scores, payloads[pid]) for pid, scores in raw.items()]
        return Matches(pool=pool, found=found,
                       truncated=[n for n, r in zip(names, responses) if len(r) >= limit])


@dataclass(frozen=True)
class Leg:
    """One way a query finds products: the nearest to a dense `vector` (or the best scores for
    `sparse`) in the named vector `using`, from `threshold` up, under more conditions `where`.
    Its scores are the modality `scores` of what it finds ("": it only says what matches); a leg
    that does not `match` only scores what the others found."""

    using: str
    vector: tuple[float, ...] = ()
    sparse: Sparse | None = None
    threshold: float | None = None
    where: Where | None = None
    scores: str = ""
    matches: bool = True


@dataclass
class Matches:
    """What a query matches: every product with its scores, which leg found which (best first),
    and the legs that stopped at the limit (more products reach their threshold)."""

    pool: list[Candidate]
    found: dict[str, list[int]]
    truncated: list[str] = field(default_factory=list)


def _both(a: Where | None, b: Where | None) -> Where | None:
    if not b:
        return a
    if not a:
        return b
    return a.also(any_of=b.any_of, ranges=b.ranges, not_ids=b.not_ids,
                  **{k: getattr(b, k) for k in ("ids", "has_vector") if getattr(b, k)})


def _plain(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(np.asarray(vector, dtype=np.float32).tolist())


@dataclass(frozen=True)
class PointState:
    """What a point's membership in a filter depends on: its payload and (if known) its vectors."""

    payload: Mapping[str, Any]
    vectors: frozenset[str] | None = None


def _memo_where(key: tuple) -> Where | None:
    """The filter of a remembered count ("count", where) or facet ("facet", key, where)."""
    return key[2] if key[0] == "facet" else key[1] if key[0] == "count" else None


def _uses_vectors(key: tuple) -> bool:
    where = _memo_where(key)
    return bool(where and where.has_vector)


def _values(payload: Mapping[str, Any], key: str) -> list[Any]:
    value = payload.get(key)
    return list(value) if isinstance(value, list) else [] if value is None else [value]


def _under(where: Where | None, pid: int, state: PointState | None) -> bool | None:
    """Whether the point is under `where` as an engine decides it; None if this cannot tell."""
    if state is None:
        return False
    if not where:
        return True
    if where.ids and pid not in where.ids or pid in where.not_ids:
        return False
    for key, allowed in where.any_of:
        if not any(isinstance(v, (str, int)) and not isinstance(v, bool) and v in allowed
                   for v in _values(state.payload, key)):
            return False
    for key, gte, lte in where.ranges:
        if not any(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and (gte is None or v >= gte) and (lte is None or v <= lte)
                   for v in _values(state.payload, key)):
            return False
    if where.has_vector:
        if state.vectors is None:
            return None
        return where.has_vector in state.vectors
    return True


def _moved(key: tuple, value: Any, before: Mapping[int, PointState],
           after: Mapping[int, PointState | None]) -> Any:
    """A remembered count or facet after a write changed `before` into `after`; None: forget it."""
    kind, where = key[0], _memo_where(key)
    if kind not in ("count", "facet"):
        return None
    if kind == "count":
        for pid in set(before) | set(after):
            was, now = _under(where, pid, before.get(pid)), _under(where, pid, after.get(pid))
            if was is None or now is None:
                return None
            value += int(now) - int(was)
        return value
    counts, complete = value
    if not complete:
        return None
    counts = dict(counts)
    facet_key = key[1]
    for pid in set(before) | set(after):
        for state, sign in ((before.get(pid), -1), (after.get(pid), 1)):
            under = _under(where, pid, state)
            if under is None:
                return None
            if not under:
                continue
            values = set(_values(state.payload, facet_key))
            if any(not isinstance(v, str) for v in values):
                return None  # facets here are on keyword keys; anything else is asked again
            for v in values:
                counts[v] = counts.get(v, 0) + sign
    counts = {v: n for v, n in counts.items() if n > 0}
    return (counts, True) if len(counts) < ProductIndex.FACET_VALUES else None  # else: not whole any more
