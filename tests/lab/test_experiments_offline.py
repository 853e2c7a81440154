"""The offline measurement of online experiments: A/A runs rarely name a winner, and a worse
candidate is found, by interleaving with fewer sessions than by an A/B split."""

from __future__ import annotations

import random

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
