"""The serving app's configuration as typed values: what the code reads instead of
`settings.SEARCH_*` and `settings.QDRANT_*`. The settings module parses the environment once
(shop_search/env.py); this reads the parsed settings into one frozen object per process, made
again when a setting changes (Django's setting_changed: tests, override_settings)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class SearchConfig:
    # the model and where it runs
    embedding_model: str  # SEARCH_EMBEDDING_MODEL: hub id or local folder
    device: str  # SEARCH_DEVICE: auto | cpu | cuda | cuda:1 | mps
    encode_batch_size: int  # SEARCH_ENCODE_BATCH_SIZE
    serve_torch_threads: int  # SEARCH_SERVE_TORCH_THREADS (0: torch's default)
    # indexing
    index_batch_size: int  # SEARCH_INDEX_BATCH_SIZE
    decode_threads: int  # SEARCH_DECODE_THREADS (0: one per core)
    decode_ahead: int | None  # SEARCH_DECODE_AHEAD (None: auto)
    sweep_grace_seconds: float  # SEARCH_SWEEP_GRACE_SECONDS
    embedded_sweep_seconds: float  # SEARCH_EMBEDDED_SWEEP_SECONDS
    queue_redelivery_seconds: float  # SEARCH_QUEUE_REDELIVERY_SECONDS
    # the vector store
    qdrant_url: str  # QDRANT_URL ("": embedded; ":memory:" stands in for a server in tests)
    qdrant_api_key: str | None  # QDRANT_API_KEY
    qdrant_path: str  # QDRANT_PATH (":memory:": tests)
    collection: str  # SEARCH_COLLECTION
    vector_engine: str  # SEARCH_VECTOR_ENGINE: edge | local
    qdrant_shard_number: int  # QDRANT_SHARD_NUMBER
    qdrant_replication_factor: int  # QDRANT_REPLICATION_FACTOR
    qdrant_write_consistency_factor: int  # QDRANT_WRITE_CONSISTENCY_FACTOR
    # ranking
    strategy: str  # SEARCH_STRATEGY
    fusion_weights: str  # SEARCH_FUSION_WEIGHTS (fusion.weights_parse reads it)
    fusion_calibration: str  # SEARCH_FUSION_CALIBRATION: auto | off | a file
    candidates: int  # SEARCH_CANDIDATES
    cutoff_quantile: float  # SEARCH_CUTOFF_QUANTILE
    relevance_threshold: float  # SEARCH_RELEVANCE_THRESHOLD (0: off)
    max_matches: int  # SEARCH_MAX_MATCHES
    facet_attributes: str  # SEARCH_FACET_ATTRIBUTES
    query_filters: bool  # SEARCH_QUERY_FILTERS
    swap_probability: float  # SEARCH_SWAP_PROBABILITY
    vocabulary_seconds: float  # SEARCH_VOCABULARY_SECONDS
    # the log, photos, limits
    log_hash_key: str  # SEARCH_LOG_HASH_KEY ("": SECRET_KEY)
    log_deferred: bool  # SEARCH_LOG_DEFERRED
    click_window_seconds: float  # SEARCH_CLICK_WINDOW_SECONDS
    settle_seconds: float  # SEARCH_SETTLE_SECONDS
    photo_pixels: int  # SEARCH_PHOTO_PIXELS
    photo_max_pixels: int  # SEARCH_PHOTO_MAX_PIXELS
    photo_days: float  # SEARCH_PHOTO_DAYS
    rate_limits: str  # SEARCH_RATE_LIMITS

    @classmethod
    def from_settings(cls) -> SearchConfig:
        """Each field from the setting its comment names."""
        return cls(**{field.name: getattr(settings, _setting_name(field.name)) for field in dataclasses.fields(cls)})


def _setting_name(field_name: str) -> str:
    return field_name.upper() if field_name.startswith("qdrant_") else f"SEARCH_{field_name.upper()}"


@functools.lru_cache(maxsize=1)
def search_config() -> SearchConfig:
    """This process's configuration (made once; again after a setting changes)."""
    return SearchConfig.from_settings()


@receiver(setting_changed, dispatch_uid="search.config_forget")
def _config_forget(setting: str, **kwargs) -> None:
    if setting.startswith(("SEARCH_", "QDRANT_")):
        search_config.cache_clear()


__all__ = ["SearchConfig", "search_config"]
