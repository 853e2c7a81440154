"""The vector index behind one interface (ProductIndex), whatever engine holds it:
`server` (a Qdrant server or cluster through qdrant-client) and `edge` (Qdrant Edge, Qdrant's
engine inside this process, storing in a folder). `types` holds what they share, `retrieving`
the search's retrieval over them, `memo` the counts and facets remembered between writes."""

from .base import ProductIndex
from .types import (
    CANDIDATE_PAYLOAD,
    PAYLOAD_INDEXES,
    SERVER_RANKINGS,
    VECTOR_NAMES,
    Hit,
    IndexBusyError,
    IndexSchemaError,
    IndexStoreFullError,
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

__all__ = [
    "CANDIDATE_PAYLOAD",
    "PAYLOAD_INDEXES",
    "SERVER_RANKINGS",
    "VECTOR_NAMES",
    "Hit",
    "IndexBusyError",
    "IndexSchemaError",
    "IndexStoreFullError",
    "IndexTransientError",
    "IndexUnavailableError",
    "Leg",
    "Matches",
    "ProductIndex",
    "ProductPoint",
    "Request",
    "Retrieval",
    "StoredPoint",
    "Where",
    "average_vector",
    "plain_vector",
]
