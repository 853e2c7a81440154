"""The relevance cutoff: from which cosine on, a product matches a query, for the model in use.

Every model has its own scale (CLIP's text-text cosines sit high and bunched, its text-image
cosines low and narrow; SigLIP, the demo model and a fine-tuned one each differ again), so no
constant fits them all. The cutoff is measured on the model and the catalog themselves: queries
that name nothing (made-up words drawn with English letter frequencies, seeded) are embedded by
the model's text tower, and the engine returns each one's best cosine over the whole catalog,
per modality. That best-of-catalog score of a query that should match nothing follows an
extreme-value (Gumbel) law; the cutoff is its `QUANTILE` quantile, so about 1 query in 100 that
names nothing still finds something, in each modality, and a real query's products pass where
they score above what nonsense reaches. Pure functions over an encoder and an index.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .encoders import Encoder
from .vector_store.base import ProductIndex

NULL_QUERIES = 48
QUANTILE = 0.99
SEED = 20261123
MODALITIES = ("text", "image")
# English letter frequencies (per 1,000), for made-up words that look like words
LETTERS = {
    "e": 127,
    "t": 91,
    "a": 82,
    "o": 75,
    "i": 70,
    "n": 67,
    "s": 63,
    "h": 61,
    "r": 60,
    "d": 43,
    "l": 40,
    "c": 28,
    "u": 28,
    "m": 24,
    "w": 24,
    "f": 22,
    "g": 20,
    "y": 20,
    "p": 19,
    "b": 15,
    "v": 10,
    "k": 8,
    "j": 2,
    "x": 2,
    "q": 1,
    "z": 1,
}
EULER_GAMMA = 0.5772156649


def null_queries(count: int = NULL_QUERIES, *, seed: int = SEED) -> list[str]:
    """Queries of one to three made-up words, 4 to 10 letters each."""
    rng = random.Random(seed)
    letters, weights = list(LETTERS), list(LETTERS.values())
    return [
        " ".join("".join(rng.choices(letters, weights, k=rng.randint(4, 10))) for _ in range(rng.randint(1, 3)))
        for _ in range(count)
    ]


def gumbel_quantile(maxima: Sequence[float], quantile: float) -> float:
    """The quantile of a Gumbel law fitted to sample maxima by moments."""
    values = np.asarray(maxima, dtype=np.float64)
    beta = float(values.std()) * math.sqrt(6) / math.pi
    mu = float(values.mean()) - EULER_GAMMA * beta
    return mu - beta * math.log(-math.log(quantile))


@dataclass(frozen=True)
class Cutoff:
    """Per modality, the cosine from which a product matches a text query; a modality that no
    product has is absent (nothing to match there)."""

    scores: dict[str, float]
    queries: int
    quantile: float

    def get(self, modality: str) -> float | None:
        return self.scores.get(modality)


def cutoff_calibrate(
    encoder: Encoder,
    index: ProductIndex,
    *,
    queries: int = NULL_QUERIES,
    quantile: float = QUANTILE,
    vectors: Sequence[np.ndarray] | None = None,
) -> Cutoff:
    """Measure the cutoff of this model on this catalog: one batch of text embeddings (or the
    made-up queries' `vectors`, embedded before) and one round trip of top-1 queries per modality."""
    if vectors is None:
        vectors = encoder.encode_texts(null_queries(queries))
    scores = {}
    for modality in MODALITIES:
        best = [s for s in index.best_scores(list(vectors), using=modality) if s is not None]
        if len(best) >= 2:
            scores[modality] = gumbel_quantile(best, quantile)
    return Cutoff(scores=scores, queries=queries, quantile=quantile)


__all__ = ["Cutoff", "cutoff_calibrate", "gumbel_quantile", "null_queries"]
