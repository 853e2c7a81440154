"""The evaluation's significance figures: paired tests over queries, ties said as ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.significance import holm, paired_comparison, pushdown_interval


def test_a_consistent_gain_beats_with_the_t_interval_computed_by_hand():
    rng = np.random.default_rng(0)
    b = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.3, 0.9, 60))}
    a = {q: v + 0.05 + float(rng.normal(0, 0.02)) for q, v in b.items()}

    c = paired_comparison(a, b)

    diff = np.array([a[q] - b[q] for q in sorted(a)])
    half = 2.0010 * diff.std(ddof=1) / math.sqrt(len(diff))  # t(0.975, 59 degrees of freedom)
    assert c.verdict == "beats" and c.queries == 60 and c.p_value < 1e-10
    assert c.difference == pytest.approx(diff.mean())
    assert (c.low, c.high) == (pytest.approx(diff.mean() - half, abs=1e-4), pytest.approx(diff.mean() + half, abs=1e-4))


def test_noise_is_a_tie_and_a_loss_is_a_loss():
    rng = np.random.default_rng(1)
    b = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.3, 0.9, 60))}
    noisy = {q: v + float(rng.normal(0, 0.1)) for q, v in b.items()}
    worse = {q: v - 0.1 + float(rng.normal(0, 0.02)) for q, v in b.items()}

    assert paired_comparison(noisy, b).verdict == "ties"
    assert paired_comparison(noisy, b).low < 0 < paired_comparison(noisy, b).high
    assert paired_comparison(worse, b).verdict == "loses"
    assert paired_comparison(b, b).verdict == "ties" and paired_comparison(b, b).p_value == 1.0


def test_only_the_queries_both_ranked_are_paired():
    c = paired_comparison({"q1": 1.0, "q2": 0.5, "only-a": 0.0}, {"q1": 0.5, "q2": 0.0, "only-b": 1.0})
    assert c.queries == 2 and c.difference == 0.5 and c.verdict == "beats"  # both moved by exactly 0.5


def test_holm_adjusts_for_the_family():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_pushdown_interval_covers_its_value_and_narrows_with_queries():
    rng = np.random.default_rng(2)

    def pairs(n):
        return {f"q{i}": [float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.3, 0.7))] for i in range(n)}

    few, many = pushdown_interval(pairs(20)), pushdown_interval(pairs(400))
    assert few.low < few.value < few.high and many.low < many.value < many.high
    assert many.high - many.low < few.high - few.low
    assert pushdown_interval({}).value is None
    assert pushdown_interval({"q1": [0.5, 1.0]}).text() == "+50.0%"  # too few queries for an interval
