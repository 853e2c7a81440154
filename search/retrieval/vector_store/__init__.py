"""The vector index behind one interface (ProductIndex), whatever engine holds it:
`server` (a Qdrant server or cluster through qdrant-client) and `edge` (Qdrant Edge, Qdrant's
engine inside this process, storing in a folder)."""
from .base import (
    CANDIDATE_PAYLOAD,
    PAYLOAD_INDEXES,
    SERVER_RANKINGS,
    VECTOR_NAMES,
    Hit,
    Leg,
    Matches,
    IndexBusyError,
    IndexSchemaError,
    IndexTransientError,
    IndexUnavailableError,
    ProductIndex,
    ProductPoint,
    Retrieval,
    StoredPoint,
    Where,
    average_vector,
)

__all__ = ["CANDIDATE_PAYLOAD", "PAYLOAD_INDEXES", "SERVER_RANKINGS", "VECTOR_NAMES", "Hit", "Leg", "Matches", "IndexBusyError", "IndexSchemaError",
           "IndexTransientError", "IndexUnavailableError",
           "ProductIndex", "ProductPoint", "Retrieval", "StoredPoint", "Where", "average_vector"]
