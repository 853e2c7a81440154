"""What every engine behind ProductIndex shares: the store's layout (named vectors, payload
indexes), the errors a caller can act on, and the plain values that go in and come out (points,
filters, requests, what a query finds)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..fusion import Candidate
from ..keywords import Sparse

VECTOR_NAMES = ("text", "image", "avg")
# Payload keys the search filters and facets on: every engine indexes them. `terms` holds the
# hashed keyword terms of the product (which products hold every word of a query), `sku_key`
# its SKU as compared (keywords.sku_key).
PAYLOAD_INDEXES = {
    "category": "keyword",
    "brand": "keyword",
    "price": "float",
    "active": "bool",
    "terms": "integer",
    "sku_key": "keyword",
}
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


class IndexUnavailableError(RuntimeError):
    """The vector index cannot be used (locked, unreadable, or of another model); the message
    says what happened and what rebuilds it. The database still holds every product."""


class IndexBusyError(IndexUnavailableError):
    """Another process holds the embedded index open (one process at a time may): the rows stay
    pending for the process that holds it."""


class IndexStoreFullError(IndexUnavailableError):
    """The embedded store's disk has no room for its files to grow into: nothing is written (the
    rows stay pending) and the message says how much room to make."""


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
    its values, each `any_or_empty` key one of its values or none at all, each range (key, gte,
    lte; None = open) holds, the point has the named vector `has_vector` (if set), its id is one
    of `ids` (if any), and no id in `not_ids` is returned."""

    any_of: tuple[tuple[str, tuple[str, ...]], ...] = ()
    any_or_empty: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    not_ids: tuple[int, ...] = ()
    ids: tuple[int, ...] = ()
    has_vector: str = ""

    def __bool__(self) -> bool:
        return bool(self.any_of or self.any_or_empty or self.ranges or self.not_ids or self.ids or self.has_vector)

    def also(self, **conditions: Any) -> Where:
        """This filter with more conditions: `any_of`, `any_or_empty`, `ranges` and `not_ids` are
        added to, others replaced."""
        for key in ("any_of", "any_or_empty", "ranges", "not_ids"):
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
    prefetch: tuple[Request, ...] = ()
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


def where_both(a: Where | None, b: Where | None) -> Where | None:
    if not b:
        return a
    if not a:
        return b
    return a.also(
        any_of=b.any_of,
        any_or_empty=b.any_or_empty,
        ranges=b.ranges,
        not_ids=b.not_ids,
        **{k: getattr(b, k) for k in ("ids", "has_vector") if getattr(b, k)},
    )


def plain_vector(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(np.asarray(vector, dtype=np.float32).tolist())
