"""Properties of the fusion for any candidates (hypothesis): each modality is read on its own
scale, a missing modality is never a zero, and the ranking is a stable, complete order (issue 13)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from search.retrieval.fusion import Candidate, fuse_normalized

COSINE = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32)
# a candidate: text and image each present or not (at least one), keyword sometimes
RAW = st.fixed_dictionaries({}, optional={"text": COSINE, "image": COSINE, "keyword": st.floats(0, 30)}).filter(
    lambda raw: "text" in raw or "image" in raw
)
POOLS = st.lists(RAW, min_size=1, max_size=40).map(lambda raws: [Candidate(i + 1, raw) for i, raw in enumerate(raws)])
WEIGHTS = st.fixed_dictionaries({"text": st.floats(0.01, 5), "image": st.floats(0.01, 5), "keyword": st.floats(0, 2)})


def order(pool, weights) -> list[int]:
    return [r.id for r in fuse_normalized(pool, weights)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(POOLS, WEIGHTS, st.floats(0.05, 20), st.floats(-3, 3))
def test_a_modality_on_another_scale_ranks_the_same(pool, weights, scale, shift):
    # text-image cosines live around 0.2-0.3, text-text around 0.7-0.9: the fusion must not care
    moved = [Candidate(c.id, {m: (v * scale + shift if m == "image" else v) for m, v in c.raw.items()}) for c in pool]
    before, after = fuse_normalized(pool, weights), fuse_normalized(moved, weights)
    assert [round(r.score, 6) for r in before] == [round(r.score, 6) for r in after]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(POOLS, WEIGHTS)
def test_every_candidate_is_ranked_once_best_first_and_ties_by_id(pool, weights):
    ranked = fuse_normalized(pool, weights)
    assert sorted(r.id for r in ranked) == sorted(c.id for c in pool)  # text or image weighted: all ranked
    keys = [(-r.score, r.id) for r in ranked]
    assert keys == sorted(keys)
    assert order(list(reversed(pool)), weights) == [r.id for r in ranked]  # input order does not matter


@settings(max_examples=200, deadline=None, derandomize=True)
@given(POOLS, WEIGHTS)
def test_a_missing_modality_is_left_out_not_counted_as_zero(pool, weights):
    ranked = {r.id: r for r in fuse_normalized(pool, weights)}
    for candidate in pool:
        own = ranked[candidate.id].normalized
        assert set(own) == set(candidate.raw)  # absent stays absent
        used = {m: w for m, w in weights.items() if w > 0 and m in own}
        expected = sum(w * own[m] for m, w in used.items()) / sum(used.values())
        assert abs(ranked[candidate.id].score - expected) < 1e-9
