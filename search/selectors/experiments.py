"""Searches inside an online experiment, and what an experiment's log says.

`experiment_search` is product_search for a shopper's session: outside an experiment (none
running, a search it does not cover, no session to keep the shopper's arm) it is product_search
and nothing more; inside, the A/B arm's ranking, or the control's and the candidate's rankings
interleaved (search.retrieval.experiments). A candidate that fails never fails the search: the
shopper gets the control's list, and the result says why (the log counts it on the experiment).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from catalog.models import Product

from ..models import Click, Experiment, SearchEvent, SearchImpression
from ..retrieval.config import search_config
from ..retrieval.experiments import (
    AB,
    ALPHA,
    CANDIDATE,
    CONTROL,
    INTERLEAVE,
    INTERLEAVED,
    SWAP_WITHIN,
    Propensities,
    ShownSearch,
    Verdict,
    ab_verdict,
    assigned_arm,
    interleaved_flips,
    interleaving_verdict,
    propensities_estimate,
    swap_draw,
    team_draft,
)
from ..retrieval.fusion import Calibration, weights_format, weights_parse
from .searching import SearchHit, SearchResult, product_search

logger = logging.getLogger(__name__)

# Each process looks for a started or stopped experiment at most this often
LOOK_SECONDS = 5.0
_seen: dict[str, Any] = {"at": -1e9, "running": None}
_lock = threading.Lock()


@dataclass(frozen=True)
class RunningExperiment:
    name: str
    method: str
    candidate: dict

    def search_kwargs(self) -> dict:
        """What product_search is given for the candidate's ranking."""
        out: dict = {}
        if "strategy" in self.candidate:
            out["strategy"] = self.candidate["strategy"]
        if "weights" in self.candidate:
            out["weights"] = weights_parse(self.candidate["weights"])
        calibration = self.candidate.get("calibration")
        if calibration == "off":
            out["calibrated"] = False
        elif calibration is not None:
            out["calibration"] = Calibration.from_dict(calibration)
        return out


def running_experiment() -> RunningExperiment | None:
    """The experiment running now, looked up at most every LOOK_SECONDS (a start or stop by
    the command reaches every serving process within that)."""
    now = time.monotonic()
    with _lock:
        if now - _seen["at"] < LOOK_SECONDS:
            return _seen["running"]
    row = Experiment.objects.filter(status=Experiment.Status.RUNNING).values("name", "method", "candidate").first()
    running = RunningExperiment(row["name"], row["method"], dict(row["candidate"])) if row else None
    with _lock:
        _seen.update(at=now, running=running)
    return running


def experiment_forget() -> None:
    """Look for the running experiment afresh at the next search (after starting or stopping one)."""
    with _lock:
        _seen["at"] = -1e9


def experiment_search(*, session_key: str | None, **search_kwargs) -> SearchResult:
    """product_search for this session, inside the running experiment when it covers the search:
    word searches (an A/B split: any sort; interleaving: in relevance order) of a shopper whose
    session keeps their arm. Everything else is product_search, untouched. A word search in
    relevance order that is not interleaved may then have two adjacent products trade places
    (SEARCH_SWAP_PROBABILITY, position_swap)."""
    result = _experiment_result(session_key, search_kwargs)
    probability = search_config().swap_probability
    if probability > 0 and result.mode == "text" and result.sort == "relevance" and result.arm != INTERLEAVED:
        position_swap(result, probability, _rng)
    return result


_rng = random.Random()


def position_swap(result: SearchResult, probability: float, rng: random.Random) -> None:
    """The position bias intervention (Joachims et al. 2017; Agarwal et al. 2019): with
    `probability`, the products at a random position k of the first ten on the first page
    (swap_draw) and at k + 1 trade places, unless a ranking rule placed either. The result keeps the
    chance and k (the log keeps both), and its ranking the swap, so that what it shows and what
    it logs agree."""
    result.swap_probability = probability
    k = swap_draw(len(result.hits), probability, rng) if result.page == 1 else None
    if k is None:
        return
    upper, lower = result.hits[k - 1], result.hits[k]
    if upper.placement or lower.placement:
        return
    upper.position, lower.position = k + 1, k
    result.hits[k - 1], result.hits[k] = lower, upper
    if len(result.ranked) > k:
        result.ranked[k - 1], result.ranked[k] = result.ranked[k], result.ranked[k - 1]
    result.swapped_at = k


def _experiment_result(session_key: str | None, search_kwargs: dict) -> SearchResult:
    experiment = running_experiment()
    words = bool(search_kwargs.get("query")) and search_kwargs.get("image") is None
    if experiment is None or not session_key or not words:
        return product_search(**search_kwargs)
    if experiment.method == AB:
        return _ab_search(experiment, session_key, search_kwargs)
    if search_kwargs.get("sort", "relevance") != "relevance":
        return product_search(**search_kwargs)
    return _interleaved_search(experiment, session_key, search_kwargs)


def _candidate(experiment: RunningExperiment, search_kwargs: dict, **extra) -> SearchResult:
    return product_search(**{**search_kwargs, **experiment.search_kwargs(), **extra})


def _failed(experiment: RunningExperiment, exc: Exception) -> str:
    logger.warning("Experiment %s: the candidate's ranking failed (%s); shown the control's", experiment.name, exc)
    return f"{type(exc).__name__}: {exc}"[:500]


def _ab_search(experiment: RunningExperiment, session_key: str, search_kwargs: dict) -> SearchResult:
    arm = assigned_arm(experiment.name, session_key)
    if arm == CONTROL:
        result = product_search(**search_kwargs)
    else:
        try:
            result = _candidate(experiment, search_kwargs)
        except Exception as exc:  # the candidate never breaks a search
            result = product_search(**search_kwargs)
            result.experiment, result.experiment_failed = experiment.name, _failed(experiment, exc)
            return result
    result.experiment, result.arm = experiment.name, arm
    return result


def _interleaved_search(experiment: RunningExperiment, session_key: str, search_kwargs: dict) -> SearchResult:
    """Both rankings, merged by team-draft; the page cut from the merged list. The count is every
    product either ranking matched; the facets are the control's. A candidate that changes only
    the fusion ranks the control's own matches (product_search's `also`: one retrieval)."""
    try:
        also = experiment.search_kwargs()
    except Exception as exc:  # the candidate never breaks a search
        result = product_search(**search_kwargs)
        result.experiment, result.experiment_failed = experiment.name, _failed(experiment, exc)
        return result
    result = product_search(**search_kwargs, also=also)
    candidate = result.also
    if candidate is None:  # the candidate never breaks a search
        result.experiment, result.experiment_failed = experiment.name, _failed(experiment, result.also_failed)
        return result
    seed = f"{experiment.name}\x00{session_key}\x00{result.query}\x00{result.filters}"
    merged = team_draft([r.id for r in result.ranked], [r.id for r in candidate.ranked], seed=seed)
    by_id = {r.id: r for r in candidate.ranked} | {r.id: r for r in result.ranked}
    placements = candidate.placements | result.placements
    page = merged[(result.page - 1) * result.page_size : result.page * result.page_size]
    products = Product.objects.searchable().in_bulk([pid for pid, _ in page])
    offset = (result.page - 1) * result.page_size
    result.hits = [
        SearchHit(
            product=products[pid],
            position=offset + i + 1,
            score=by_id[pid].score,
            raw=by_id[pid].raw,
            normalized=by_id[pid].normalized,
            placement=placements.get(pid, ""),
            relevance=by_id[pid].relevance,
            team=team,
        )
        for i, (pid, team) in enumerate(page)
        if pid in products
    ]
    result.count = len(merged)
    result.ranked = [by_id[pid] for pid, _ in merged]
    result.experiment, result.arm = experiment.name, INTERLEAVED
    return result


def position_bias(*, days: int = 90) -> Propensities:
    """How likely shoppers are to look at each position of a word search's first page, relative
    to the first, from the last `days` days' interventions: the adjacent swaps
    (SEARCH_SWAP_PROBABILITY) and the pairs an interleaving experiment's coin ordered. Only
    (1.0,) until the log has them with clicks on both sides."""
    since = timezone.now() - timedelta(days=days)
    events = SearchEvent.objects.filter(mode="text", sort="relevance", page=1, created_at__gte=since).filter(
        Q(swap_probability__gt=0) | Q(arm=INTERLEAVED)
    )
    clicked: dict = defaultdict(set)
    for search_id, position in Click.objects.filter(search__in=events.values("pk")).values_list(
        "search_id", "position"
    ):
        clicked[search_id].add(position)
    shown: dict = defaultdict(list)
    teams: dict = defaultdict(list)
    impressions = SearchImpression.objects.filter(search__in=events.values("pk"), position__lte=SWAP_WITHIN)
    for search_id, product_id, team in impressions.order_by("search_id", "position").values_list(
        "search_id", "product_id", "team"
    ):
        shown[search_id].append(product_id)
        teams[search_id].append(team)
    return propensities_estimate(
        [
            ShownSearch(
                query,
                tuple(shown.get(pk, ())),
                swapped_at,
                frozenset(clicked.get(pk, ())),
                interleaved_flips(teams.get(pk, ()), within=SWAP_WITHIN) if arm == INTERLEAVED else (),
            )
            for pk, query, swapped_at, arm in events.values_list(
                "pk", "query_normalized", "swapped_at", "arm"
            ).iterator(chunk_size=2000)
        ]
    )


@dataclass(frozen=True)
class ExperimentReport:
    """An experiment with what its log says: searches, clicks and the verdict."""

    experiment: Experiment
    searches: int
    clicks: int
    verdict: Verdict
    # A/B: per arm, its sessions and those that clicked; interleaving: per ranking, the sessions
    # whose clicks preferred it ("neither": clicked both alike, or nothing either placed alone)
    arms: dict[str, dict[str, int]]

    def as_dict(self) -> dict:
        v, e = self.verdict, self.experiment
        return {
            "name": e.name,
            "method": e.method,
            "candidate": e.candidate,
            "status": e.status,
            "started_at": e.started_at.isoformat(),
            "stopped_at": e.stopped_at.isoformat() if e.stopped_at else None,
            "sessions": v.sessions,
            "decisive_sessions": v.decisive,
            "searches": self.searches,
            "clicks": self.clicks,
            "winner": v.winner,
            "p_value": v.p_value,
            "effect": v.effect,
            "interval": [v.low, v.high] if v.low is not None else None,
            "sessions_needed": v.needed,
            "more_sessions_needed": v.more_needed,
            "arms": self.arms,
            "failures": e.failures,
            "last_failure": e.last_failure,
        }


def candidate_said(candidate: dict) -> str:
    """What a candidate changes, in words."""
    parts = []
    if "strategy" in candidate:
        parts.append(f"strategy {candidate['strategy']}")
    if "weights" in candidate:
        parts.append("weights " + weights_format(candidate["weights"]))
    if candidate.get("calibration") == "off":
        parts.append("no fusion calibration")
    elif "calibration" in candidate:
        parts.append("its own fusion calibration")
    return ", ".join(parts)


def arms_said(report: ExperimentReport) -> list[str]:
    """The sessions per arm in words: A/B, how many of each arm's clicked; interleaving, how many
    preferred each ranking."""
    if report.experiment.method == INTERLEAVE:
        return [f"preferred {arm}: {c['sessions']:,} sessions" for arm, c in report.arms.items()]
    return [f"{arm}: {c['clicked']:,} of {c['sessions']:,} sessions clicked" for arm, c in report.arms.items()]


def verdict_said(experiment: Experiment, v: Verdict) -> str:
    """The verdict in words, with the sessions it rests on, for the report and the admin."""
    stopped = experiment.status == Experiment.Status.STOPPED
    if v.effect is None:
        if experiment.method == AB:
            return "No verdict: an arm has no session yet." if not stopped else "No verdict: an arm had no session."
        return (
            "No verdict: no session preferred either ranking (no clicks, or only on products both rankings "
            "placed alike)."
        )
    if experiment.method == INTERLEAVE:
        seen = (
            f"{round(v.effect * v.decisive)} of the {v.decisive} sessions (of {v.sessions}) that preferred a ranking "
            f"preferred the candidate: {v.effect:.0%} (95% interval {v.low:.0%} to {v.high:.0%})"
        )
    else:
        seen = (
            f"the candidate's click-through minus the control's: {v.effect * 100:+.1f} percentage points "
            f"(95% interval {v.low * 100:+.1f} to {v.high * 100:+.1f})"
        )
    seen += f", p = {v.p_value:.2g}."
    if v.winner:
        return f"{seen} Winner: {v.winner} (p < {ALPHA})."
    if stopped:
        return f"{seen} No winner."
    if v.more_needed is None:
        return f"{seen} No winner yet; too few sessions, or no difference, to say how many more a verdict needs."
    return f"{seen} No winner yet: about {v.more_needed:,} more sessions would tell an effect of this size."


def experiment_report(experiment: Experiment) -> ExperimentReport:
    """The experiment's sessions, searches, clicks and verdict, from the search log."""
    events = SearchEvent.objects.filter(experiment=experiment.name).exclude(session_hash="")
    searches = events.count()
    clicks = Click.objects.filter(search__in=events).count()
    if experiment.method == INTERLEAVE:
        preferences = _preferences(events)
        preferred = {
            arm: {"sessions": preferences.count(sign)} for arm, sign in ((CONTROL, -1), (CANDIDATE, 1), ("neither", 0))
        }
        return ExperimentReport(experiment, searches, clicks, interleaving_verdict(preferences), preferred)
    arms: dict[str, dict[str, int]] = {CONTROL: {"sessions": 0, "clicked": 0}, CANDIDATE: {"sessions": 0, "clicked": 0}}
    per_session = events.values("session_hash", "arm").annotate(clicks=Count("clicks"))
    clicked: dict[tuple[str, str], bool] = defaultdict(bool)
    for row in per_session:
        clicked[(row["session_hash"], row["arm"])] |= row["clicks"] > 0
    for (_, arm), any_click in clicked.items():
        if arm in arms:
            arms[arm]["sessions"] += 1
            arms[arm]["clicked"] += int(any_click)
    verdict = ab_verdict(
        (arms[CONTROL]["clicked"], arms[CONTROL]["sessions"]),
        (arms[CANDIDATE]["clicked"], arms[CANDIDATE]["sessions"]),
    )
    return ExperimentReport(experiment, searches, clicks, verdict, arms)


def _preferences(events) -> list[int]:
    """One preference per session of an interleaving experiment: the sign of the candidate's
    clicked products minus the control's, over the session's interleaved searches."""
    sessions = dict.fromkeys(events.filter(arm=INTERLEAVED).values_list("session_hash", flat=True), 0)
    teams = {
        (search_id, position): team
        for search_id, position, team in SearchImpression.objects.filter(
            search__in=events.filter(arm=INTERLEAVED), team__in=(CONTROL, CANDIDATE)
        ).values_list("search_id", "position", "team")
    }
    for search_id, position, session in Click.objects.filter(search__in=events.filter(arm=INTERLEAVED)).values_list(
        "search_id", "position", "search__session_hash"
    ):
        team = teams.get((search_id, position))
        if team is not None:
            sessions[session] += 1 if team == CANDIDATE else -1
    return [(score > 0) - (score < 0) for score in sessions.values()]


__all__ = [
    "ExperimentReport",
    "arms_said",
    "candidate_said",
    "RunningExperiment",
    "experiment_forget",
    "experiment_report",
    "experiment_search",
    "position_bias",
    "position_swap",
    "running_experiment",
    "verdict_said",
]
