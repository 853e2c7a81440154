"""The relevance model's pure parts (search/retrieval/relevance.py): the features say what a
shopper would, the fit finds what separates good matches, levelling puts products missing a
field beside complete ones of the same relevance, a photo's score puts the very same picture
first, and a kept model that cannot be applied says why."""

from __future__ import annotations

import numpy as np
import pytest

from search.retrieval import relevance
from search.retrieval.relevance import FEATURES, QueryShape, RelevanceModel

SHAPE = QueryShape(best_text=0.9, best_image=0.3, kinds=1, values=1, unknown=0, votes={"mugs": 0.8, "vases": 0.2})


def column(row: list[float], name: str) -> float:
    return row[FEATURES.index(name)]


def test_the_features_read_what_the_product_holds_and_where_it_stands():
    red_mug = relevance.features(
        {"text": 0.88, "image": 0.25, "keyword": 3.0}, {"category": "mugs", "has_description": True}, (1, 1), SHAPE
    )
    green_vase = relevance.features(
        {"text": 0.70, "keyword": 0.0}, {"category": "vases", "has_description": False}, (0, 0), SHAPE
    )
    assert column(red_mug, "kind_coverage") == 1 and column(red_mug, "value_any") == 1
    assert column(red_mug, "text_gap") == pytest.approx(-0.02) and column(red_mug, "kind_vote") == 0.8
    assert column(green_vase, "has_image") == 0 and column(green_vase, "no_description") == 1
    assert column(green_vase, "no_image_text_gap") == pytest.approx(-0.2)
    assert column(green_vase, "no_description_text_gap") == pytest.approx(-0.2)
    assert column(green_vase, "kind_vote") == 0.2
    assert relevance.held_words([11, 12, 13], [(11,), (20, 13), (99,)], kinds=1) == (1, 1)


def synthetic(n_lists: int = 200, seed: int = 1):
    """Lists of matches whose goodness depends on holding the asked words and the text gap;
    a quarter of the products have no image."""
    rng = np.random.default_rng(seed)
    rows, good, top, groups = [], [], [], []
    for g in range(n_lists):
        for _ in range(20):
            kind, value = rng.random() < 0.4, rng.random() < 0.5
            is_good = kind and value
            is_top = is_good and rng.random() < 0.5
            text = 0.6 + 0.2 * is_good + 0.1 * is_top + rng.normal(0, 0.05)
            raw = {"text": text, "keyword": 2.0 * (kind + value)}
            if rng.random() < 0.75:
                raw["image"] = 0.2 + 0.1 * is_good + rng.normal(0, 0.03)
            rows.append(relevance.features(raw, {"category": "c"}, (int(kind), int(value)), SHAPE))
            good.append(float(is_good))
            top.append(float(is_top))
            groups.append(g)
    return np.array(rows), {"good": np.array(good), "top": np.array(top)}, np.array(groups)


def test_the_fit_tells_good_matches_from_the_rest_and_ranks_the_best_first():
    rows, labels, groups = synthetic()
    model = relevance.model_fit(rows, labels, np.ones(len(rows)), groups)
    held_out, truth, _ = synthetic(seed=2)
    p = model.probabilities(held_out)
    predicted = p["good"] >= 0.5
    assert (predicted == truth["good"].astype(bool)).mean() > 0.95
    scores = p["rank"]
    assert scores[truth["top"] == 1].mean() > scores[(truth["good"] == 1) & (truth["top"] == 0)].mean()
    assert model.coefficients["good"]["value_any"] > 0 and model.coefficients["good"]["kind_coverage"] > 0


def mrr_ratio(scores: np.ndarray, relevant: np.ndarray, missing: np.ndarray, groups: np.ndarray) -> float:
    ours, theirs = [], []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        rank = np.empty(len(rows))
        rank[np.argsort(-scores[rows])] = np.arange(1, len(rows) + 1)
        a, b = relevant[rows] & missing[rows], relevant[rows] & ~missing[rows]
        if a.any() and b.any():
            ours.append(np.mean(1 / rank[a]))
            theirs.append(np.mean(1 / rank[b]))
    return 1 - np.mean(ours) / np.mean(theirs)


def test_levelling_puts_relevant_products_without_an_image_beside_complete_ones():
    rows, labels, groups = synthetic(400)
    missing = rows[:, FEATURES.index("has_image")] == 0
    relevant = labels["top"] > 0
    # a ranking that leans on the image: relevant products without one sink
    leaning = {name: 0.0 for name in FEATURES} | {"image": 40.0, "text": 20.0}
    before = mrr_ratio(rows @ np.array([leaning[n] for n in FEATURES]), relevant, missing, groups)
    twins = {"no_image": (relevance.without_image(rows[~missing]), np.flatnonzero(~missing))}
    levelled = relevance.level(leaning, rows, relevant, groups, twins=twins)
    after = mrr_ratio(rows @ np.array([levelled[n] for n in FEATURES]), relevant, missing, groups)
    assert before > 0.3  # pushed down by a third or more
    assert abs(after) < 0.1
    assert levelled["has_image"] < 0  # products without an image are lifted


def described_lists(n_lists: int = 400, seed: int = 3):
    """Lists where a third of the products lack a description (their title-only text vector
    scores 0.1 higher, relevant or not) and a third lack an image."""
    rng = np.random.default_rng(seed)
    rows, relevant, groups = [], [], []
    for g in range(n_lists):
        for _ in range(20):
            is_top = rng.random() < 0.3
            described = rng.random() < 0.67
            raw = {"text": 0.6 + 0.2 * is_top + 0.1 * (not described) + rng.normal(0, 0.05)}
            if rng.random() < 0.67:
                raw["image"] = 0.2 + 0.1 * is_top + rng.normal(0, 0.03)
            rows.append(relevance.features(raw, {"category": "c", "has_description": described}, (1, 1), SHAPE))
            relevant.append(is_top)
            groups.append(g)
    return np.array(rows), np.array(relevant), np.array(groups)


def test_levelling_puts_products_missing_both_fields_beside_complete_ones():
    rows, relevant, groups = described_lists()
    no_image = rows[:, FEATURES.index("has_image")] == 0
    undescribed = rows[:, FEATURES.index("no_description")] == 1
    # a ranking whose text weighs double without an image: a title-only text vector lifts a product
    # without an image twice as much as one with an image, so the two fields' shifts do not add up
    leaning = {name: 0.0 for name in FEATURES} | {"image": 16.0, "text": 8.0, "no_image_text_gap": 8.0}
    twins = {
        name: (relevance.without_image(rows[origin]), origin)
        for name, origin in (
            ("no_image", np.flatnonzero(~no_image & ~undescribed)),
            ("no_both", np.flatnonzero(~no_image & undescribed)),
        )
    }
    levelled = relevance.level(leaning, rows, relevant, groups, twins=twins)
    scores = rows @ np.array([levelled[n] for n in FEATURES])
    complete = ~no_image & ~undescribed
    for missing in (no_image & ~undescribed, undescribed & ~no_image, no_image & undescribed):
        keep = missing | complete
        assert abs(mrr_ratio(scores[keep], relevant[keep], missing[keep], groups[keep])) < 0.1
    assert levelled["no_image_no_description"] < 0  # both missing: less than the two shifts add up to


def test_a_photo_scores_the_same_picture_one_and_what_does_not_look_like_it_nothing():
    thresholds = {"image": 0.6, "text": 0.2}
    assert relevance.photo_score({"image": 1.0, "text": 0.3}, thresholds) == pytest.approx(1.0)
    assert relevance.photo_score({"image": 0.5, "text": 0.9}, thresholds) is None  # its image is what counts
    assert relevance.photo_score({"text": 0.3}, thresholds) == pytest.approx(0.125)  # no image: its text
    assert relevance.photo_score({"text": 0.1}, thresholds) is None


def test_a_kept_model_round_trips_and_one_it_cannot_apply_says_so():
    rows, labels, groups = synthetic(50)
    model = relevance.model_fit(rows, labels, np.ones(len(rows)), groups, queries=50)
    again = RelevanceModel.from_dict(model.as_dict())
    assert np.allclose(again.probabilities(rows)["good"], model.probabilities(rows)["good"])
    with pytest.raises(ValueError, match=f"not a version {relevance.VERSION} relevance model"):
        RelevanceModel.from_dict({"version": 0})
    with pytest.raises(ValueError, match="heads good, top, rank"):
        RelevanceModel.from_dict({"version": relevance.VERSION, "coefficients": {"good": {}}})
    with pytest.raises(ValueError, match="coefficients are numbers"):
        RelevanceModel.from_dict(
            {"version": relevance.VERSION, "coefficients": {"good": {"text": "x"}, "top": {}, "rank": {}}}
        )
