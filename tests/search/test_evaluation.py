"""Metrics on hand-computed examples."""
from __future__ import annotations

import math

import pytest

from search.evaluation import mean, ndcg_at_k, recall_at_k, reciprocal_rank


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
