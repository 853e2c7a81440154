"""The online experiments (search.selectors.experiments), as the admin shows them: running and
finished, with their sessions, clicks, the winner with its interval and how many more sessions
a verdict would need. Read-only: experiments start and stop with `manage.py experiment`."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from ..models import Experiment
from ..retrieval.experiments import ALPHA, INTERLEAVE
from ..selectors.experiments import ExperimentReport, experiment_report

START = (
    "Experiments start from the command line: python manage.py experiment start NAME --method interleave "
    "--candidate-strategy rrf (docs/data-teams.md, Experiments)."
)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "method", "status", "candidate_said", "sessions", "clicks", "winner", "more_needed")
    list_filter = ("status", "method")
    fields = (
        "name",
        "method",
        "status",
        "candidate_said",
        "started_at",
        "stopped_at",
        "sessions",
        "clicks",
        "winner",
        "more_needed",
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
    def candidate_said(self, obj: Experiment) -> str:
        parts = []
        if "strategy" in obj.candidate:
            parts.append(f"strategy {obj.candidate['strategy']}")
        if "weights" in obj.candidate:
            parts.append("weights " + ", ".join(f"{k} {v:g}" for k, v in obj.candidate["weights"].items()))
        if obj.candidate.get("calibration") == "off":
            parts.append("no fusion calibration")
        elif "calibration" in obj.candidate:
            parts.append("its own fusion calibration")
        return "; ".join(parts)

    @admin.display(description="Sessions")
    def sessions(self, obj: Experiment) -> int:
        return self._report(obj).verdict.sessions

    @admin.display(description="Clicks")
    def clicks(self, obj: Experiment) -> int:
        return self._report(obj).clicks

    @admin.display(description="Winner")
    def winner(self, obj: Experiment) -> str:
        v = self._report(obj).verdict
        if v.effect is None:
            return "No session has preferred either ranking yet"
        if obj.method == INTERLEAVE:
            seen = f"{v.effect:.0%} of sessions preferred the candidate ({v.low:.0%} to {v.high:.0%})"
        else:
            seen = f"click-through {v.effect:+.1%} for the candidate ({v.low:+.1%} to {v.high:+.1%})"
        verdict = f"{v.winner.capitalize()}" if v.winner else "None yet"
        return f"{verdict}: {seen}, p = {v.p_value:.2g} (a winner needs p < {ALPHA})"

    @admin.display(description="More sessions needed")
    def more_needed(self, obj: Experiment) -> str:
        more = self._report(obj).verdict.more_needed
        if more is None:
            return "Unknown until the rankings differ"
        return "None: decided" if more == 0 and self._report(obj).verdict.winner else f"About {more:,}"

    @admin.display(description="Candidate failures")
    def failures_said(self, obj: Experiment) -> str:
        if not obj.failures:
            return "None"
        return f"{obj.failures} searches got the control's list because the candidate failed: {obj.last_failure}"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        messages.info(request, START)
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
