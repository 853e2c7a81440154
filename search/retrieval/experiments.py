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
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

INTERLEAVE, AB = "interleave", "ab"
METHODS = (INTERLEAVE, AB)
CONTROL, CANDIDATE = "control", "candidate"
SHARED = "shared"  # a pick both teams would have made then: credited to neither
INTERLEAVED = "interleaved"  # a search's arm when it showed both teams' products
ALPHA = 0.05  # a verdict's level: a winner is declared when p < ALPHA
POWER = 0.8  # the chance of finding a difference of the size seen, for "sessions needed"
# "sessions needed" is not guessed from fewer sessions with a preference (or per A/B arm) than this
MIN_TO_EXTRAPOLATE = 10


def assigned_arm(experiment: str, session_key: str) -> str:
    """The A/B arm of a session: the same on every search, process and channel (a hash of the
    experiment's name and the session, not a stored draw), half of the sessions each."""
    digest = hashlib.sha256(f"{experiment}\x00{session_key}".encode()).digest()
    return CANDIDATE if digest[0] & 1 else CONTROL


def team_draft(control: Sequence[Hashable], candidate: Sequence[Hashable], *, seed: str) -> list[tuple[Hashable, str]]:
    """One list from two rankings by team-draft interleaving, each item with the team that
    placed it, or SHARED when the other team's next pick was the same item (where the rankings
    agree, a click says nothing of which is better: crediting it by the coin flip only adds
    noise; the credit stays symmetric, so no ranking gains from it). Every item of either
    ranking is placed once; `seed` fixes the coin flips, so the same search (its pages, a
    refresh) shows the same list."""
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
        other = CANDIDATE if team == CONTROL else CONTROL
        shared = _next_pick(rankings[other], cursor[other], placed) == item
        placed.add(item)
        merged.append((item, SHARED if shared else team))
        picks[team] += 1
    return merged


def interleaved_flips(teams: Sequence[str], *, within: int = 10) -> tuple[int, ...]:
    """The positions k of a team-draft list (its teams in the order shown) whose products at k
    and k + 1 a coin put in their order: rounds (1-2, 3-4, ...) where each team placed one and
    neither was SHARED. Reversed, the coin would have shown the same two products the other way
    round (each was its team's best not yet shown): an adjacent swap with probability one half,
    the same intervention as swap_draw's. Up to position `within`."""
    return tuple(k for k in range(1, min(len(teams), within), 2) if {teams[k - 1], teams[k]} == {CONTROL, CANDIDATE})


def _next_pick(ranking: Sequence[Hashable], at: int, placed: set) -> Hashable | None:
    """A team's next pick: its best item not placed yet."""
    while at < len(ranking) and ranking[at] in placed:
        at += 1
    return ranking[at] if at < len(ranking) else None


@dataclass(frozen=True)
class Verdict:
    """What an experiment's sessions say so far.

    `effect`: interleaving, the share of sessions preferring the candidate among the `decisive`
    ones, those that preferred either (0.5: no difference); A/B, the candidate's click-through
    minus the control's, in percentage points over 100 (`decisive`: every session). `low`/`high`:
    its 95% interval. `needed`: the sessions a verdict on an effect of this size would need in
    all (power POWER at ALPHA), None while no difference is seen or too few sessions tell one."""

    method: str
    sessions: int
    decisive: int
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
        return Verdict(INTERLEAVE, sessions, 0, None, None, None, None, None, None)
    share = wins / decisive
    test = stats.binomtest(wins, decisive, 0.5)
    p_value = float(test.pvalue)
    interval = test.proportion_ci(confidence_level=1 - alpha, method="wilson")
    winner = None if p_value >= alpha else CANDIDATE if share > 0.5 else CONTROL
    needed = None
    if share != 0.5 and decisive >= MIN_TO_EXTRAPOLATE:
        z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(POWER)
        per_decisive = ((z_a * 0.5 + z_b * math.sqrt(share * (1 - share))) / (share - 0.5)) ** 2
        # the exact sign test needs n with 2 * 0.5 ** n < alpha even if every session agrees
        least = math.ceil(math.log2(2 / alpha))
        needed = math.ceil(max(per_decisive, least) * sessions / decisive)
    return Verdict(INTERLEAVE, sessions, decisive, share, interval.low, interval.high, p_value, winner, needed)


def ab_verdict(control: tuple[int, int], candidate: tuple[int, int], *, alpha: float = ALPHA) -> Verdict:
    """The verdict of an A/B split from (sessions that clicked, sessions) of each arm."""
    (c_hits, c_n), (k_hits, k_n) = control, candidate
    sessions = c_n + k_n
    if c_n == 0 or k_n == 0:
        return Verdict(AB, sessions, sessions, None, None, None, None, None, None)
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
    if effect != 0 and min(c_n, k_n) >= MIN_TO_EXTRAPOLATE:
        mean = (p_c + p_k) / 2
        spread_sum = p_c * (1 - p_c) + p_k * (1 - p_k)
        per_arm = (z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(spread_sum)) ** 2 / effect**2
        needed = 2 * math.ceil(per_arm)
    return Verdict(AB, sessions, sessions, effect, low, high, p_value, winner, needed)


# --- position bias, from the adjacent swaps (SEARCH_SWAP_PROBABILITY) ----------------------


SWAP_WITHIN = 10  # the positions an adjacent swap may touch: where the click log has the evidence
# A step of the estimate (position k to k + 1) rests on at least this many clicks in each of its
# four rates; the chain stops where one has fewer (a ratio of two clicks is noise, and a weight
# of 7 resting on 3 clicks would drown the rest)
MIN_STEP_CLICKS = 20


def swap_draw(shown: int, probability: float, rng: random.Random) -> int | None:
    """With `probability`, a position k (uniform over 1 to SWAP_WITHIN - 1, whatever the list's
    length) whose product is to trade places with k + 1's; None: no swap, also when the list
    has no k + 1. The draw not depending on the length keeps the swapped searches at k a fair
    sample of the searches that show k + 1 products (a short list's query is not swapped at
    k = 1 more often than a long one's)."""
    if rng.random() >= probability:
        return None
    k = rng.randint(1, SWAP_WITHIN - 1)
    return k if k < shown else None


@dataclass(frozen=True)
class ShownSearch:
    """What the position bias estimate needs of one logged search: its words, the products its
    first page showed (in the order shown), where its swap was (None: none), and the positions
    clicked. An interleaved search has no swap but `flips` (interleaved_flips): each of those
    pairs is swapped or not by a coin, against the order of their ids, and is all it says."""

    query: str
    products: tuple[int, ...]
    swapped_at: int | None
    clicked: frozenset[int]
    flips: tuple[int, ...] = ()

    def original(self) -> tuple[int, ...]:
        """The products in the order the ranking gave them, before the swap."""
        k = self.swapped_at
        if k is None or not 1 <= k < len(self.products):
            return self.products
        out = list(self.products)
        out[k - 1], out[k] = out[k], out[k - 1]
        return tuple(out)


@dataclass(frozen=True)
class Propensities:
    """How likely a shopper who has not clicked yet is to look at each position, relative to
    the first (1.0), from swap interventions; `evidence[k]` is the fewest clicks behind the
    ratio of k + 1 to k."""

    values: tuple[float, ...]  # positions 1, 2, ... as far as the evidence goes
    evidence: tuple[int, ...]

    def at(self, position: int) -> float | None:
        return self.values[position - 1] if 1 <= position <= len(self.values) else None

    def weighing(self, position: int) -> float | None:
        """The propensity a click at `position` is weighed by: its estimate, the deepest one's
        below the estimated positions (no deeper click outweighs it); None while nothing past
        the first position is known."""
        if len(self.values) < 2 or position < 1:
            return None
        return self.values[min(position, len(self.values)) - 1]


def propensities_estimate(
    searches: Sequence[ShownSearch], *, positions: int = SWAP_WITHIN, min_clicks: int = MIN_STEP_CLICKS
) -> Propensities:
    """Examination propensities relative to position 1, of a shopper who has not clicked yet.

    A swap of k and k + 1 shows the same two products one place lower and one higher than the
    ranking put them: the click rate of the product from k shown at k + 1 over its rate at k is
    p(k + 1) / p(k), whatever its relevance; so is the rate of the product from k + 1 at k + 1
    over its rate at k. Their geometric mean is the step, and the chain of steps the curve; it
    stops where a rate has fewer than `min_clicks` clicks.
    - A rate counts a position only while nothing above it was clicked: a click stops many
      shoppers reading, and how often depends on what was clicked, which the swap changes.
    - The rates are compared within each (query, pair of products) and pooled across them
      (Mantel-Haenszel): pooled over all queries at once, the queries whose first product is
      often clicked weigh less among the searches read past it, and the ratio mixes two
      different sets of queries (a first simulated measurement read 0.8 at position 2).
    - The unswapped side is every search with k and k + 1 in their places (one swapped
      elsewhere reads the same there, since nothing above was clicked).
    - An interleaved search's coin-ordered pairs (`flips`) count the same way, each pair's order
      by id as its "place" (either order is as likely); its other positions follow no fixed
      ranking, so they count for nothing. Its flips are at k = 1, 3, 5, ...: the steps between
      rounds rest on the swaps alone."""
    # step k -> (query, product from k, product from k + 1) -> [clicks, shown] of each rate
    rates: dict[str, list[dict]] = {
        name: [defaultdict(lambda: [0, 0]) for _ in range(positions)] for name in ("kept", "next", "down", "up")
    }

    def count(name: str, step: int, key: tuple, clicked: bool) -> None:
        cell = rates[name][step][key]
        cell[0] += clicked
        cell[1] += 1

    for search in searches:
        clicked = search.clicked
        first = min(clicked, default=len(search.products))  # the positions read before any click
        if search.flips:  # each coin-ordered pair, in strata of its own (whatever swaps saw of it)
            for k in (k for k in search.flips if 1 <= k < min(positions, len(search.products))):
                upper, lower = search.products[k - 1], search.products[k]
                key = (search.query, min(upper, lower), max(upper, lower), INTERLEAVED)
                _pair_count(count, k, key, first, clicked, swapped=upper > lower)
            continue
        k, order = search.swapped_at, search.original()
        for step in range(1, min(len(order) - 1, positions - 1, first) + 1):
            if k is None or not step - 1 <= k <= step + 1:
                _pair_count(count, step, (search.query, order[step - 1], order[step]), first, clicked, swapped=False)
        if k is not None and 1 <= k < min(positions, len(order)):
            _pair_count(count, k, (search.query, order[k - 1], order[k]), first, clicked, swapped=True)
    return _chain(rates, positions, min_clicks)


def _pair_count(
    count: Callable[[str, int, tuple, bool], None], k: int, key: tuple, first: int, clicked: frozenset, *, swapped: bool
) -> None:
    """The pair `key` placed at k and k + 1 (a swap's products, or a coin's, in the order of
    their "places"), read while nothing above was clicked: in place, the rates of the product
    from k at k ("kept") and from k + 1 at k + 1 ("next"); swapped, of the product from k at
    k + 1 ("down") and from k + 1 at k ("up")."""
    if first < k:
        return
    if swapped:
        if first >= k + 1:
            count("down", k, key, k + 1 in clicked)
        count("up", k, key, k in clicked)
    else:
        count("kept", k, key, k in clicked)
        if first >= k + 1:
            count("next", k, key, k + 1 in clicked)


def _chain(rates: Mapping[str, list[dict]], positions: int, min_clicks: int) -> Propensities:
    """The steps' ratios multiplied down the list, while each rests on `min_clicks` clicks."""
    values, evidence = [1.0], []
    for k in range(1, positions):
        totals = [sum(c for c, _ in rates[name][k].values()) for name in ("down", "kept", "next", "up")]
        if min(totals) < max(1, min_clicks):
            break
        lower = _rate_ratio(rates["down"][k], rates["kept"][k])  # the product from k, one place down
        higher = _rate_ratio(rates["next"][k], rates["up"][k])  # the product from k + 1, at k + 1 over at k
        if not lower or not higher:
            break
        values.append(values[-1] * math.sqrt(lower * higher))
        evidence.append(min(totals))
    return Propensities(tuple(values), tuple(evidence))


def _rate_ratio(exposed: Mapping[tuple, list[int]], reference: Mapping[tuple, list[int]]) -> float | None:
    """The Mantel-Haenszel rate ratio of two groups' click rates over the strata both have."""
    above = below = 0.0
    for key, (a, n1) in exposed.items():
        if key not in reference:
            continue
        b, n0 = reference[key]
        total = n1 + n0
        above += a * n0 / total
        below += b * n1 / total
    return above / below if above > 0 and below > 0 else None


__all__ = [
    "AB",
    "ALPHA",
    "CANDIDATE",
    "CONTROL",
    "INTERLEAVE",
    "INTERLEAVED",
    "SHARED",
    "METHODS",
    "Propensities",
    "MIN_STEP_CLICKS",
    "ShownSearch",
    "Verdict",
    "ab_verdict",
    "assigned_arm",
    "interleaved_flips",
    "interleaving_verdict",
    "propensities_estimate",
    "swap_draw",
    "team_draft",
]
