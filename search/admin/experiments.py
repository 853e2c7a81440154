"""The online experiments (search.selectors.experiments), as the admin shows them: running and
finished, with their sessions, clicks, the winner with its interval and how many more sessions
a verdict would need. Read-only: experiments start and stop with `manage.py experiment`."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from ..models import Experiment
from ..selectors.experiments import (
    ExperimentReport,
    arms_said,
    candidate_said,
    experiment_report,
    verdict_said,
)
from .readonly import ReadOnlyAdmin

START = (
    "Experiments start from the command line: python manage.py experiment start NAME --method interleave "
    "--candidate-strategy rrf (docs/data-teams.md, Experiments)."
)


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    list_display = ("name", "method", "status", "changes", "sessions", "arms", "clicks", "winner", "more_needed")
    list_filter = ("status", "method")
    fields = (
        "name",
        "method",
        "status",
        "changes",
        "started_at",
        "stopped_at",
        "sessions",
        "clicks",
        "verdict",
        "more_needed",
        "arms",
        "promoted",
        "failures_said",
    )
    readonly_fields = fields

    def _report(self, obj: Experiment) -> ExperimentReport:
        cached = getattr(obj, "_report", None)
        if cached is None:
            cached = obj._report = experiment_report(obj)
        return cached

    @admin.display(description="Candidate")
    def changes(self, obj: Experiment) -> str:
        return candidate_said(obj.candidate)

    @admin.display(description="Sessions")
    def sessions(self, obj: Experiment) -> int:
        return self._report(obj).verdict.sessions

    @admin.display(description="Clicks")
    def clicks(self, obj: Experiment) -> int:
        return self._report(obj).clicks

    @admin.display(description="Winner")
    def winner(self, obj: Experiment) -> str:
        """The list's short form; the experiment's page says the whole verdict."""
        v = self._report(obj).verdict
        if v.effect is None:
            return "No verdict yet" if obj.status == Experiment.Status.RUNNING else "No verdict"
        if v.winner:
            return f"{v.winner} (p = {v.p_value:.2g})"
        return f"{'none yet' if obj.status == Experiment.Status.RUNNING else 'none'} (p = {v.p_value:.2g})"

    @admin.display(description="Verdict")
    def verdict(self, obj: Experiment) -> str:
        return verdict_said(obj, self._report(obj).verdict)

    @admin.display(description="More sessions needed")
    def more_needed(self, obj: Experiment) -> str:
        v = self._report(obj).verdict
        if v.winner:
            return "None: decided"
        if obj.status == Experiment.Status.STOPPED:
            return "Stopped"
        return "Too few sessions to tell" if v.more_needed is None else f"About {v.more_needed:,}"

    @admin.display(description="Sessions per arm")
    def arms(self, obj: Experiment) -> str:
        return "; ".join(arms_said(self._report(obj))) or "-"

    @admin.display(description="Candidate failures")
    def failures_said(self, obj: Experiment) -> str:
        if not obj.failures:
            return "None"
        return f"{obj.failures} searches got the control's list because the candidate failed: {obj.last_failure}"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        messages.info(request, START)
        return super().changelist_view(request, extra_context)
