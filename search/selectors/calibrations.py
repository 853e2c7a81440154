"""The fusion calibration a word search ranks with: the serving model's row in the database
(SEARCH_FUSION_CALIBRATION=auto), a file named by the setting, or none ("off")."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from search.retrieval.config import search_config

from ..models import FusionCalibration, RelevanceFit
from ..retrieval.fusion import Calibration
from ..retrieval.providers import embedding_model_id
from ..retrieval.relevance import RelevanceModel

logger = logging.getLogger(__name__)

DATABASE = "the database"
# Each process looks at the database's row at most this often: another process's fit (the
# command, a worker) reaches every web process within it.
LOOK_SECONDS = 5.0
# model id -> (when looked, the row's updated_at, the calibration)
_seen: dict[str, tuple[float, object, Calibration | None]] = {}
# file path -> (its mtime, the calibration)
_files: dict[Path, tuple[float, Calibration | None]] = {}
_lock = threading.Lock()


def calibration_source() -> str | None:
    """Where calibrations are kept: DATABASE, a file's path, or None when off."""
    setting = search_config().fusion_calibration
    if setting == "off":
        return None
    return DATABASE if setting == "auto" else str(Path(setting))


def fusion_calibration(model_id: str | None = None) -> Calibration | None:
    """The fitted calibration of this model (default: the configured one); None without one, or
    when it cannot be applied (logged once per version): the search then fuses with
    SEARCH_FUSION_WEIGHTS."""
    source = calibration_source()
    if source is None:
        return None
    if source != DATABASE:
        return _from_file(Path(source))
    model_id = model_id or embedding_model_id()
    rows = FusionCalibration.objects.filter(model_id=model_id).values_list("updated_at", "coefficients")
    return _looked(_seen, model_id, rows, lambda data: _parsed(data, f"of {model_id} in the database"))


def _looked(seen_by_model: dict, model_id: str, rows, parse):
    """A model's row (updated_at, data) read at most every LOOK_SECONDS and parsed again only
    when it changed; None without one."""
    now = time.monotonic()
    with _lock:
        seen = seen_by_model.get(model_id)
    if seen is not None and now - seen[0] < LOOK_SECONDS:
        return seen[2]
    row = rows.first()
    version = row[0] if row else None
    value = seen[2] if seen is not None and seen[1] == version else (parse(row[1]) if row and row[1] else None)
    with _lock:
        seen_by_model[model_id] = (now, version, value)
    return value


def calibration_forget() -> None:
    """Read the calibrations afresh at the next search (after this process saved one)."""
    with _lock:
        _seen.clear()
        _files.clear()
        _relevance_seen.clear()


# model id -> (when looked, the row's updated_at, the model)
_relevance_seen: dict[str, tuple[float, object, RelevanceModel | None]] = {}


def relevance_model(model_id: str | None = None) -> RelevanceModel | None:
    """The relevance model fitted from the catalog for this model (services.relevance), looked
    up at most every LOOK_SECONDS; None until one is fitted (the search then matches every
    product above the cutoff, as before) or when it cannot be applied."""
    model_id = model_id or embedding_model_id()
    rows = RelevanceFit.objects.filter(model_id=model_id).values_list("updated_at", "fitted")
    return _looked(_relevance_seen, model_id, rows, lambda data: _relevance_parsed(data, model_id))


def _relevance_parsed(data: object, model_id: str) -> RelevanceModel | None:
    try:
        return RelevanceModel.from_dict(data)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError) as exc:
        logger.warning("The relevance model of %s is not used (%s)", model_id, exc)
        return None


def _from_file(path: Path) -> Calibration | None:
    try:
        changed = path.stat().st_mtime
    except OSError:
        return None
    seen = _files.get(path)
    if seen is not None and seen[0] == changed:
        return seen[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("The fusion calibration %s is not used (%s); fusing with SEARCH_FUSION_WEIGHTS", path, exc)
        data = None
    calibration = _parsed(data, str(path)) if data is not None else None
    _files[path] = (changed, calibration)
    return calibration


def _parsed(data: object, where: str) -> Calibration | None:
    try:
        return Calibration.from_dict(data)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError) as exc:
        logger.warning("The fusion calibration %s is not used (%s); fusing with SEARCH_FUSION_WEIGHTS", where, exc)
        return None


__all__ = ["DATABASE", "calibration_forget", "calibration_source", "fusion_calibration", "relevance_model"]
