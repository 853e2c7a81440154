"""Lazily built, once-per-process heavy clients; the only reader of the ML settings.

Nothing here runs at import time or in AppConfig.ready(): `migrate` must not load a model,
and Celery's prefork workers must build their own clients after the fork.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from django.conf import settings
from qdrant_client import QdrantClient

from .encoders import Encoder, load_encoder
from .fusion import weights_parse
from .vector_store import IndexBusyError, IndexUnavailableError, ProductIndex
from .vector_store.edge import EdgeIndex
from .vector_store.server import QdrantServerIndex

VECTOR_ENGINES = ("local", "edge")
T = TypeVar("T")


def _built_once(build: Callable[[], T]) -> Callable[[], T]:
    """lru_cache(maxsize=1) whose first call runs once even when threads race for it (a request
    and the embedded sweep, say): a second model load wastes memory and trips transformers'
    lazy imports, which are not thread-safe, and a second Edge handle on the same folder in the
    same process is refused. Keeps lru_cache's cache_clear and cache_info."""
    cached = lru_cache(maxsize=1)(build)
    lock = threading.RLock()

    @functools.wraps(build)
    def get() -> T:
        with lock:
            return cached()

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    get.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return get


@_built_once
def get_encoder() -> Encoder:
    return load_encoder(settings.SEARCH_EMBEDDING_MODEL, device=settings.SEARCH_DEVICE,
                        batch_size=settings.SEARCH_ENCODE_BATCH_SIZE)


def serving_threads_apply() -> int:
    """Set torch's thread count for a web server process (SEARCH_SERVE_TORCH_THREADS; 0 keeps
    torch's default); returns the count in force. Called by the WSGI entry point."""
    import torch

    if settings.SEARCH_SERVE_TORCH_THREADS > 0:
        torch.set_num_threads(settings.SEARCH_SERVE_TORCH_THREADS)
    return torch.get_num_threads()


def fusion_weights() -> dict[str, float]:
    """SEARCH_FUSION_WEIGHTS as a mapping (validated at start-up by the search.E002 check)."""
    return weights_parse(settings.SEARCH_FUSION_WEIGHTS)


def embedding_model_id() -> str:
    """The configured model id, without loading the model."""
    return settings.SEARCH_EMBEDDING_MODEL


@_built_once
def _previous_encoder() -> Encoder:
    """The model the serving store was built with, while the store of the configured model is
    still being filled (a model switch); loaded on the first query that needs it."""
    return load_encoder(serving_model_id(), device=settings.SEARCH_DEVICE, batch_size=1)


def query_encoder(model_id: str | None = None) -> Encoder:
    """The encoder for queries against vectors of `model_id` (default: the serving store's)."""
    model_id = model_id or serving_model_id()
    encoder = get_encoder()
    if model_id in (encoder.model_id, settings.SEARCH_EMBEDDING_MODEL):
        return encoder
    previous = _previous_encoder()
    if previous.model_id != model_id:  # the store moved on since it was loaded
        _previous_encoder.cache_clear()
        previous = _previous_encoder()
    return previous


@lru_cache(maxsize=1024)
def query_vector(model_id: str, query: str) -> np.ndarray:
    """Text-tower embedding of a query by the model `model_id` (the configured one, or the one
    still serving during a switch); repeated queries skip the model. Keyed by model id, so a
    changed model never answers with another model's vectors."""
    vector = query_encoder(model_id).encode_texts([query])[0]
    vector.setflags(write=False)  # shared between callers through the cache
    return vector


@_built_once
def get_qdrant_client() -> QdrantClient:
    if settings.QDRANT_URL:
        return QdrantClient(url=settings.QDRANT_URL, api_key=settings.QDRANT_API_KEY, timeout=30)
    if settings.QDRANT_PATH == ":memory:":
        return QdrantClient(location=":memory:")
    client = QdrantClient(path=settings.QDRANT_PATH)
    # Close while the interpreter is intact: local mode flushes and releases its lock file.
    atexit.register(client.close)
    return client


@_built_once
def get_product_index() -> ProductIndex:
    """QDRANT_URL: that server. Else, embedded: Qdrant Edge in QDRANT_PATH/<collection>, or
    qdrant-client's local mode at QDRANT_PATH with SEARCH_VECTOR_ENGINE=local (":memory:" is
    the tests' in-memory stand-in for a server)."""
    if settings.QDRANT_URL or settings.QDRANT_PATH == ":memory:" or settings.SEARCH_VECTOR_ENGINE != "edge":
        try:
            client = get_qdrant_client()
        except (RuntimeError, OSError, ValueError) as exc:  # local mode: locked or unreadable folder
            if "already accessed by another instance" in str(exc):
                raise IndexBusyError(f"The vector index at {settings.QDRANT_PATH} is open in another process.") from exc
            raise IndexUnavailableError(f"The vector index at {settings.QDRANT_PATH} cannot be opened ({exc}).") from exc
        return QdrantServerIndex(client, settings.SEARCH_COLLECTION, local=not settings.QDRANT_URL)
    index = EdgeIndex(Path(settings.QDRANT_PATH) / _serving_folder())
    # Close while the interpreter is intact: Edge flushes and releases its write-ahead log.
    atexit.register(index.close)
    return index


# --- switching models (embedded Edge) --------------------------------------------------
# The serving store is QDRANT_PATH/<collection> until a switch, then the folder named in
# QDRANT_PATH/<collection>.serving. A new model fills QDRANT_PATH/<collection>-<model hash>
# while the old store keeps answering; the switch is one atomic rename of the pointer file.

def switches_models() -> bool:
    """Whether this engine fills a second store on a model change (the embedded Qdrant Edge)."""
    return not settings.QDRANT_URL and settings.QDRANT_PATH != ":memory:" and settings.SEARCH_VECTOR_ENGINE == "edge"


def _pointer() -> Path:
    return Path(settings.QDRANT_PATH) / f"{settings.SEARCH_COLLECTION}.serving"


def _serving_folder() -> str:
    try:
        return _pointer().read_text(encoding="utf-8").strip() or settings.SEARCH_COLLECTION
    except FileNotFoundError:
        return settings.SEARCH_COLLECTION


def serving_model_id() -> str:
    """The model whose vectors the serving store holds; the configured model when the store is
    empty, or when the engine does not switch models."""
    current = get_encoder().model_id
    if not switches_models():
        return current
    return get_product_index().stored_model() or current


def model_switching() -> bool:
    """The serving store holds another model's vectors than the configured model's."""
    return switches_models() and serving_model_id() != get_encoder().model_id


@_built_once
def get_next_index() -> ProductIndex:
    """The store being filled for the configured model during a switch."""
    digest = hashlib.sha256(get_encoder().model_id.encode("utf-8")).hexdigest()[:12]
    index = EdgeIndex(Path(settings.QDRANT_PATH) / f"{settings.SEARCH_COLLECTION}-{digest}")
    atexit.register(index.close)
    return index


def indexing_index() -> ProductIndex:
    """Where indexing writes: the serving store, or during a switch the new model's store."""
    return get_next_index() if model_switching() else get_product_index()


def serving_switch(*, grace_seconds: float = 1.0) -> str:
    """Serve the completed store of the configured model: point at it (an atomic rename), let
    queries already running on the old store finish, then close and delete the old store.
    Returns the old store's folder."""
    new, old = get_next_index(), get_product_index()
    old_path = old.path  # type: ignore[attr-defined]
    pointer, staging = _pointer(), _pointer().with_suffix(".tmp")
    staging.write_text(new.path.name, encoding="utf-8")  # type: ignore[attr-defined]
    os.replace(staging, pointer)
    get_product_index.cache_clear()  # new callers open the new store...
    get_next_index.cache_clear()
    _previous_encoder.cache_clear()
    query_vector.cache_clear()
    new.close()
    time.sleep(grace_seconds)  # ...while queries already on the old one finish
    old.close()
    shutil.rmtree(old_path, ignore_errors=True)
    return old_path.name


def reset(*, encoder: bool = True) -> None:
    """Forget the cached clients and query vectors (tests, or after changing settings);
    `encoder=False` keeps the loaded model, the slow part to rebuild."""
    if encoder:
        get_encoder.cache_clear()
    _previous_encoder.cache_clear()
    for cached in (get_product_index, get_next_index):
        if cached.cache_info().currsize:
            try:
                cached().close()
            except Exception:  # closing a half-broken index must not mask the reset
                pass
        cached.cache_clear()
    if get_qdrant_client.cache_info().currsize:
        try:
            get_qdrant_client().close()
        except Exception:  # closing a half-broken client must not mask the reset
            pass
    get_qdrant_client.cache_clear()
    get_product_index.cache_clear()
    query_vector.cache_clear()
