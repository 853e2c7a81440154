"""Team-draft interleaving, sticky arms and the verdicts of the experiments' statistics."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from search.retrieval.experiments import (
    CANDIDATE,
    CONTROL,
    ab_verdict,
    assigned_arm,
    interleaving_verdict,
    team_draft,
)


def test_team_draft_places_every_product_once_and_credits_the_team_that_placed_it():
    control, candidate = [1, 2, 3, 4, 5], [5, 4, 6, 1]
    merged = team_draft(control, candidate, seed="s")
    ids = [item for item, _ in merged]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    # each team's picks are in the order of its own ranking, and a prefix of the list holds each
    # team's best products: the first two places are both teams' first choices
    assert set(ids[:2]) == {1, 5}
    for team, ranking in ((CONTROL, control), (CANDIDATE, candidate)):
        picked = [item for item, t in merged if t == team]
        assert picked == sorted(picked, key=ranking.index)
    # the teams take turns: after any number of places their picks differ by at most one, while
    # both still have products to place
    counts = Counter()
    for _item, team in merged[:6]:
        counts[team] += 1
        assert abs(counts[CONTROL] - counts[CANDIDATE]) <= 1


def test_team_draft_is_the_same_for_the_same_seed_and_fair_over_seeds():
    control, candidate = list(range(20)), list(reversed(range(20)))
    assert team_draft(control, candidate, seed="a") == team_draft(control, candidate, seed="a")
    firsts = Counter(team_draft(control, candidate, seed=str(n))[0][1] for n in range(2000))
    assert 900 < firsts[CANDIDATE] < 1100


def test_identical_rankings_interleave_to_the_same_list():
    ranking = [7, 3, 9, 1]
    merged = team_draft(ranking, ranking, seed="x")
    assert [item for item, _ in merged] == ranking
    # where the rankings agree, a click says nothing of which is better: no team is credited
    assert {team for _, team in merged} == {"shared"}


def test_a_product_both_teams_would_pick_next_is_credited_to_neither():
    # the rankings agree on the first product only
    merged = dict(team_draft([1, 2, 3], [1, 3, 2], seed="y"))
    assert merged[1] == "shared"
    # of 2 and 3, the one placed second is the team's whose ranking put it higher, credited to it
    assert sorted(merged.values()) == ["candidate", "shared", "shared"] or sorted(merged.values()) == [
        "control",
        "shared",
        "shared",
    ]


def test_the_arm_is_sticky_per_session_and_splits_sessions_in_half():
    assert {assigned_arm("exp", "visit-1") for _ in range(5)} == {assigned_arm("exp", "visit-1")}
    arms = Counter(assigned_arm("exp", f"visit-{n}") for n in range(4000))
    assert 1850 < arms[CANDIDATE] < 2150
    # another experiment draws its own split
    same = sum(assigned_arm("exp", f"v{n}") == assigned_arm("other", f"v{n}") for n in range(4000))
    assert 1850 < same < 2150


def test_interleaving_finds_a_clear_preference_and_no_winner_in_noise():
    clear = interleaving_verdict([1] * 70 + [-1] * 30 + [0] * 50)
    assert clear.winner == CANDIDATE and clear.p_value < 0.001 and clear.sessions == 150
    assert clear.low < 0.7 < clear.high and clear.more_needed == 0
    rng = random.Random(1)
    noise = interleaving_verdict([rng.choice((1, -1, 0)) for _ in range(200)])
    assert noise.winner is None and noise.p_value > 0.05
    assert interleaving_verdict([0, 0, 0]).winner is None and interleaving_verdict([]).effect is None


def test_interleaving_estimates_the_sessions_a_verdict_needs():
    # 55% preferring the candidate among decisive sessions, half of the sessions decisive
    verdict = interleaving_verdict([1] * 11 + [-1] * 9 + [0] * 20)
    assert verdict.winner is None
    # a sign test at 0.05 and power 0.8 needs ~783 decisive sessions for 55%: ~1,566 in all
    assert verdict.needed == pytest.approx(1566, rel=0.02) and verdict.more_needed == verdict.needed - 40


def test_an_ab_split_compares_click_through_with_an_interval():
    verdict = ab_verdict((300, 1000), (360, 1000))
    assert verdict.winner == CANDIDATE and verdict.p_value < 0.01
    assert verdict.effect == pytest.approx(0.06) and verdict.low < 0.06 < verdict.high and verdict.low > 0
    tied = ab_verdict((30, 100), (31, 100))
    assert tied.winner is None and tied.needed > 10000
    assert ab_verdict((0, 0), (3, 10)).winner is None


def test_swaps_estimate_a_known_examination_curve_whatever_the_relevance():
    from search.retrieval.experiments import ShownSearch, propensities_estimate, swap_draw

    # given: shoppers who look at position p with probability (1/p) ** 0.8 and click what they
    # look at by its relevance, on rankings that put relevant products first (so clicks fall
    # off with position faster than the examination alone does)
    rng = random.Random(7)
    searches = []
    for _ in range(150000):
        relevance = sorted((rng.random() for _ in range(20)), reverse=True)
        k = swap_draw(20, 0.5, rng)
        shown, ids = list(relevance), list(range(20))
        if k is not None:
            shown[k - 1], shown[k] = shown[k], shown[k - 1]
            ids[k - 1], ids[k] = ids[k], ids[k - 1]
        clicked = frozenset(
            p for p, r in enumerate(shown, start=1) if rng.random() < (1 / p) ** 0.8 and rng.random() < r * 0.5
        )
        searches.append(ShownSearch("q", tuple(ids), k, clicked))

    estimate = propensities_estimate(searches)

    # then: the estimate is the examination curve within 20% at positions 1-10 (the chain's
    # noise grows down the list: 5 seeds tried were within 3-19%), while the raw click-through
    # falls off much faster (what learning from clicks as they are would take in)
    assert len(estimate.values) == 10
    for p in range(1, 11):
        assert estimate.at(p) == pytest.approx((1 / p) ** 0.8, rel=0.2), p
    assert statistics.mean(abs(estimate.at(p) / (1 / p) ** 0.8 - 1) for p in range(2, 11)) < 0.1
    raw = [sum(p in s.clicked for s in searches if s.swapped_at is None) for p in (1, 10)]
    assert raw[1] / raw[0] < 0.6 * (1 / 10) ** 0.8
    assert propensities_estimate([]).values == (1.0,)


def test_the_coin_of_each_interleaving_round_orders_its_pair_as_a_swap_would():
    from search.retrieval.experiments import interleaved_flips

    # given: two rankings that share no product, and two that agree on their first product
    apart = ([1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16])
    orders: dict[int, Counter] = {k: Counter() for k in (1, 3, 5, 7, 9)}
    for n in range(2000):
        merged = team_draft(*apart, seed=str(n))
        flips = interleaved_flips([team for _, team in merged])
        # then: every round is a coin's: the same two products, in either order half the time
        # (up to place 10: the first page's first ten, where the swaps are counted too)
        assert flips == (1, 3, 5, 7, 9)
        for k in flips:
            pair = (merged[k - 1][0], merged[k][0])
            assert set(pair) == {apart[0][k // 2], apart[1][k // 2]}
            orders[k][pair[0] < pair[1]] += 1
    assert all(900 < counts[True] < 1100 for counts in orders.values())
    # a round with a shared pick is no swap (reversed, the coin would have shown another pair),
    # and neither is anything past `within`
    merged = team_draft([1, 2, 3, 4], [1, 3, 2, 4], seed="z")
    assert 1 not in interleaved_flips([team for _, team in merged])
    assert interleaved_flips([CONTROL, CANDIDATE] * 10, within=4) == (1, 3)


def test_interleaved_searches_measure_the_examination_at_the_positions_their_coins_order():
    from search.retrieval.experiments import ShownSearch, interleaved_flips, propensities_estimate

    # given: shoppers who look at position p with probability (1/p) ** 0.8, shown interleaved
    # lists of two rankings that disagree everywhere, no swap at all
    rng = random.Random(3)
    relevance = {pid: rng.random() for pid in range(40)}
    control = sorted(range(20), key=lambda pid: -relevance[pid])
    candidate = sorted(range(20, 40), key=lambda pid: -relevance[pid])
    searches = []
    for n in range(60000):
        merged = team_draft(control, candidate, seed=str(n))
        ids = tuple(pid for pid, _ in merged)
        clicked = frozenset(
            p
            for p, pid in enumerate(ids, start=1)
            if rng.random() < (1 / p) ** 0.8 and rng.random() < relevance[pid] * 0.5
        )
        searches.append(ShownSearch("q", ids, None, clicked, interleaved_flips([t for _, t in merged])))

    estimate = propensities_estimate(searches)

    # then: position 2 against 1 is measured from the coins alone (the step from 2 to 3 lies
    # between two rounds: only swaps measure it, so the estimate stops there)
    assert estimate.values[1] == pytest.approx(0.5**0.8, rel=0.1)
    assert len(estimate.values) == 2
