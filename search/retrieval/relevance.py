"""How relevant a match is: a probability for every (query, product), with no labels.

Fusion orders a query's matches; it cannot say where relevance stops, so the match set was every
product more similar than noise (cutoff.py): for a category query, most of the neighbouring
categories too. This model says how likely a match is a good one (the category asked for and
some of what else the query asks), from what the search already has of it:

- each modality's cosine, raw and as a gap from the query's best over the whole catalog (so the
  scale is the query's own, and a filter or a page does not move it);
- the keyword leg: the share of the query's words that name what a product is ("mug") the
  product holds, and of its brand and attribute values ("red"), and BM25;
- the categories of the query's nearest products (what the query most likely asks for, read
  where its words are ones no product holds: "sneakers" in a shop of running shoes);
- which fields the product has, each with its own weights: a title-only text vector scores
  higher against a short query than a title with a description, and a product without an image
  has no image evidence;
- the query's shape: how many words, how many of them say neither what nor which.

It is a logistic regression per model and catalog (services.relevance), fitted on pseudo-queries
made from the catalog's own titles and fields, so it exists from day one. Two probabilities,
`good` (the category and some of what was asked: the match set is the products at or above the
threshold) and `top` (all of it); products are ranked by the sum of their log-odds, levelled
(`level`) so that products missing a field rank like complete ones of the same relevance. Pure
functions over plain data, no Django.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURES = (
    "bias",
    "text",
    "text_gap",
    "has_image",
    "image",
    "image_gap",
    "keyword",
    "kind_coverage",  # the share of the query's words that name what a product is ("mug") it holds
    "no_kind_word",  # the query has none the catalog holds
    "value_coverage",  # the share of its brand and attribute values ("red") it holds
    "value_any",
    "no_value_word",
    "no_description",
    "no_description_text",
    "no_description_text_gap",
    "no_image_text_gap",
    "no_image_kind_coverage",
    "no_image_value_any",
    "no_image_no_description",  # both missing: what levelling each field alone does not add up to
    "no_image_no_description_text_gap",  # a title-only text vector is all the evidence there is
    "no_kind_word_text_gap",
    "kind_vote",  # the share of the query's nearest products in this product's category
    "no_kind_word_kind_vote",
    "any_kind",  # the query names no kind at all ("red", "Kestrel"): any product may be good
    "any_kind_value_any",
    "unknown",
    "unknown_text_gap",
    "words",
)
VERSION = 2
# a photo matches the products it is closer to than this share of pairs of unrelated products are
PHOTO_QUANTILE = 0.99
RIDGE = 1e-2
HEADS = ("good", "top", "rank")


@dataclass(frozen=True)
class QueryShape:
    """What the features read of the query itself, the same for all its matches."""

    best_text: float | None  # the best text cosine over the whole catalog (None: no text vector)
    best_image: float | None
    kinds: int  # words the catalog holds that name what a product is ("mug")
    values: int  # brand and attribute values the catalog holds ("red", "Kestrel")
    unknown: int  # words no product holds (a synonym only the model knows, a brand new word)
    votes: Mapping[str, float] = field(default_factory=dict)  # category -> share of the nearest products


def features(
    raw: Mapping[str, float], payload: Mapping[str, Any], held: tuple[int, int], shape: QueryShape
) -> list[float]:
    """FEATURES of one match: its raw scores, payload, and how many of the query's kind words
    and value words it holds (`held`, as held_words counts them)."""
    return feature_rows([raw], [payload], [held], shape)[0].tolist()


def _scores(raws: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, ...]:
    """Per match: text cosine, has one, image cosine, has one, BM25 (0 where absent)."""
    n = len(raws)
    return (
        np.fromiter((r.get("text", 0.0) for r in raws), np.float64, n),
        np.fromiter(("text" in r for r in raws), bool, n),
        np.fromiter((r.get("image", 0.0) for r in raws), np.float64, n),
        np.fromiter(("image" in r for r in raws), bool, n),
        np.fromiter((r.get("keyword", 0.0) for r in raws), np.float64, n),
    )


def feature_rows(
    raws: Sequence[Mapping[str, float]],
    payloads: Sequence[Mapping[str, Any]],
    held: Sequence[tuple[int, int]],
    shape: QueryShape,
) -> np.ndarray:
    """FEATURES of a query's matches, one row each (features(), in one pass over columns: a
    search scores hundreds of matches)."""
    n = len(raws)
    text, has_text, image, has_image, keyword = _scores(raws)
    described = np.fromiter((p.get("has_description", True) for p in payloads), bool, n)
    vote = np.fromiter((shape.votes.get(str(p.get("category", "")), 0.0) for p in payloads), np.float64, n)
    kinds_held, values_held = (np.asarray(held, dtype=np.float64).reshape(n, 2).T) if n else (np.zeros(0),) * 2
    text_gap = text - shape.best_text if shape.best_text is not None else np.zeros(n)
    text_gap = np.where(has_text & (shape.best_text is not None), text_gap, -1.0)
    image_gap = np.where(has_image, image - shape.best_image, 0.0) if shape.best_image is not None else np.zeros(n)
    no_image = (~has_image).astype(np.float64)
    no_description = (~described).astype(np.float64)
    value_any = (values_held > 0).astype(np.float64)
    kind_coverage = kinds_held / shape.kinds if shape.kinds else np.zeros(n)
    no_kind = 0.0 if shape.kinds else 1.0
    words = shape.kinds + shape.values + shape.unknown
    any_kind = no_kind * (0.0 if shape.unknown else 1.0)
    unknown = shape.unknown / words if words else 0.0
    columns = {
        "bias": 1.0,
        "text": text,
        "text_gap": text_gap,
        "has_image": 1.0 - no_image,
        "image": image,
        "image_gap": image_gap,
        "keyword": np.log1p(np.maximum(keyword, 0.0)),
        "kind_coverage": kind_coverage,
        "no_kind_word": no_kind,
        "value_coverage": values_held / shape.values if shape.values else np.zeros(n),
        "value_any": value_any,
        "no_value_word": 0.0 if shape.values else 1.0,
        "no_description": no_description,
        "no_description_text": no_description * text,
        "no_description_text_gap": no_description * text_gap,
        "no_image_text_gap": no_image * text_gap,
        "no_image_kind_coverage": no_image * kind_coverage,
        "no_image_value_any": no_image * value_any,
        "no_image_no_description": no_image * no_description,
        "no_image_no_description_text_gap": no_image * no_description * text_gap,
        "no_kind_word_text_gap": no_kind * text_gap,
        "kind_vote": vote,
        "no_kind_word_kind_vote": no_kind * vote,
        "any_kind": any_kind,
        "any_kind_value_any": any_kind * value_any,
        "unknown": unknown,
        "unknown_text_gap": unknown * text_gap,
        "words": min(words, 6) / 6.0,
    }
    out = np.empty((n, len(FEATURES)))
    for i, name in enumerate(FEATURES):
        out[:, i] = columns[name]
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


@dataclass(frozen=True)
class RelevanceModel:
    """Coefficients per head over FEATURES; `fitted` says on what and how well."""

    coefficients: Mapping[str, Mapping[str, float]]
    fitted: Mapping[str, Any] = field(default_factory=dict)
    # a photo's own match set: per modality ("image": against product images, "text": against
    # their texts), the cosine from which a product looks like it (services.relevance)
    photo: Mapping[str, float] = field(default_factory=dict)

    def _beta(self, head: str) -> np.ndarray:
        own = self.coefficients.get(head, {})
        return np.array([own.get(name, 0.0) for name in FEATURES])

    def probabilities(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each row's probability of being a good match ("good") and its ranking score ("rank")."""
        x = np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))
        return {"good": _sigmoid(x @ self._beta("good")), "rank": x @ self._beta("rank")}

    def as_dict(self) -> dict:
        return {
            "version": VERSION,
            "coefficients": {h: dict(c) for h, c in self.coefficients.items()},
            "fitted": dict(self.fitted),
            "photo": dict(self.photo),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RelevanceModel:
        """Raises ValueError when the data is not a model this code can apply."""
        if not isinstance(data, Mapping) or data.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} relevance model; it is fitted again from the catalog")
        heads = data.get("coefficients")
        if not isinstance(heads, Mapping) or set(heads) != set(HEADS):
            raise ValueError(f"a relevance model has the heads {', '.join(HEADS)}")
        try:
            coefficients = {h: {k: float(v) for k, v in heads[h].items() if k in FEATURES} for h in HEADS}
            photo = {k: float(v) for k, v in (data.get("photo") or {}).items() if k in ("image", "text")}
        except (TypeError, ValueError, AttributeError):
            raise ValueError("a relevance model's coefficients are numbers") from None
        return cls(coefficients, dict(data.get("fitted") or {}), photo)


def logistic_fit(
    rows: np.ndarray, targets: np.ndarray, weights: np.ndarray, *, ridge: float = RIDGE, iterations: int = 60
) -> dict[str, float]:
    """Weighted logistic regression by Newton's method with an L2 penalty (not on the bias).

    Args:
        rows: FEATURES per example.
        targets: 0 or 1 per example.
        weights: per example (e.g. so that every pseudo-query weighs the same).
    Returns:
        {feature: coefficient}.
    """
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() * len(w)
    penalty = np.full(x.shape[1], ridge * len(w) / 1000.0)
    penalty[0] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        gradient = x.T @ (w * (y - p)) - penalty * beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return {name: float(b) for name, b in zip(FEATURES, beta)}


def without_image(rows: np.ndarray) -> np.ndarray:
    """The same matches as if their products had no image (features()' columns): what the fit
    learns products without an image from, whatever share of the catalog lacks one."""
    x = np.array(rows, dtype=np.float64, copy=True).reshape(-1, len(FEATURES))
    column = {name: i for i, name in enumerate(FEATURES)}
    for plain, when_missing in (
        ("text_gap", "no_image_text_gap"),
        ("kind_coverage", "no_image_kind_coverage"),
        ("value_any", "no_image_value_any"),
    ):
        x[:, column[when_missing]] = x[:, column[plain]]
    x[:, [column["has_image"], column["image"], column["image_gap"]]] = 0.0
    x[:, column["no_image_no_description"]] = x[:, column["no_description"]]
    x[:, column["no_image_no_description_text_gap"]] = x[:, column["no_description_text_gap"]]
    return x


MIN_TWINS = 30  # relevant twins a field's shift is levelled on, at least
TWIN_WEIGHT = 0.5  # of a twin (a product as if it lacked a field) against its product, in the fit


def model_fit(
    rows: np.ndarray,
    labels: Mapping[str, np.ndarray],
    weights: np.ndarray,
    groups: np.ndarray,
    **fitted,
) -> RelevanceModel:
    """Both probabilities (`labels`: the 0/1 targets of "good" and "top"), and the ranking
    score: the sum of their log-odds, levelled (level) over the lists of `groups`. Each match
    of a product with an image is also learnt from as if it had none (its twin, without_image):
    products without an image are judged on as much evidence as the others, whatever share of
    the catalog lacks one. `labels` may hold "level": the rows the levelling counts as relevant
    (default: "top")."""
    x = np.asarray(rows, dtype=np.float64)
    with_image = x[:, FEATURES.index("has_image")] == 1
    described = x[:, FEATURES.index("no_description")] == 0
    # twins of described products level a missing image; those of undescribed ones, both missing
    twins = {
        name: (without_image(x[origin]), origin)
        for name, origin in (
            ("no_image", np.flatnonzero(with_image & described)),
            ("no_both", np.flatnonzero(with_image & ~described)),
        )
    }
    both = np.vstack([x, *(t for t, _ in twins.values())])
    weighted = np.concatenate([weights, *(np.asarray(weights)[o] * TWIN_WEIGHT for _, o in twins.values())])
    good, top = (
        logistic_fit(
            both, np.concatenate([labels[head], *(np.asarray(labels[head])[o] for _, o in twins.values())]), weighted
        )
        for head in ("good", "top")
    )
    rank = {name: good[name] + top[name] for name in FEATURES}
    # levelled on the lists of queries that ask for a kind of product ("red mug", not "red"): a
    # shopper's query that names one is where a missing field must not move a product
    rank = level(rank, x, np.asarray(labels.get("level", labels["top"])) > 0, groups, twins=twins)
    # the match set is cut on the probabilities as fitted (twins teach them products without an
    # image); only the order is levelled: shifting the cut too lost 3 points of the grade >= 2
    # products matched and of nDCG@10 on the tuning shop, and levelled seed 302 no better
    shifts = {k: rank[k] - good[k] - top[k] for k in FIELD_INDICATORS.values()}
    fitted = {**fitted, "levelled": {k: round(v, 4) for k, v in shifts.items()}}
    return RelevanceModel({"good": good, "top": top, "rank": rank}, fitted)


# the column that says a product lacks a field: no image is has_image 0, no description is 1; a
# product lacking both has its own on top of the two (ranked by the two shifts alone, such products
# rose far above complete ones in a shop where half lacked a description: a -53% push-down)
FIELD_INDICATORS = {
    "no_image": "has_image",
    "no_description": "no_description",
    "no_both": "no_image_no_description",
}


def _lists(groups: np.ndarray) -> list[np.ndarray]:
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1], True])
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def _mrr_loss(scores: np.ndarray, lists: list, relevant: np.ndarray, missing: np.ndarray, complete: np.ndarray):
    """1 - the mean reciprocal rank of relevant `missing` products over that of complete ones,
    over the lists holding both; None without such a list."""
    ours, theirs = [], []
    for rows in lists:
        a, b = relevant[rows] & missing[rows], relevant[rows] & complete[rows]
        if not a.any() or not b.any():
            continue
        rank = np.empty(len(rows))
        rank[np.argsort(-scores[rows], kind="stable")] = np.arange(1, len(rows) + 1)
        ours.append(np.mean(1 / rank[a]))
        theirs.append(np.mean(1 / rank[b]))
    return 1.0 - np.mean(ours) / np.mean(theirs) if ours else None


def _twin_pairs(lists: list, relevant: np.ndarray, origin: np.ndarray) -> list:
    """Per list: its rows, its relevant rows with a twin, and their twins' rows."""
    twin_of = {int(o): i for i, o in enumerate(origin)}
    out = []
    for rows in lists:
        having = [int(r) for r in rows if relevant[r] and int(r) in twin_of]
        if having:
            out.append((rows, np.array(having), np.array([twin_of[r] for r in having])))
    return out


def _twin_loss(scores: np.ndarray, twin_scores: np.ndarray, pairs: list):
    """1 - the mean reciprocal rank of the twins (each among its list's other products: not its
    own product) over that of the products they copy."""
    ours, theirs = [], []
    for rows, originals, twin_rows in pairs:
        own = np.sort(scores[rows])
        theirs.append(np.mean(1.0 / (1 + len(own) - np.searchsorted(own, scores[originals], side="right"))))
        above = len(own) - np.searchsorted(own, twin_scores[twin_rows], side="right")
        ours.append(np.mean(1.0 / (1 + above - (scores[originals] > twin_scores[twin_rows]))))
    return 1.0 - np.mean(ours) / np.mean(theirs) if ours else None


def level(
    coefficients: Mapping[str, float],
    rows: np.ndarray,
    relevant: np.ndarray,
    groups: np.ndarray,
    *,
    twins: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    rounds: int = 2,
) -> dict[str, float]:
    """Shift the ranking score of products missing a field until, over the lists given, its
    relevant products rank as high as complete relevant ones (the same mean reciprocal rank, as
    the evaluation's push-down measures it). A ranking by evidence puts a relevant product with
    less of it (no image) below an equally relevant complete one; the shift levels them.

    With `twins` (per field: rows as if lacking it, and the row each copies), a field is
    levelled on those: each relevant product's twin, ranked among the list's other products,
    against the product itself. Else on the products of the lists lacking it."""
    x = np.asarray(rows, dtype=np.float64)
    no_image = x[:, FEATURES.index("has_image")] == 0
    undescribed = x[:, FEATURES.index("no_description")] == 1
    missing = {"no_image": no_image & ~undescribed, "no_description": undescribed & ~no_image}
    missing["no_both"] = no_image & undescribed
    complete = ~no_image & ~undescribed
    lists = _lists(groups)
    twins = dict(twins or {})
    pairs = {name: _twin_pairs(lists, relevant, origin) for name, (_, origin) in twins.items()}
    out = dict(coefficients)

    def measure(field_name: str) -> float | None:
        beta = np.array([out.get(name, 0.0) for name in FEATURES])
        if pairs.get(field_name):
            return _twin_loss(x @ beta, twins[field_name][0] @ beta, pairs[field_name])
        return _mrr_loss(x @ beta, lists, relevant, missing[field_name], complete)

    for _ in range(rounds):
        for field_name in FIELD_INDICATORS:
            column = FIELD_INDICATORS[field_name]
            sign, start = (-1.0 if column == "has_image" else 1.0), out.get(column, 0.0)
            if measure(field_name) is None or 0 < sum(len(p[1]) for p in pairs.get(field_name, ())) < MIN_TWINS:
                continue  # nothing to level on, or too few twins for a shift that is not noise
            low, high = -6.0, 6.0  # the shift in log-odds: bisection on a loss that falls as it grows
            for _ in range(20):
                middle = (low + high) / 2
                out[column] = start + sign * middle
                low, high = (middle, high) if measure(field_name) > 0 else (low, middle)
            out[column] = start + sign * (low + high) / 2
    return out


def photo_score(raw: Mapping[str, float], thresholds: Mapping[str, float]) -> float | None:
    """How far a product is above a photo's threshold: by its image when it has one (what looks
    alike), else by its text; None below it (it does not look like the photo)."""
    modality = "image" if "image" in raw else "text"
    if modality not in raw or modality not in thresholds:
        return None
    threshold = thresholds[modality]
    margin = float(raw[modality]) - threshold
    return margin / max(1.0 - threshold, 1e-6) if margin >= 0 else None  # 1: the very same picture


def held_words(terms: Sequence[int] | None, groups: Sequence[tuple[int, ...]], kinds: int) -> tuple[int, int]:
    """How many of the query's kind words (its first `kinds` groups: a word with its corrections
    or synonyms, as terms) and of its value words a product's terms hold."""
    if not groups or not terms:
        return 0, 0
    own = set(terms)
    held = [bool(own.intersection(group)) for group in groups]
    return sum(held[:kinds]), sum(held[kinds:])


__all__ = [
    "FEATURES",
    "HEADS",
    "QueryShape",
    "RelevanceModel",
    "feature_rows",
    "features",
    "held_words",
    "logistic_fit",
    "model_fit",
    "photo_score",
]
