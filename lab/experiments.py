"""Online experiments in the offline world: how many sessions each method needs to find a
known-better ranking, and how often an A/A experiment declares a winner that is not there.

Each labelled query is ranked once by the control and once by the candidate through the real
search (`product_search`, words read as the storefront reads them; a ranking does not change
between sessions). Then many simulated sessions, each one search of a random query, are shown
what the experiment shows them: the merged list (team-draft interleaving, the serving code's
`team_draft`, seeded by the session) or their arm's list (the serving code's `assigned_arm`).
They click with lab.simulation's position-biased click model, whose clicks follow the labels'
grades. The verdicts are the serving code's (`interleaving_verdict`, `ab_verdict`) at each
number of sessions in a grid, over independent runs: the power is the share of runs that
name the better ranking, the false-positive rate the share of A/A runs that name either.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from search.retrieval.experiments import (
    AB,
    CANDIDATE,
    CONTROL,
    INTERLEAVE,
    SWAP_WITHIN,
    Propensities,
    ShownSearch,
    ab_verdict,
    assigned_arm,
    interleaved_flips,
    interleaving_verdict,
    propensities_estimate,
    swap_draw,
    team_draft,
)
from search.selectors import product_search

from .simulation import EXAMINATION_DECAY, PAGE_SIZE, shopper_clicks


@dataclass(frozen=True)
class QueryRankings:
    """One labelled query's first page under each ranking, and the grade of each product."""

    query: str
    control: tuple[int, ...]
    candidate: tuple[int, ...]
    grades: Mapping[int, int]


def rankings_collect(
    queries: Sequence[dict],
    candidate: Mapping,
    *,
    sku_ids: Mapping[str, int],
    progress: Callable[[int], None] | None = None,
) -> list[QueryRankings]:
    """The control's and the candidate's first page (product_search with `candidate`'s
    arguments) of each semantic query."""
    out = []
    for row in queries:
        if row.get("kind", "semantic") != "semantic":
            continue
        control = product_search(query=row["query"], understand=True, page_size=PAGE_SIZE)
        other = product_search(query=row["query"], understand=True, page_size=PAGE_SIZE, **candidate)
        grades = {sku_ids[sku]: int(g) for sku, g in row["relevance"].items() if sku in sku_ids}
        out.append(
            QueryRankings(
                row["query"],
                tuple(h.product.pk for h in control.hits),
                tuple(h.product.pk for h in other.hits),
                grades,
            )
        )
        if progress:
            progress(1)
    return out


def _interleaved_preference(ranking: QueryRankings, session: str, rng: random.Random) -> int:
    merged = team_draft(ranking.control, ranking.candidate, seed=session)[:PAGE_SIZE]
    clicked = shopper_clicks([ranking.grades.get(pid, 0) for pid, _ in merged], rng)
    teams = [merged[i][1] for i in clicked]
    score = teams.count(CANDIDATE) - teams.count(CONTROL)  # a shared pick credits neither
    return (score > 0) - (score < 0)


def _ab_session(ranking: QueryRankings, experiment: str, session: str, rng: random.Random) -> tuple[str, bool]:
    arm = assigned_arm(experiment, session)
    shown = ranking.candidate if arm == CANDIDATE else ranking.control
    return arm, bool(shopper_clicks([ranking.grades.get(pid, 0) for pid in shown], rng))


def verdicts_run(
    rankings: Sequence[QueryRankings], *, method: str, looks: Sequence[int], run: int, seed: int
) -> dict[int, str | None]:
    """One simulated experiment of max(looks) sessions; the winner at each number of sessions."""
    rng = random.Random(f"{seed}-{method}-{run}")
    name = f"offline-{seed}-{run}"
    preferences: list[int] = []
    arms = {CONTROL: [0, 0], CANDIDATE: [0, 0]}  # [sessions that clicked, sessions]
    winners: dict[int, str | None] = {}
    wanted = sorted(looks)
    for number in range(1, wanted[-1] + 1):
        ranking = rng.choice(rankings)
        session = f"{name}-{number}"
        if method == INTERLEAVE:
            preferences.append(_interleaved_preference(ranking, session, rng))
        else:
            arm, clicked = _ab_session(ranking, name, session, rng)
            arms[arm][0] += int(clicked)
            arms[arm][1] += 1
        if number in looks:
            verdict = (
                interleaving_verdict(preferences)
                if method == INTERLEAVE
                else ab_verdict(tuple(arms[CONTROL]), tuple(arms[CANDIDATE]))
            )
            winners[number] = verdict.winner
    return winners


def propensities_run(
    rankings: Sequence[QueryRankings], *, sessions: int, probability: float, seed: int, interleaved: float = 0.0
) -> tuple[Propensities, tuple[float, ...]]:
    """The position bias estimated (the serving code's propensities_estimate) from `sessions`
    simulated searches of the control's rankings, each swapped with `probability` by the
    serving code's swap_draw, clicked by lab.simulation's shoppers (examination
    (1 / p) ** EXAMINATION_DECAY, and a stop after a click); and the truth it estimates: that
    examination curve at positions 1-10. `interleaved`: the share of the sessions that are in
    an interleaving experiment instead (the control's and the candidate's rankings merged by
    the serving code's team_draft, never swapped), whose coin-ordered pairs count too."""
    rng = random.Random(f"{seed}-propensities")
    searches = []
    for n in range(sessions):
        ranking = rng.choice(rankings)
        if interleaved and rng.random() < interleaved:
            merged = team_draft(ranking.control, ranking.candidate, seed=f"{seed}-{n}")
            shown, k = [pid for pid, _ in merged], None
            flips = interleaved_flips([team for _, team in merged], within=SWAP_WITHIN)
        else:
            shown, flips = list(ranking.control), ()
            k = swap_draw(len(shown), probability, rng)
            if k is not None:
                shown[k - 1], shown[k] = shown[k], shown[k - 1]
        clicked = shopper_clicks([ranking.grades.get(pid, 0) for pid in shown], rng)
        searches.append(ShownSearch(ranking.query, tuple(shown), k, frozenset(i + 1 for i in clicked), flips))
    truth = tuple((1.0 / p) ** EXAMINATION_DECAY for p in range(1, 11))
    return propensities_estimate(searches), truth


@dataclass(frozen=True)
class Rate:
    """A share of runs with its Wilson 95% interval."""

    hits: int
    runs: int

    @property
    def value(self) -> float:
        return self.hits / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        if not self.runs:
            return 0.0, 1.0
        ci = stats.binomtest(self.hits, self.runs).proportion_ci(method="wilson")
        return float(ci.low), float(ci.high)


def power_curve(
    rankings: Sequence[QueryRankings],
    *,
    method: str,
    looks: Sequence[int],
    runs: int,
    seed: int,
    expect: str | None,
) -> dict[int, Rate]:
    """Over `runs` experiments: at each number of sessions, the share that named `expect` as
    the winner (None: the share that named any winner, an A/A experiment's false positives)."""
    counts = dict.fromkeys(looks, 0)
    for run in range(runs):
        for number, winner in verdicts_run(rankings, method=method, looks=looks, run=run, seed=seed).items():
            counts[number] += int(winner == expect if expect is not None else winner is not None)
    return {number: Rate(hits, runs) for number, hits in counts.items()}


def sessions_needed(curve: Mapping[int, Rate], power: float = 0.8) -> int | None:
    """The fewest sessions in the grid at which the runs found the winner at least `power` of
    the time; None when no number of sessions in the grid did."""
    return next((n for n in sorted(curve) if curve[n].value >= power), None)


__all__ = [
    "AB",
    "INTERLEAVE",
    "QueryRankings",
    "Rate",
    "power_curve",
    "propensities_run",
    "rankings_collect",
    "sessions_needed",
    "verdicts_run",
]
