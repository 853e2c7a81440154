"""Online experiments between the serving ranking (control) and a candidate: who sees what,
how two rankings become one list, and what the clicks say.

Team-draft interleaving (Radlinski, Kurup and Joachims 2008): each search shows one list
merged from both rankings; in each round the team with fewer picks (a coin flip when even)
adds its best product not yet shown, and each product is credited to the team that placed it.
A session prefers the team whose products it clicked more; the candidate wins when more
sessions prefer it than chance allows (a two-sided sign test). Interleaving needs one to two
orders of magnitude fewer sessions than an A/B split to find the better ranker (Chapelle et
al. 2012, Schuth et al. 2015), because every shopper judges both rankings at once.

An A/B split shows each session one ranking, fixed by a hash of the experiment's name and
the session: the arms compare the share of sessions that clicked (a two-proportion z-test).

No Django here: the selectors read the experiment and the log, and call these.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from scipy import stats

INTERLEAVE, AB = "interleave", "ab"
METHODS = (INTERLEAVE, AB)
CONTROL, CANDIDATE = "control", "candidate"
INTERLEAVED = "interleaved"  # a search's arm when it showed both teams' products
ALPHA = 0.05  # a verdict's level: a winner is declared when p < ALPHA
POWER = 0.8  # the chance of finding a difference of the size seen, for "sessions needed"


def assigned_arm(experiment: str, session_key: str) -> str:
    """The A/B arm of a session: the same on every search, process and channel (a hash of the
    experiment's name and the session, not a stored draw), half of the sessions each."""
    digest = hashlib.sha256(f"{experiment}\x00{session_key}".encode()).digest()
    return CANDIDATE if digest[0] & 1 else CONTROL


def team_draft(control: Sequence[Hashable], candidate: Sequence[Hashable], *, seed: str) -> list[tuple[Hashable, str]]:
    """One list from two rankings by team-draft interleaving, each item with the team that
    placed it. Every item of either ranking is placed once; `seed` fixes the coin flips, so the
    same search (its pages, a refresh) shows the same list."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    rankings = {CONTROL: list(control), CANDIDATE: list(candidate)}
    cursor = {CONTROL: 0, CANDIDATE: 0}
    picks = {CONTROL: 0, CANDIDATE: 0}
    placed: set[Hashable] = set()
    merged: list[tuple[Hashable, str]] = []
    total = len(set(control) | set(candidate))
    while len(merged) < total:
        if picks[CONTROL] != picks[CANDIDATE]:
            team = CONTROL if picks[CONTROL] < picks[CANDIDATE] else CANDIDATE
        else:
            team = CANDIDATE if rng.random() < 0.5 else CONTROL
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in placed:
            cursor[team] += 1
        if cursor[team] == len(ranking):  # this team has nothing left: the other places the rest
            team = CANDIDATE if team == CONTROL else CONTROL
            ranking = rankings[team]
            while cursor[team] < len(ranking) and ranking[cursor[team]] in placed:
                cursor[team] += 1
        item = ranking[cursor[team]]
        placed.add(item)
        merged.append((item, team))
        picks[team] += 1
    return merged


@dataclass(frozen=True)
class Verdict:
    """What an experiment's sessions say so far.

    `effect`: interleaving, the share of sessions preferring the candidate among those that
    preferred one (0.5: no difference); A/B, the candidate's click-through share minus the
    control's. `low`/`high`: its 95% interval. `needed`: the sessions a verdict on an effect of
    this size would need in all (power POWER at ALPHA), None while no difference is seen."""

    method: str
    sessions: int
    effect: float | None
    low: float | None
    high: float | None
    p_value: float | None
    winner: str | None
    needed: int | None

    @property
    def more_needed(self) -> int | None:
        if self.winner is not None:
            return 0
        return None if self.needed is None else max(0, self.needed - self.sessions)


def interleaving_verdict(preferences: Sequence[int], *, alpha: float = ALPHA) -> Verdict:
    """The verdict of team-draft interleaving from one preference per session: +1 it clicked
    the candidate's products more, -1 the control's, 0 neither (or no click)."""
    sessions = len(preferences)
    wins = sum(1 for p in preferences if p > 0)
    losses = sum(1 for p in preferences if p < 0)
    decisive = wins + losses
    if decisive == 0:
        return Verdict(INTERLEAVE, sessions, None, None, None, None, None, None)
    share = wins / decisive
    test = stats.binomtest(wins, decisive, 0.5)
    p_value = float(test.pvalue)
    interval = test.proportion_ci(confidence_level=1 - alpha, method="wilson")
    winner = None if p_value >= alpha else CANDIDATE if share > 0.5 else CONTROL
    needed = None
    if share != 0.5:
        z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(POWER)
        per_decisive = ((z_a * 0.5 + z_b * math.sqrt(share * (1 - share))) / (share - 0.5)) ** 2
        needed = math.ceil(per_decisive * sessions / decisive)
    return Verdict(INTERLEAVE, sessions, share, interval.low, interval.high, p_value, winner, needed)


def ab_verdict(control: tuple[int, int], candidate: tuple[int, int], *, alpha: float = ALPHA) -> Verdict:
    """The verdict of an A/B split from (sessions that clicked, sessions) of each arm."""
    (c_hits, c_n), (k_hits, k_n) = control, candidate
    sessions = c_n + k_n
    if c_n == 0 or k_n == 0:
        return Verdict(AB, sessions, None, None, None, None, None, None)
    p_c, p_k = c_hits / c_n, k_hits / k_n
    effect = p_k - p_c
    pooled = (c_hits + k_hits) / sessions
    spread = math.sqrt(pooled * (1 - pooled) * (1 / c_n + 1 / k_n))
    p_value = 1.0 if spread == 0 else float(2 * stats.norm.sf(abs(effect) / spread))
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(POWER)
    unpooled = math.sqrt(p_c * (1 - p_c) / c_n + p_k * (1 - p_k) / k_n)
    low, high = effect - z_a * unpooled, effect + z_a * unpooled
    winner = None if p_value >= alpha else CANDIDATE if effect > 0 else CONTROL
    needed = None
    if effect != 0:
        mean = (p_c + p_k) / 2
        spread_sum = p_c * (1 - p_c) + p_k * (1 - p_k)
        per_arm = (z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(spread_sum)) ** 2 / effect**2
        needed = 2 * math.ceil(per_arm)
    return Verdict(AB, sessions, effect, low, high, p_value, winner, needed)


__all__ = [
    "AB",
    "ALPHA",
    "CANDIDATE",
    "CONTROL",
    "INTERLEAVE",
    "INTERLEAVED",
    "METHODS",
    "Verdict",
    "ab_verdict",
    "assigned_arm",
    "interleaving_verdict",
    "team_draft",
]
