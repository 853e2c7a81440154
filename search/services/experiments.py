"""Starting and stopping online experiments (search.selectors.experiments runs and reports them).

A candidate changes one or more of: the fusion strategy, the fusion weights, the fusion
calibration (a file `calibrate_fusion` could have written, or "off"). A candidate model (its own
store filled beside the serving one) is not supported yet: compare models offline with
`evaluate_search`, and switch with the model switch.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from search.models import Experiment
from search.retrieval.experiments import METHODS
from search.retrieval.fusion import Calibration, weights_format, weights_parse
from search.selectors import STRATEGIES
from search.selectors.experiments import experiment_forget, experiment_report

from .calibrating import calibration_remove, calibration_save


class ExperimentError(ValueError):
    """What is wrong with a start or stop, said so that the data team can fix it."""


def candidate_spec(*, strategy: str | None = None, weights: str | None = None, calibration: str | None = None) -> dict:
    """The candidate as stored on the experiment, each part checked (ExperimentError says what
    to write instead)."""
    candidate: dict = {}
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise ExperimentError(f"--candidate-strategy {strategy!r}: use one of {', '.join(STRATEGIES)}.")
        candidate["strategy"] = strategy
    if weights is not None:
        try:
            candidate["weights"] = weights_parse(weights)
        except ValueError as exc:
            raise ExperimentError(f"--candidate-weights: {exc}") from None
    if calibration is not None:
        candidate["calibration"] = "off" if calibration == "off" else _calibration_file(calibration)
    if not candidate:
        raise ExperimentError(
            "Say what the candidate changes: --candidate-strategy, --candidate-weights or --candidate-calibration."
        )
    return candidate


def _calibration_file(path: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ExperimentError(f"--candidate-calibration {path}: cannot read it ({reason}).") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ExperimentError(
            f"--candidate-calibration {path}: not JSON; give a fusion calibration as calibrate_fusion writes one "
            "(SEARCH_FUSION_CALIBRATION=FILE), or off."
        ) from None
    try:
        return Calibration.from_dict(data).as_dict()
    except ValueError as exc:
        raise ExperimentError(f"--candidate-calibration {path}: {exc}.") from None


def experiment_start(*, name: str, method: str, candidate: dict) -> Experiment:
    """Start an experiment: every serving process takes it up within LOOK_SECONDS."""
    if method not in METHODS:
        raise ExperimentError(f"--method {method!r}: use one of {', '.join(METHODS)}.")
    if not name or slugify(name) != name or len(name) > 64:
        raise ExperimentError(
            f"{name[:80]!r} is not a usable name: use at most 64 lower-case letters, digits, - and _ "
            "(such as rrf-vs-normalized)."
        )
    existing = Experiment.objects.filter(name=name).first()
    if existing is not None:
        raise ExperimentError(f"An experiment named {name!r} exists already ({existing.status}); choose another name.")
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING).first()
    if running is not None:
        raise ExperimentError(
            f"Experiment {running.name!r} is running; stop it first (manage.py experiment stop {running.name})."
        )
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(name=name, method=method, candidate=candidate)
    except IntegrityError:  # another start won the race
        raise ExperimentError("Another experiment was started meanwhile; stop it first.") from None
    experiment_forget()
    return experiment


def experiment_stop(*, name: str, promote: bool = False, force: bool = False) -> tuple[Experiment, list[str]]:
    """Stop an experiment; `promote`: make the candidate serve, if the report says it won
    (`force`: whatever the report says). Returns the experiment and what was done or is left
    to do by hand."""
    experiment = Experiment.objects.filter(name=name).first()
    if experiment is None:
        raise ExperimentError(f"There is no experiment named {name!r} (manage.py experiment list).")
    if force and not promote:
        raise ExperimentError("--force only goes with --promote (it promotes a candidate that has not won).")
    said: list[str] = []
    if experiment.status == Experiment.Status.STOPPED:
        said.append(f"{name} was already stopped on {timezone.localtime(experiment.stopped_at):%Y-%m-%d %H:%M}.")
    if promote:
        winner = experiment_report(experiment).verdict.winner
        if winner != "candidate" and not force:
            raise ExperimentError(
                f"The candidate has not won (winner: {winner or 'none yet'}); nothing was stopped. "
                "Give --force to promote it anyway."
            )
        if winner != "candidate":
            said.append(f"Promoting a candidate that has not won (winner: {winner or 'none yet'}), as --force asks.")
        said += _promote(experiment.candidate)
        experiment.promoted = True
    if experiment.status == Experiment.Status.RUNNING:
        experiment.status, experiment.stopped_at = Experiment.Status.STOPPED, timezone.now()
        said.insert(0, f"Stopped {name}.")
    experiment.save(update_fields=["status", "stopped_at", "promoted"])
    experiment_forget()
    return experiment, said


def _promote(candidate: dict) -> list[str]:
    """The calibration is kept where every process reads it, in one step; strategy and weights
    are settings of the serving processes, so they are said, not set."""
    said = []
    calibration = candidate.get("calibration")
    if calibration == "off":
        where, _ = calibration_remove()
        said.append(f"Removed the fusion calibration from {where}: searches fuse with SEARCH_FUSION_WEIGHTS.")
    elif calibration is not None:
        where = calibration_save(Calibration.from_dict(calibration))
        said.append(f"Saved the candidate's fusion calibration to {where}: every search uses it within seconds.")
    if "strategy" in candidate:
        said.append(f"Set SEARCH_STRATEGY={candidate['strategy']} and restart the web processes to serve it.")
    if "weights" in candidate:
        # the candidate was fused with these weights alone (product_search's `weights`): to serve
        # what was tested, the relevance model and any calibration go too
        settings = f"SEARCH_FUSION_WEIGHTS={weights_format(candidate['weights'])} SEARCH_RELEVANCE_THRESHOLD=0"
        settings += " SEARCH_FUSION_CALIBRATION=off"
        said.append(
            f"Set {settings} and restart the web processes to serve the candidate's ranking (its weights fused "
            "every match above the cutoff, with no relevance model and no calibration)."
        )
    return said


__all__ = ["ExperimentError", "candidate_spec", "experiment_start", "experiment_stop"]
