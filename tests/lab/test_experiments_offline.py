"""The offline measurement of online experiments: A/A runs rarely name a winner, and a worse
candidate is found, by interleaving with fewer sessions than by an A/B split."""

from __future__ import annotations

import random

import pytest

from lab.experiments import AB, INTERLEAVE, QueryRankings, power_curve, sessions_needed


def shops_rankings(worse: bool, queries: int = 30, seed: int = 1) -> list[QueryRankings]:
    """Each query: 3 good products (grade 3) among 20; the control ranks them 1-3, a worse
    candidate at 4-6 (the same products, the good ones lower)."""
    rng = random.Random(seed)
    out = []
    for q in range(queries):
        ids = rng.sample(range(1000 * q, 1000 * q + 999), 20)
        grades = {pid: 3 for pid in ids[:3]}
        control = tuple(ids)
        candidate = tuple(ids[3:6] + ids[:3] + ids[6:]) if worse else control
        out.append(QueryRankings(f"q{q}", control, candidate, grades))
    return out


def test_an_aa_experiment_rarely_names_a_winner():
    rankings = shops_rankings(worse=False)
    for method in (INTERLEAVE, AB):
        rate = power_curve(rankings, method=method, looks=[300], runs=120, seed=3, expect=None)[300]
        # at most the test's level (0.05), within what 120 runs can tell
        assert rate.value <= 0.1 and rate.interval[0] <= 0.05, (method, rate)


def test_a_worse_candidate_is_found_and_interleaving_needs_fewer_sessions():
    rankings = shops_rankings(worse=True)
    looks = [25, 50, 100, 200, 400, 800, 1600]
    interleaved = power_curve(rankings, method=INTERLEAVE, looks=looks, runs=40, seed=3, expect="control")
    split = power_curve(rankings, method=AB, looks=looks, runs=40, seed=3, expect="control")
    assert interleaved[1600].value >= 0.9
    needed = sessions_needed(interleaved)
    assert needed is not None and (sessions_needed(split) is None or needed < sessions_needed(split))
    # never the wrong way round
    wrong = power_curve(rankings, method=INTERLEAVE, looks=[400], runs=40, seed=4, expect="candidate")
    assert wrong[400].hits == 0


def test_swaps_measure_the_simulated_shoppers_examination_though_a_click_stops_their_reading():
    from lab.experiments import propensities_run

    # given: the simulated shoppers (look at p with (1/p)^0.8, stop after a click 60% of the
    # time) on rankings with the relevant products high, half of the searches swapped
    rng = random.Random(1)
    rankings = []
    for q in range(200):
        ids = list(range(q * 100, q * 100 + 20))
        grades = {
            pid: rng.choice([3, 3, 2, 2, 1, 0, 0]) if i < 6 else rng.choice([2, 1, 0, 0, 0])
            for i, pid in enumerate(ids)
        }
        rankings.append(QueryRankings(str(q), tuple(ids), tuple(ids), grades))

    estimate, truth = propensities_run(rankings, sessions=150000, probability=0.5, seed=3)

    # then: within 20% of the examination curve at positions 1-10 (counting every position, as
    # the first version did, read 1.2-1.6x too much past position 5: a click stops the reading)
    assert len(estimate.values) == 10
    for p in range(1, 11):
        assert estimate.at(p) / truth[p - 1] == pytest.approx(1.0, abs=0.2), p


def test_the_position_bias_is_not_fooled_by_queries_whose_lists_differ():
    from lab.experiments import propensities_run

    # given: short lists whose first products are clicked often and long lists whose are not
    # (pooled over all queries at once, the first version read 0.8 of the truth at position 2)
    rng = random.Random(1)
    rankings = []
    for q in range(300):
        n = rng.choice([2, 3, 4, 6, 10, 20, 20])
        ids = list(range(q * 100, q * 100 + n))
        good = 3 if n < 6 else 2
        grades = {pid: good if i < 3 else rng.choice([2, 1, 0]) for i, pid in enumerate(ids)}
        rankings.append(QueryRankings(str(q), tuple(ids), tuple(ids), grades))

    estimate, truth = propensities_run(rankings, sessions=100000, probability=0.5, seed=1)

    for p in (2, 3):
        assert estimate.at(p) / truth[p - 1] == pytest.approx(1.0, abs=0.1), p


def test_an_interleaving_experiment_adds_its_coins_to_the_swaps_evidence():
    from lab.experiments import propensities_run

    # given: the simulated shoppers, half of the sessions in an interleaving experiment between
    # two rankings of the same products, the rest swapped at a 10% rate
    rng = random.Random(2)
    rankings = []
    for q in range(200):
        ids = list(range(q * 100, q * 100 + 20))
        grades = {pid: rng.choice([3, 2, 1, 0, 0]) for pid in ids}
        candidate = ids[:]
        rng.shuffle(candidate)
        rankings.append(QueryRankings(str(q), tuple(ids), tuple(candidate), grades))

    swaps_only, truth = propensities_run(rankings, sessions=60000, probability=0.1, seed=5)
    both, _ = propensities_run(rankings, sessions=60000, probability=0.1, seed=5, interleaved=0.5)

    # then: with half the swapped sessions, the coins still measure position 2 within 10%, and
    # the steps they order (1-2, 3-4, ...) rest on more clicks than the swaps alone gave
    assert both.at(2) / truth[1] == pytest.approx(1.0, abs=0.1)
    assert both.evidence[0] > swaps_only.evidence[0]
