"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from lab.metrics import mean, ndcg_at_k, recall_at_k, reciprocal_rank


def test_recall():
    assert recall_at_k([5, 3, 9, 1], {3, 1}, k=1) == 0.0
    assert recall_at_k([5, 3, 9, 1], {3, 1}, k=2) == 0.5
    assert recall_at_k([5, 3, 9, 1], {3, 1}, k=10) == 1.0
    assert recall_at_k([5, 3], set(), k=2) == 0.0


def test_reciprocal_rank():
    assert reciprocal_rank([5, 3, 9], {9}) == pytest.approx(1 / 3)
    assert reciprocal_rank([5, 3, 9], {9}, k=2) == 0.0
    assert reciprocal_rank([5, 3, 9], {4}) == 0.0


def test_ndcg_graded():
    # ranked gains 1, 3, 0 ; ideal 3, 1
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k([1, 2, 3], {1: 1, 2: 3, 3: 0}, k=3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k([2, 1], {1: 1, 2: 3}, k=2) == pytest.approx(1.0)
    assert ndcg_at_k([7], {}, k=1) == 0.0


def test_mean():
    assert mean([]) == 0.0 and mean([1, 0, 0.5]) == 0.5


def test_slice_view_removes_the_other_top_grade_products():
    from lab.metrics import slice_view

    grades = {"a": 3, "b": 3, "c": 1, "d": 0}
    ranked, gains = slice_view(["a", "c", "b", "d"], grades, keep={"b"})
    assert ranked == ["c", "b", "d"] and gains == {"b": 3, "c": 1, "d": 0}
    assert ndcg_at_k(ranked, gains, k=10) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_reciprocal_ranks_and_relative_loss():
    from lab.metrics import reciprocal_ranks, relative_loss

    assert reciprocal_ranks(["x", "y", "z"], ["z", "q", "x"]) == [pytest.approx(1 / 3), 0.0, 1.0]
    assert relative_loss([0.5], [1.0, 1.0]) == pytest.approx(0.5)
    assert relative_loss([1.0], [0.5]) == pytest.approx(-1.0)
    assert relative_loss([], [1.0]) is None and relative_loss([1.0], [0.0]) is None
