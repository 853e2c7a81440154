"""Lazily built, once-per-process heavy clients; the only reader of the ML settings.

Nothing here runs at import time or in AppConfig.ready(): `migrate` must not load a model,
and Celery's prefork workers must build their own clients after the fork.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import math
import os
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from qdrant_client import QdrantClient

from search.retrieval.config import search_config

from .cutoff import Cutoff, cutoff_calibrate, null_queries
from .encoders import Encoder, load_encoder
from .fusion import weights_parse
from .keywords import KeywordEncoder
from .vector_store import IndexBusyError, IndexTransientError, IndexUnavailableError, ProductIndex
from .vector_store.edge import EdgeIndex
from .vector_store.server import QdrantServerIndex, alias_point, alias_target, server_transient

if TYPE_CHECKING:
    from PIL import Image

VECTOR_ENGINES = ("local", "edge")  # SEARCH_VECTOR_ENGINE's choices
logger = logging.getLogger(__name__)
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
    return load_encoder(
        search_config().embedding_model, device=search_config().device, batch_size=search_config().encode_batch_size
    )


@_built_once
def get_keyword_encoder() -> KeywordEncoder:
    """The keyword leg's BM25 (Qdrant's own, run here for either engine)."""
    return KeywordEncoder()


def serving_threads_apply() -> int:
    """Set torch's thread count for a web server process (SEARCH_SERVE_TORCH_THREADS; 0 keeps
    torch's default); returns the count in force. Called by the WSGI entry point."""
    import torch

    if search_config().serve_torch_threads > 0:
        torch.set_num_threads(search_config().serve_torch_threads)
    return torch.get_num_threads()


def serving_warm_start() -> threading.Thread:
    """Load the model, open the store and measure the relevance cutoff in the background (a web
    server at start-up): the first shopper's search would otherwise wait for all three (5.7 s
    for CLIP on a CPU). A failure is logged; the search itself then says what is wrong."""

    def warm() -> None:
        try:
            model_id = serving_model_id()
            query_vector(model_id, "warm up")
            relevance_cutoff(model_id)
        except Exception as exc:  # the search reports it to the shopper and the log, with the fix
            logger.warning("Warming up search failed: %s", exc)

    thread = threading.Thread(target=warm, name="search-warm", daemon=True)
    thread.start()
    return thread


def fusion_weights() -> dict[str, float]:
    """SEARCH_FUSION_WEIGHTS as a mapping (validated at start-up by the search.E002 check)."""
    return weights_parse(search_config().fusion_weights)


def embedding_model_id() -> str:
    """The configured model id, without loading the model."""
    return search_config().embedding_model


@_built_once
def _previous_encoder() -> Encoder:
    """The model the serving store was built with, while the store of the configured model is
    still being filled (a model switch); loaded on the first query that needs it."""
    return load_encoder(serving_model_id(), device=search_config().device, batch_size=1)


def query_encoder(model_id: str | None = None) -> Encoder:
    """The encoder for queries against vectors of `model_id` (default: the serving store's)."""
    model_id = model_id or serving_model_id()
    encoder = get_encoder()
    if model_id in (encoder.model_id, search_config().embedding_model):
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


# photo key -> its image-tower embedding, per model: filters, sorts and pages of one photo
# search embed the photo once
_photo_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_photo_lock = threading.Lock()
PHOTO_VECTORS = 256


def photo_vector(model_id: str, key: str, load: Callable[[], Image.Image]) -> np.ndarray:
    """Image-tower embedding of the shopper's photo `key` (read by `load` on first use) by the
    model `model_id`; the same photo searched again skips the model."""
    with _photo_lock:
        vector = _photo_vectors.get((model_id, key))
        if vector is not None:
            _photo_vectors.move_to_end((model_id, key))
            return vector
    vector = query_encoder(model_id).encode_images([load()])[0]
    vector.setflags(write=False)
    with _photo_lock:
        _photo_vectors[(model_id, key)] = vector
        while len(_photo_vectors) > PHOTO_VECTORS:
            _photo_vectors.popitem(last=False)
    return vector


# the cutoff measured for (model, store, catalog size within 5%), when it was measured and when
# that key was last checked
_cutoff: dict = {"key": None, "value": None, "at": -1e9, "measured": -1e9, "index": lambda: None}
_cutoff_lock = threading.Lock()
CUTOFF_LOOK_SECONDS = 5.0
# measured again at least this often: the catalog's content changes without changing its size
CUTOFF_MAX_AGE_SECONDS = 600.0
# the catalog's size in steps of this ratio: a store filling up (after a rebuild, an import) is
# measured again as it grows, never judged by what it held when nearly empty
CUTOFF_SIZE_STEP = 1.05


def relevance_cutoff(model_id: str | None = None) -> Cutoff:
    """From which cosine a product matches a text query of the serving model, measured on the
    serving store (cutoff.py): again when the model or store changes, when the catalog grows
    or shrinks by 5% (looked at every CUTOFF_LOOK_SECONDS at most), and every
    CUTOFF_MAX_AGE_SECONDS. One measured on an empty store is never kept: it has no threshold, and
    with the first products in, everything would match."""
    model_id = model_id or serving_model_id()
    index = get_product_index()
    now = time.monotonic()
    with _cutoff_lock:
        key, value, at, measured = _cutoff["key"], _cutoff["value"], _cutoff["at"], _cutoff["measured"]
        measured_on = _cutoff["index"]()
    # the store it was measured on, itself: an id() of a closed store is reused by the next one
    fresh = value is not None and now - measured < CUTOFF_MAX_AGE_SECONDS and measured_on is index
    if fresh and key[0] == model_id and now - at < CUTOFF_LOOK_SECONDS:
        return value
    count = index.count()
    size = round(math.log(max(count, 1)) / math.log(CUTOFF_SIZE_STEP))
    if fresh and key == (model_id, size):
        with _cutoff_lock:
            _cutoff["at"] = now
        return value
    vectors = _null_vectors(model_id)
    value = cutoff_calibrate(query_encoder(model_id), index, quantile=search_config().cutoff_quantile, vectors=vectors)
    if count:
        with _cutoff_lock:
            _cutoff.update(key=(model_id, size), value=value, at=now, measured=now, index=weakref.ref(index))
    return value


@functools.lru_cache(maxsize=4)
def _null_vectors(model_id: str) -> tuple:
    """The made-up queries' embeddings by this model: the same every time, so embedded once."""
    return tuple(query_encoder(model_id).encode_texts(null_queries()))


def cutoff_forget() -> None:
    """Measure the cutoff again at the next search (after re-embedding the catalog)."""
    with _cutoff_lock:
        _cutoff.update(key=None, value=None, at=-1e9, measured=-1e9, index=lambda: None)
    _null_vectors.cache_clear()


def qdrant_layout() -> dict[str, int]:
    """How a new collection is spread over a Qdrant cluster (QDRANT_SHARD_NUMBER and co.)."""
    return {
        "shard_number": search_config().qdrant_shard_number,
        "replication_factor": search_config().qdrant_replication_factor,
        "write_consistency_factor": search_config().qdrant_write_consistency_factor,
    }


# Which engine holds the vectors, decided here only:
# - "server": a Qdrant server or cluster at QDRANT_URL, shared by every process (the real stack);
#   QDRANT_URL=":memory:" is qdrant-client's in-memory mode standing in for one (tests): the
#   same multi-writer code (no remembered counts, payload indexes, the alias looked up again);
# - "memory": qdrant-client in memory, this process its only writer (QDRANT_PATH=":memory:", tests);
# - "edge": Qdrant Edge in QDRANT_PATH (the embedded default); "local": qdrant-client's local
#   mode in QDRANT_PATH (SEARCH_VECTOR_ENGINE=local).
ENGINES = ("server", "memory", "edge", "local")


def vector_engine() -> str:
    """Which engine holds the vectors (ENGINES): the one place that decides it."""
    if search_config().qdrant_url:
        return "server"
    if search_config().qdrant_path == ":memory:":
        return "memory"
    return search_config().vector_engine


def shared_store() -> bool:
    """Other processes write the store too (a server): what this process knows of it is looked
    at again, and nothing is remembered between writes."""
    return vector_engine() == "server"


@_built_once
def get_qdrant_client() -> QdrantClient:
    if search_config().qdrant_url == ":memory:" or vector_engine() == "memory":
        return QdrantClient(location=":memory:")
    if vector_engine() == "server":
        return QdrantClient(url=search_config().qdrant_url, api_key=search_config().qdrant_api_key, timeout=30)
    client = QdrantClient(path=search_config().qdrant_path)
    # Close while the interpreter is intact: local mode flushes and releases its lock file.
    atexit.register(client.close)
    return client


@_built_once
def get_product_index() -> ProductIndex:
    """QDRANT_URL: that server. Else, embedded: Qdrant Edge in QDRANT_PATH/<collection>, or
    qdrant-client's local mode at QDRANT_PATH with SEARCH_VECTOR_ENGINE=local (":memory:" is
    the tests' in-memory stand-in for a server)."""
    if vector_engine() != "edge":
        try:
            client = get_qdrant_client()
        except (RuntimeError, OSError, ValueError) as exc:  # local mode: locked or unreadable folder
            if "already accessed by another instance" in str(exc):
                raise IndexBusyError(
                    f"The vector index at {search_config().qdrant_path} is open in another process."
                ) from exc
            raise IndexUnavailableError(
                f"The vector index at {search_config().qdrant_path} cannot be opened ({exc})."
            ) from exc
        # the collection the alias SEARCH_COLLECTION points at (after a model switch), else the
        # collection of that name: queries go to it by its own name, so a switch made by another
        # process reaches this one at its next look (_serving_look), never halfway
        return QdrantServerIndex(client, _serving_collection(client), local=not shared_store(), layout=qdrant_layout())
    index = EdgeIndex(Path(search_config().qdrant_path) / _serving_folder())
    # Close while the interpreter is intact: Edge flushes and releases its write-ahead log.
    atexit.register(index.close)
    return index


# --- switching models ----------------------------------------------------------------
# A new model fills a store of its own, named <collection>-<model hash>, while the old one keeps
# answering; then the serving store changes in one atomic step and the old one is deleted.
# Qdrant Edge: the serving folder is QDRANT_PATH/<collection> until a switch, then the one named
# in QDRANT_PATH/<collection>.serving (an atomic rename). A Qdrant server: the collection alias
# <collection> (an atomic alias swap).

# Another process (a worker) may switch a server: each process looks again this often.
SERVING_LOOK_SECONDS = 5.0
_serving_seen: dict = {"at": -1e9, "model": None}


def _pointer() -> Path:
    return Path(search_config().qdrant_path) / f"{search_config().collection}.serving"


def _serving_folder() -> str:
    try:
        return _pointer().read_text(encoding="utf-8").strip() or search_config().collection
    except FileNotFoundError:
        return search_config().collection


def _serving_collection(client: QdrantClient) -> str:
    try:
        return alias_target(client, search_config().collection) or search_config().collection
    except Exception as exc:
        if server_transient(exc):  # not now: the store itself may well be sound
            raise IndexTransientError(
                f"The Qdrant server at {search_config().qdrant_url} did not answer ({exc}); try again in a moment."
            ) from exc
        raise


def _serving_look() -> str | None:
    """A shared server: which collection serves and whose vectors it holds, looked up at most
    every SERVING_LOOK_SECONDS (two round trips) instead of on every search."""
    now = time.monotonic()
    if now - _serving_seen["at"] >= SERVING_LOOK_SECONDS:
        target = _serving_collection(get_qdrant_client())
        if get_product_index().collection != target:  # type: ignore[attr-defined]
            serving_forget()
        _serving_seen.update(at=now, model=get_product_index().stored_model())
    return _serving_seen["model"]


def serving_model_id() -> str:
    """The model whose vectors the serving store holds; the configured model when it is empty."""
    current = embedding_model_id()  # never the loaded encoder's: browsing needs no model
    if shared_store():
        return _serving_look() or current
    # the embedded engines see every write: the answer is exact, and remembered until the next
    return get_product_index().stored_model() or current


def model_switching() -> bool:
    """The serving store holds another model's vectors than the configured model's."""
    return serving_model_id() != embedding_model_id()


@_built_once
def get_next_index() -> ProductIndex:
    """The store being filled for the configured model during a switch."""
    name = f"{search_config().collection}-{hashlib.sha256(embedding_model_id().encode('utf-8')).hexdigest()[:12]}"
    if vector_engine() != "edge":
        return QdrantServerIndex(get_qdrant_client(), name, local=not shared_store(), layout=qdrant_layout())
    index = EdgeIndex(Path(search_config().qdrant_path) / name)
    atexit.register(index.close)
    return index


def indexing_index() -> ProductIndex:
    """Where indexing writes: the serving store, or during a switch the new model's store."""
    return get_next_index() if model_switching() else get_product_index()


def serving_forget() -> None:
    """New callers get the current serving store (the handles are not closed: queries may run)."""
    get_product_index.cache_clear()
    get_next_index.cache_clear()
    _previous_encoder.cache_clear()
    _serving_seen["at"] = -1e9


def serving_switch(*, grace_seconds: float | None = None) -> str:
    """Serve the completed store of the configured model in one atomic step, let queries
    already running on the old store finish (on a server, until every process has looked
    again), then delete the old store. Returns the old store's name."""
    new, old = get_next_index(), get_product_index()
    if isinstance(new, EdgeIndex) and isinstance(old, EdgeIndex):
        pointer, staging = _pointer(), _pointer().with_suffix(".tmp")
        staging.write_text(new.path.name, encoding="utf-8")
        os.replace(staging, pointer)
        serving_forget()
        new.close()
        time.sleep(1.0 if grace_seconds is None else grace_seconds)
        old.close()
        shutil.rmtree(old.path, ignore_errors=True)
        return old.path.name
    client = get_qdrant_client()
    old_name = old.collection  # type: ignore[attr-defined]
    alias_point(client, search_config().collection, new.collection)  # type: ignore[attr-defined]
    serving_forget()
    if old_name != search_config().collection:  # a collection of that name went with alias_point
        if grace_seconds is None:
            grace_seconds = SERVING_LOOK_SECONDS + 1 if shared_store() else 1.0
        time.sleep(grace_seconds)
        client.delete_collection(old_name)
    return old_name


def reset(*, encoder: bool = True) -> None:
    """Forget the cached clients and query vectors (tests, or after changing settings);
    `encoder=False` keeps the loaded model, the slow part to rebuild."""
    if encoder:
        get_encoder.cache_clear()
    _previous_encoder.cache_clear()
    _serving_seen["at"] = -1e9
    cutoff_forget()
    for cached in (get_product_index, get_next_index, get_qdrant_client):
        if cached.cache_info().currsize:
            try:
                cached().close()
            except Exception:  # closing a half-broken index or client must not mask the reset
                pass
        cached.cache_clear()
    query_vector.cache_clear()
    with _photo_lock:
        _photo_vectors.clear()
