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
    now = time.monotonic()
    with _lock:
        seen = _seen.get(model_id)
    if seen is not None and now - seen[0] < LOOK_SECONDS:
        return seen[2]
    row = FusionCalibration.objects.filter(model_id=model_id).values_list("updated_at", "coefficients").first()
    version = row[0] if row else None
    if seen is not None and seen[1] == version:
        calibration = seen[2]
    else:
        calibration = _parsed(row[1], f"of {model_id} in the database") if row else None
    with _lock:
        _seen[model_id] = (now, version, calibration)
    return calibration


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
    now = time.monotonic()
    with _lock:
        seen = _relevance_seen.get(model_id)
    if seen is not None and now - seen[0] < LOOK_SECONDS:
        return seen[2]
    row = RelevanceFit.objects.filter(model_id=model_id).values_list("updated_at", "fitted").first()
    version = row[0] if row else None
    if seen is not None and seen[1] == version:
        model = seen[2]
    else:
        model = None
        if row and row[1]:
            try:
                model = RelevanceModel.from_dict(row[1])
            except ValueError as exc:
                logger.warning("The relevance model of %s is not used (%s)", model_id, exc)
    with _lock:
        _relevance_seen[model_id] = (now, version, model)
    return model


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
