from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from search.models import Experiment
from search.retrieval.config import search_config
from search.retrieval.experiments import METHODS
from search.selectors import STRATEGIES
from search.selectors.experiments import (
    ExperimentReport,
    arms_said,
    candidate_said,
    experiment_report,
    verdict_said,
)
from search.services.experiments import ExperimentError, candidate_spec, experiment_start, experiment_stop

MODEL_NOT_YET = (
    "A candidate model is not supported yet: it needs a store of its own, filled beside the serving one. "
    "Compare models offline with evaluate_search, and switch with the model switch (docs/models.md)."
)


class Command(BaseCommand):
    help = (
        "Online experiments between the serving ranking and a candidate: team-draft interleaving or an A/B "
        "split, sticky per shopper session (docs/data-teams.md, Experiments)."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="start|report|stop|list")
        start = actions.add_parser("start", help="start an experiment (at most one runs)")
        start.add_argument("name", help="at most 64 lower-case letters, digits, - and _")
        start.add_argument("--method", required=True, choices=METHODS)
        start.add_argument("--candidate-strategy", metavar="S", help=f"one of {', '.join(STRATEGIES)}")
        start.add_argument("--candidate-weights", metavar="SPEC", help="such as text=1,image=0.5")
        start.add_argument("--candidate-calibration", metavar="FILE|off", help="a fusion calibration file, or off")
        start.add_argument("--candidate-model", metavar="ID_OR_DIR", help="not supported yet (says why)")
        report = actions.add_parser("report", help="sessions, clicks and the verdict so far")
        report.add_argument("name")
        report.add_argument("--json", action="store_true")
        stop = actions.add_parser("stop", help="stop an experiment; --promote makes a winning candidate serve")
        stop.add_argument("name")
        stop.add_argument("--promote", action="store_true")
        stop.add_argument("--force", action="store_true", help="with --promote: even if the candidate has not won")
        actions.add_parser("list", help="every experiment, newest first")

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except ExperimentError as exc:
            raise CommandError(str(exc)) from None

    def _start(self, *, name, method, candidate_strategy, candidate_weights, candidate_calibration, **options):
        if options["candidate_model"]:
            raise CommandError(MODEL_NOT_YET)
        candidate = candidate_spec(
            strategy=candidate_strategy, weights=candidate_weights, calibration=candidate_calibration
        )
        experiment = experiment_start(name=name, method=method, candidate=candidate)
        self.stdout.write(
            f"Started {experiment.name} ({experiment.get_method_display()}): candidate {candidate_said(candidate)}. "
            "Serving processes take it up within seconds."
        )
        if candidate == {"strategy": search_config().strategy}:
            self.stdout.write(
                "The candidate ranks as the serving configuration does: this is an A/A test (it should name no winner)."
            )

    def _report(self, *, name, **options):
        report = experiment_report(_get(name))
        self.stdout.write(json.dumps(report.as_dict(), indent=2) if options["json"] else _text(report))

    def _stop(self, *, name, promote, force, **options):
        _, said = experiment_stop(name=name, promote=promote, force=force)
        for line in said:
            self.stdout.write(line)

    def _list(self, **options):
        experiments = list(Experiment.objects.all())
        if not experiments:
            self.stdout.write("No experiments yet (manage.py experiment start NAME --method interleave ...).")
            return
        self.stdout.write("name\tmethod\tstatus\tstarted\tcandidate\twinner\tpromoted")
        for e in experiments:
            winner = experiment_report(e).verdict.winner or ("none yet" if e.status == "running" else "none")
            self.stdout.write(
                f"{e.name}\t{e.method}\t{e.status}\t{e.started_at:%Y-%m-%d %H:%M}\t{candidate_said(e.candidate)}\t"
                f"{winner}\t{'yes' if e.promoted else 'no'}"
            )


def _get(name: str) -> Experiment:
    experiment = Experiment.objects.filter(name=name).first()
    if experiment is None:
        raise CommandError(f"There is no experiment named {name!r} (manage.py experiment list).")
    return experiment


def _text(report: ExperimentReport) -> str:
    e, v = report.experiment, report.verdict
    lines = [
        f"{e.name}: {e.get_method_display()}, {e.status}, candidate {candidate_said(e.candidate)}",
        f"sessions {v.sessions}, searches {report.searches}, clicks {report.clicks}",
        verdict_said(e, v),
    ]
    lines += [f"  {said}" for said in arms_said(report)]
    if e.failures:
        lines.append(f"The candidate failed {e.failures} times (shoppers got the control's list): {e.last_failure}")
    return "\n".join(lines)
