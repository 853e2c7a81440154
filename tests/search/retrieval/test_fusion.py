"""Fusion on hand-built score lists, including the missing-field cases."""

from __future__ import annotations

import numpy as np
import pytest

from search.retrieval.fusion import (
    Candidate,
    fuse_normalized,
    normalize_per_modality,
    rank_by_scores,
    rank_single,
    zscore,
)

W = {"text": 1.0, "image": 1.0}


def ids(ranked):
    return [r.id for r in ranked]


def test_zscore_standardises_and_handles_degenerate_inputs():
    np.testing.assert_allclose(zscore(np.array([1.0, 2.0, 3.0])), [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    assert zscore(np.array([])).size == 0
    np.testing.assert_array_equal(zscore(np.array([0.42])), [0.0])  # one candidate
    np.testing.assert_array_equal(zscore(np.array([0.3, 0.3, 0.3])), [0, 0, 0])  # all equal


def test_scale_does_not_decide_the_ranking():
    # Text cosines high and bunched, image cosines low and narrow (as with CLIP).
    candidates = [
        Candidate(1, {"text": 0.80, "image": 0.31}),
        Candidate(2, {"text": 0.83, "image": 0.20}),
        Candidate(3, {"text": 0.79, "image": 0.24}),
    ]
    fused = ids(fuse_normalized(candidates, W))

    # Stretch the text scale tenfold (a different model, a different prompt template):
    # a raw sum flips to follow text alone, the normalised fusion does not move.
    stretched = [Candidate(c.id, {"text": c.raw["text"] * 10, "image": c.raw["image"]}) for c in candidates]
    raw_sum = lambda cs: [c.id for c in sorted(cs, key=lambda c: -(c.raw["text"] + c.raw["image"]))]  # noqa: E731
    assert raw_sum(candidates) != raw_sum(stretched)
    assert ids(fuse_normalized(stretched, W)) == fused
    shifted = [Candidate(c.id, {"text": c.raw["text"], "image": c.raw["image"] * 3 + 0.5}) for c in candidates]
    assert ids(fuse_normalized(shifted, W)) == fused


def test_a_missing_image_is_neither_penalty_nor_bonus():
    # 10 has no image; its text is as good as 20's, whose image is average for this query.
    candidates = [
        Candidate(10, {"text": 0.90}),
        Candidate(20, {"text": 0.90, "image": 0.25}),
        Candidate(30, {"text": 0.70, "image": 0.30}),
        Candidate(40, {"text": 0.70, "image": 0.20}),
    ]
    fused = {r.id: r for r in fuse_normalized(candidates, W)}
    assert fused[10].normalized == {"text": pytest.approx(1.0)}
    assert "image" not in fused[10].normalized
    # 10's score is its text evidence alone; 20's is text plus an average (0) image
    assert fused[10].score == pytest.approx(1.0)
    assert fused[20].score == pytest.approx(0.5)
    assert ids(fuse_normalized(candidates, W))[0] == 10


def test_a_missing_description_product_is_judged_on_what_it_has():
    candidates = [
        Candidate(1, {"image": 0.35}),  # image-only, best image
        Candidate(2, {"text": 0.9, "image": 0.2}),
        Candidate(3, {"text": 0.8, "image": 0.25}),
    ]
    fused = fuse_normalized(candidates, W)
    assert ids(fused)[0] == 1
    assert "text" not in fused[0].normalized


def test_a_modality_with_no_candidates_is_simply_absent():
    candidates = [Candidate(1, {"text": 0.9}), Candidate(2, {"text": 0.8})]
    fused = fuse_normalized(candidates, W)
    assert ids(fused) == [1, 2]
    assert all(set(r.normalized) == {"text"} for r in fused)
    assert fuse_normalized([], W) == []


def test_one_candidate_and_all_equal_scores_tie_and_order_by_id():
    assert [(r.id, r.score) for r in fuse_normalized([Candidate(7, {"text": 0.5, "image": 0.2})], W)] == [(7, 0.0)]
    tied = [Candidate(i, {"text": 0.5, "image": 0.2}) for i in (9, 3, 5)]
    assert ids(fuse_normalized(tied, W)) == [3, 5, 9]


def test_weights_shift_the_balance_and_zero_weight_ignores_a_modality():
    candidates = [Candidate(1, {"text": 0.9, "image": 0.1}), Candidate(2, {"text": 0.1, "image": 0.9})]
    assert ids(fuse_normalized(candidates, {"text": 3.0, "image": 1.0}))[0] == 1
    assert ids(fuse_normalized(candidates, {"text": 1.0, "image": 3.0}))[0] == 2
    image_only = fuse_normalized(candidates + [Candidate(3, {"text": 0.99})], {"text": 0.0, "image": 1.0})
    assert ids(image_only) == [2, 1]  # 3 has no image and text is switched off


def test_single_modality_and_external_scores():
    candidates = [Candidate(1, {"text": 0.2}), Candidate(2, {"text": 0.9, "image": 0.1}), Candidate(3, {"image": 0.3})]
    assert ids(rank_single(candidates, "text")) == [2, 1]
    assert ids(rank_single(candidates, "image")) == [3, 2]
    ranked = rank_by_scores(candidates, {3: 0.5, 1: 0.7, 99: 1.0})  # unknown ids are dropped
    assert ids(ranked) == [1, 3]
    assert ranked[0].raw == {"text": 0.2}


def test_normalize_per_modality_reports_only_present_fields():
    normalized = normalize_per_modality([Candidate(1, {"text": 0.1}), Candidate(2, {"text": 0.3, "image": 0.2})])
    assert set(normalized[1]) == {"text"} and set(normalized[2]) == {"text", "image"}
    assert normalized[2]["image"] == 0.0  # a single image score carries no information


def test_weights_format_round_trips_and_bad_weights_say_what_to_write():
    from search.retrieval.fusion import weights_format, weights_parse

    assert weights_parse(" text=1, image=0.5 ") == {"text": 1.0, "image": 0.5}
    assert weights_parse({"text": 1, "image": 0}) == {"text": 1.0, "image": 0.0}
    assert weights_parse(weights_format({"text": 0.7, "image": 1.0})) == {"text": 0.7, "image": 1.0}
    for raw, message in (
        ("text:1", "write modality=weight pairs"),
        ("text=abc", "write modality=weight pairs"),
        ("text=0,image=0", "at least one above 0"),
        ("text=1,image=-1", ">= 0"),
        ("colour=1", "colour is not a modality"),
    ):
        with pytest.raises(ValueError, match=message):
            weights_parse(raw)
