"""Is a difference between two rankings more than noise? Paired tests over the same queries.

Two strategies ranked the same queries, so each query gives one difference (e.g. of nDCG@10):
the paired t-test over those differences (scipy.stats.ttest_rel, the test IR evaluation
practice recommends for per-topic scores) gives a p-value and a 95% confidence interval of the
mean difference. "beats" means the interval lies above 0, "loses" below 0, "tie" anything else:
a difference inside the noise is reported as a tie, never as a win.

The push-down of products missing a field (1 - their mean reciprocal rank over that of complete
products of the same relevance, per query) gets a bootstrap interval over queries (the
queries resampled, each keeping its pair).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
SEED = 20261123


@dataclass(frozen=True)
class Comparison:
    """a - b over the queries both have: mean difference, its interval, p-value, verdict."""

    queries: int
    difference: float
    low: float
    high: float
    p_value: float
    verdict: str  # beats | ties | loses

    def as_dict(self) -> dict:
        return {
            "queries": self.queries,
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }


def paired_comparison(a: Mapping[str, float], b: Mapping[str, float], *, confidence: float = CONFIDENCE) -> Comparison:
    """Paired t-test of a against b over their common queries.

    Returns:
        A Comparison; with fewer than two queries, or no difference at all, a tie with p = 1.
    """
    common = sorted(set(a) & set(b))
    x = np.array([a[q] for q in common], dtype=np.float64)
    y = np.array([b[q] for q in common], dtype=np.float64)
    diff = x - y
    if len(common) < 2 or not diff.any():
        mean = float(diff.mean()) if len(common) else 0.0
        return Comparison(len(common), mean, mean, mean, 1.0, "ties")
    if np.ptp(diff) == 0:  # every query moved by the same amount: no spread to test, the sign decides
        mean = float(diff[0])
        return Comparison(len(common), mean, mean, mean, 0.0, "beats" if mean > 0 else "loses")
    result = stats.ttest_rel(x, y)
    interval = result.confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    verdict = "beats" if low > 0 else "loses" if high < 0 else "ties"
    return Comparison(len(common), float(diff.mean()), low, high, float(result.pvalue), verdict)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: p-values that hold for a whole family of comparisons."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None
    queries: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "queries": self.queries}

    def text(self) -> str:
        return interval_text(self.as_dict())


def comparison_text(c: Mapping, *, p_value: bool = True) -> str:
    """A Comparison as reports keep it (its as_dict): 'beats +0.021 [+0.004, +0.038] p=0.02'."""
    text = f"{c['verdict']} {c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
    return f"{text} p={c['p_value']:.2g}" if p_value else text


def interval_text(i: Mapping | None, *, decimals: int = 1) -> str:
    """An Interval as reports keep it: '+4.8% [-11, +20]'; 'n/a' without a value."""
    if not i or i.get("value") is None:
        return "n/a"
    value = f"{i['value'] * 100:+.{decimals}f}%"
    return value if i.get("low") is None else f"{value} [{i['low'] * 100:+.0f}, {i['high'] * 100:+.0f}]"


def pushdown_interval(
    pairs: Mapping[str, Sequence[float]], *, confidence: float = CONFIDENCE, seed: int = SEED
) -> Interval:
    """1 - mean(missing) / mean(complete) over queries' (missing RR, complete RR) pairs, with a
    paired percentile-bootstrap interval (None bounds with fewer than 5 queries)."""
    if not pairs:
        return Interval(None, None, None, 0)
    values = np.array(list(pairs.values()), dtype=np.float64)
    missing, complete = values[:, 0], values[:, 1]
    if complete.mean() == 0:
        return Interval(None, None, None, len(values))
    value = float(1.0 - missing.mean() / complete.mean())
    if len(values) < 5:
        return Interval(value, None, None, len(values))

    def loss(m, c, axis=-1):
        return 1.0 - m.mean(axis=axis) / np.maximum(c.mean(axis=axis), 1e-12)

    result = stats.bootstrap(
        (missing, complete),
        loss,
        paired=True,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(value, float(result.confidence_interval.low), float(result.confidence_interval.high), len(values))


def mean_interval(values: Sequence[float], *, confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """The mean of per-query values with a percentile-bootstrap interval over queries (None
    bounds with fewer than 5; None value with none)."""
    data = np.asarray(list(values), dtype=np.float64)
    if not len(data):
        return Interval(None, None, None, 0)
    if len(data) < 5 or data.min() == data.max():
        bound = None if len(data) < 5 else float(data[0])
        return Interval(float(data.mean()), bound, bound, len(data))
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        float(data.mean()), float(result.confidence_interval.low), float(result.confidence_interval.high), len(data)
    )


__all__ = [
    "Comparison",
    "Interval",
    "comparison_text",
    "holm",
    "interval_text",
    "mean_interval",
    "paired_comparison",
    "pushdown_interval",
]
