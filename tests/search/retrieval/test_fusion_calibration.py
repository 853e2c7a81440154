"""The fusion calibration on synthetic shops: a product with one modality and one with two on one
relevance scale, fitted from graded lists, and refused when its file is not one."""

from __future__ import annotations

import numpy as np
import pytest

from search.retrieval.fusion import (
    FEATURES,
    Calibration,
    Candidate,
    calibration_fit,
    calibration_level,
    candidate_features,
    fuse_calibrated,
    fuse_normalized,
    normalize_per_modality,
)


def synthetic_queries(seed: int, queries: int = 60, products: int = 40, no_image: float = 0.4):
    """Per query: candidates whose text and image cosines both carry the (hidden) relevance, the
    text more bunched, as with CLIP; `no_image` of the products have no image vector."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(queries):
        relevant = rng.random(products) < 0.15
        relevant[:2] = True
        has_image = rng.random(products) >= no_image
        has_image[0], has_image[1] = True, False  # every query has a relevant product of each kind
        text = 0.55 + 0.08 * relevant + rng.normal(0, 0.03, products)
        image = 0.22 + 0.05 * relevant + rng.normal(0, 0.02, products)
        candidates = [
            Candidate(
                i,
                {"text": float(text[i]), **({"image": float(image[i])} if has_image[i] else {})},
                {"has_description": True},
            )
            for i in range(products)
        ]
        out.append((candidates, relevant))
    return out


def rows_of(queries):
    features, targets, groups = [], [], []
    for group, (candidates, relevant) in enumerate(queries):
        normalized = normalize_per_modality(candidates)
        for c in candidates:
            features.append(candidate_features(c.raw, normalized[c.id], c.payload))
            targets.append(float(relevant[c.id]))
            groups.append(group)
    return np.array(features), np.array(targets), np.array(groups)


def mean_reciprocal_rank(ranked, keep):
    position = {r.id: i for i, r in enumerate(ranked, start=1)}
    return np.mean([1 / position[i] for i in keep])


def pushdown(queries, rank):
    """1 - mean RR of relevant products without an image / that of complete relevant ones."""
    missing, complete = [], []
    for candidates, relevant in queries:
        ranked = rank(candidates)
        missing.append(
            mean_reciprocal_rank(ranked, [c.id for c in candidates if relevant[c.id] and "image" not in c.raw])
        )
        complete.append(mean_reciprocal_rank(ranked, [c.id for c in candidates if relevant[c.id] and "image" in c.raw]))
    return 1 - np.mean(missing) / np.mean(complete)


def test_a_fitted_and_levelled_calibration_ranks_relevant_products_alike_with_or_without_an_image():
    train, test = synthetic_queries(1), synthetic_queries(2)
    x, y, groups = rows_of(train)
    coefficients = calibration_level(calibration_fit(x, y, groups, np.ones(len(train))), x, y, groups)
    calibration = Calibration(coefficients)

    # the mean of z-scores lets a product with one modality float: its z-score is not shrunk by
    # averaging with a second one, so relevant products without an image rank far above
    # complete ones of the same relevance
    weighted = pushdown(test, lambda c: fuse_normalized(c, {"text": 1, "image": 1}))
    calibrated = pushdown(test, lambda c: fuse_calibrated(c, calibration))
    assert weighted < -0.15
    assert abs(calibrated) < abs(weighted) / 2

    # and the ranking itself is no worse: relevant products on top as often
    def precision_at_5(rank):
        return np.mean([np.mean([relevant[r.id] for r in rank(c)[:5]]) for c, relevant in test])

    assert (
        precision_at_5(lambda c: fuse_calibrated(c, calibration))
        >= precision_at_5(lambda c: fuse_normalized(c, {"text": 1, "image": 1})) - 0.02
    )


def test_the_fit_learns_which_modality_tells_relevance():
    # given: lists where only the image tells relevance (the text is noise)
    rng = np.random.default_rng(3)
    features, targets, groups = [], [], []
    for group in range(40):
        relevant = rng.random(30) < 0.2
        relevant[0] = True
        candidates = [
            Candidate(
                i, {"text": float(rng.normal(0.5, 0.05)), "image": float(0.2 + 0.1 * relevant[i] + rng.normal(0, 0.02))}
            )
            for i in range(30)
        ]
        normalized = normalize_per_modality(candidates)
        for c in candidates:
            features.append(candidate_features(c.raw, normalized[c.id], {}))
            targets.append(float(relevant[c.id]))
            groups.append(group)
    coefficients = calibration_fit(np.array(features), np.array(targets), np.array(groups), np.ones(40))
    assert coefficients["z_image"] > 1.0 > abs(coefficients["z_text"])


def test_a_calibration_round_trips_and_a_broken_one_says_what_to_do():
    calibration = Calibration({name: 0.5 for name in FEATURES}, {"queries": 30})
    assert Calibration.from_dict(calibration.as_dict()) == calibration
    with pytest.raises(ValueError, match="fit it again"):
        Calibration.from_dict({"version": 99})
    with pytest.raises(ValueError, match="fit it again"):
        Calibration.from_dict({**calibration.as_dict(), "coefficients": {"colour": 1.0}})
    with pytest.raises(ValueError, match="must be numbers"):
        Calibration.from_dict({**calibration.as_dict(), "coefficients": {"z_text": "high"}})


def test_a_title_alone_has_its_own_weights():
    # given: the same text cosine, once for a title alone and once for a title and description
    calibration = Calibration({"z_text": 1.0, "no_description_z_text": -0.5})
    candidates = [
        Candidate(1, {"text": 0.9}, {"has_description": False}),
        Candidate(2, {"text": 0.9}, {}),
        Candidate(3, {"text": 0.1}, {}),
    ]
    ranked = fuse_calibrated(candidates, calibration)
    scores = {r.id: r.score for r in ranked}
    assert scores[2] > scores[1] > scores[3]
