"""Fitting the fusion calibration (fusion.Calibration) on a shop's own evidence.

Two kinds of evidence say which of a query's matches are relevant:
- labelled queries: each with graded products (a grade over the top grade is the target);
- the search log: a clicked product is relevant (1), one shown above a click, or just below the
  last one, and not clicked is not (0); the same query's searches pooled (what lies further
  down says nothing: the shopper may not have looked).

Each distinct query is searched again now, with the model in use, and every match becomes one
row of features (fusion.candidate_features) with its target; matches of a labelled query that
carry no grade are irrelevant. Every query weighs the same, however many matches it has.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.utils import timezone

from catalog.models import Product
from search.models import FusionCalibration, SearchEvent
from search.retrieval import fusion, providers
from search.retrieval.experiments import Propensities
from search.selectors import NO_MERCHANDISING, product_search
from search.selectors.calibrations import DATABASE, calibration_forget, calibration_source
from search.selectors.experiments import position_bias

# Fewer queries with a relevant match than this, and the fit would follow noise: the search
# keeps fusing with SEARCH_FUSION_WEIGHTS.
MIN_QUERIES = 20


@dataclass
class Evidence:
    """Per query: product id -> (target in [0, 1], weight)."""

    labels: dict[str, dict[int, tuple[float, float]]]
    # queries whose every relevant product is known (labelled): their other matches are irrelevant
    complete: set[str] = field(default_factory=set)
    labelled_queries: int = 0
    click_queries: int = 0
    # the propensities the clicks were weighed by (None: taken as they are)
    weighed: Propensities | None = None

    def queries_with_positive(self) -> int:
        return sum(any(t > 0 for t, _ in products.values()) for products in self.labels.values())


def labels_read(path: str | Path) -> list[dict]:
    """Labelled queries, JSONL: {"query": "red mug", "relevance": {"SKU-1": 3, ...}} a line
    (generate_catalog writes them; the lab's evaluation reads them here too).

    Raises:
        OSError: the file cannot be read.
        ValueError: a line is not JSON, or lacks a text "query" or a {sku: grade} "relevance";
            the message names the line.
    """
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number}: not JSON") from None
        if not (isinstance(row, dict) and isinstance(row.get("query"), str) and isinstance(row.get("relevance"), dict)):
            raise ValueError(f'line {number}: every line needs "query" (text) and "relevance" ({{sku: grade}})')
        rows.append(row)
    return rows


def evidence_from_labels(queries: Iterable[Mapping], *, top_grade: int = 3) -> Evidence:
    """Labelled queries ({"query": text, "relevance": {sku: grade}}); graded by SKU, as
    generate_catalog writes them. Products of another shop's SKUs are left out."""
    rows = list(queries)
    ids = dict(Product.objects.filter(sku__in={sku for q in rows for sku in q["relevance"]}).values_list("sku", "id"))
    labels = {}
    for row in rows:
        graded = {
            ids[sku]: (min(int(g), top_grade) / top_grade, 1.0) for sku, g in row["relevance"].items() if sku in ids
        }
        labels[row["query"]] = {pid: value for pid, value in graded.items()}
    return Evidence(labels=labels, complete=set(labels), labelled_queries=len(labels))


def evidence_from_clicks(*, days: int = 90, weigh: bool = True) -> Evidence:
    """The word searches in relevance order with clicks of the last `days` days, pooled per
    normalised query (a list sorted by price or date says nothing of how well a skipped
    product fits the words, as for the triplets export)."""
    since = timezone.now() - timedelta(days=days)
    events = (
        SearchEvent.objects.filter(mode="text", sort="relevance", created_at__gte=since, clicks__isnull=False)
        .distinct()
        .prefetch_related("impressions", "clicks")
    )
    bias = position_bias(days=days) if weigh else None
    if bias is not None and len(bias.values) > 1:
        return _evidence_weighed(events, bias)
    counts: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # [clicks, skips]
    for event in events.iterator(chunk_size=500):
        clicks = {c.product_id: c.position for c in event.clicks.all() if c.product_id}
        if not clicks:
            continue
        last = max(clicks.values())
        for shown in event.impressions.all():
            # examined: everything down to the last click and the one just below it (Joachims'
            # "click > skip above" and "click > no-click next"); further down says nothing
            if shown.product_id is None or shown.position > last + 1 or shown.placement:
                continue  # (a product a ranking rule placed says nothing of the model's ranking)
            counts[event.query_normalized][shown.product_id][0 if shown.product_id in clicks else 1] += 1
    labels = {
        query: {pid: (c / (c + s), float(c + s)) for pid, (c, s) in products.items()}
        for query, products in counts.items()
    }
    return Evidence(labels=labels, click_queries=len(labels))


def _evidence_weighed(events, bias: Propensities) -> Evidence:
    """Click evidence without the position bias (inverse propensity weighting, Joachims et al.
    2017): each product shown is evidence of its relevance to the query, a click counting
    1 / p, p its position's propensity (Propensities.weighing: below the estimate's depth, the
    deepest estimate's, so no click is left out); its target is the mean over its impressions
    (at most 1), its weight their number."""
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for event in events.iterator(chunk_size=500):
        clicked = {c.product_id for c in event.clicks.all() if c.product_id}
        for shown in event.impressions.all():
            if shown.product_id is None or shown.placement:
                continue  # (a product a ranking rule placed says nothing of the model's ranking)
            into = sums[event.query_normalized][shown.product_id]
            into[0] += 1.0 / bias.weighing(shown.position) if shown.product_id in clicked else 0.0
            into[1] += 1.0
    labels = {
        query: {pid: (min(1.0, c / n), n) for pid, (c, n) in products.items()} for query, products in sums.items()
    }
    return Evidence(labels=labels, click_queries=len(labels), weighed=bias)


def evidence_merge(*parts: Evidence) -> Evidence:
    merged: dict[str, dict[int, tuple[float, float]]] = {}
    for part in parts:
        for query, products in part.labels.items():
            into = merged.setdefault(query, {})
            for pid, (target, weight) in products.items():
                if pid in into:  # both say something: their weighted mean
                    t, w = into[pid]
                    into[pid] = ((t * w + target * weight) / (w + weight), w + weight)
                else:
                    into[pid] = (target, weight)
    return Evidence(
        labels=merged,
        complete=set().union(*(p.complete for p in parts)),
        labelled_queries=sum(p.labelled_queries for p in parts),
        click_queries=sum(p.click_queries for p in parts),
        weighed=next((p.weighed for p in parts if p.weighed is not None), None),
    )


def calibration_rows(
    evidence: Evidence, *, top_grade: int = 3, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Search each query again; (features, targets, groups, group weights, whether each list's
    positives are the top grade or the clicks) of the lists its matches with evidence make
    (fusion.calibration_fit, fusion.calibration_level).

    A labelled query makes one list per grade: its matches of that grade or better are the
    relevant ones (a match without a grade is irrelevant: labels grade every relevant product),
    so the top grade is learnt above the rest, and each grade above the lower ones. The clicks
    of a query make one list: each product shown above the last click, weighted by its share of
    clicks. Every query weighs the same, its lists sharing that weight.
    """
    features, targets, groups, weights, tops = [], [], [], [], []
    weights_only = providers.fusion_weights()  # the features do not depend on them; no calibration applied
    for query, known in evidence.labels.items():
        if progress:
            progress(1)
        if not any(t > 0 for t, _ in known.values()):
            continue
        # the model's own ranking: a merchandiser's pins and boosts are not what it learns
        result = product_search(
            query=query, strategy="normalized", page_size=1, weights=weights_only, merchandising=NO_MERCHANDISING
        )
        complete = query in evidence.complete
        rows = [
            (fusion.candidate_features(r.raw, r.normalized, r.payload), *known.get(r.id, (0.0, 1.0)))
            for r in result.ranked
            if complete or r.id in known
        ]
        if complete:
            levels = [
                [float(target * top_grade >= level - 1e-9) for _, target, _ in rows]
                for level in range(top_grade, 0, -1)
            ]
            # the list of every relevant product weighs most, the top grade's least (1 : 2 : 4 from
            # the top down), chosen on the tuning shop (seed 101, base demo model, cross-fitted
            # nDCG@10): 1:1:1 0.911, 1:2:4 0.916, 1:4:16 0.909, 4:2:1 0.905
            shares = [2.0 ** (top_grade - level) for level in range(top_grade, 0, -1)]
        else:
            levels, shares = [[target * weight for _, target, weight in rows]], [1.0]
        kept = [(level, share) for level, share in zip(levels, shares) if max(level) > min(level)]
        total = sum(share for _, share in kept)
        for level, share in kept:  # each list orders something
            group = len(weights)
            weights.append(share / total)
            tops.append(level is levels[0])  # the top grade's list, or the clicks'
            for (row, _, _), target in zip(rows, level):
                features.append(row)
                targets.append(target)
                groups.append(group)
    return (
        np.asarray(features, dtype=np.float64).reshape(-1, len(fusion.FEATURES)),
        np.asarray(targets, dtype=np.float64),
        np.asarray(groups, dtype=np.int64),
        np.asarray(weights, dtype=np.float64),
        np.asarray(tops, dtype=bool),
    )


class NotEnoughEvidence(ValueError):
    """Too little evidence to fit on; the message says what there is and what to do."""


def calibration_from_evidence(
    evidence: Evidence, *, progress: Callable[[int], None] | None = None
) -> fusion.Calibration:
    """Fit a calibration on this evidence with the model in use.

    Raises:
        NotEnoughEvidence: fewer than MIN_QUERIES queries with a relevant match; the message
            says what there is and what to do.
    """
    having = evidence.queries_with_positive()
    if having < MIN_QUERIES:
        raise NotEnoughEvidence(
            f"{having} queries with a click or a relevant label; a calibration needs at least {MIN_QUERIES}. "
            "Until then the search fuses with SEARCH_FUSION_WEIGHTS; label queries (--queries) or wait for clicks."
        )
    x, y, groups, weights, tops = calibration_rows(evidence, progress=progress)
    if not len(weights):
        raise NotEnoughEvidence(
            "none of the queries with evidence finds both relevant and irrelevant products "
            "now; there is nothing to order"
        )
    coefficients = fusion.calibration_fit(x, y, groups, weights)
    top = np.isin(groups, np.flatnonzero(tops))  # the lists whose positives are the top grade, or the clicks
    coefficients = fusion.calibration_level(coefficients, x[top], y[top], groups[top])
    return fusion.Calibration(
        coefficients,
        fitted={
            "model": providers.embedding_model_id(),
            "at": timezone.now().isoformat(timespec="seconds"),
            "labelled_queries": evidence.labelled_queries,
            "click_queries": evidence.click_queries,
            "clicks_weighed": list(evidence.weighed.values) if evidence.weighed else None,
            "queries": having,
            "lists": int(len(weights)),
            "rows": int(len(y)),
        },
    )


def calibration_save(calibration: fusion.Calibration, model_id: str | None = None) -> str:
    """Keep a calibration where every process's searches read it (selectors.calibrations): the
    model's row in the database, or the file SEARCH_FUSION_CALIBRATION names (written
    atomically). Returns where it went."""
    source = calibration_source()
    if source is None:
        raise ValueError("SEARCH_FUSION_CALIBRATION is off: there is nowhere to keep a calibration")
    if source == DATABASE:
        model_id = model_id or providers.embedding_model_id()
        FusionCalibration.objects.update_or_create(model_id=model_id, defaults={"coefficients": calibration.as_dict()})
        where = f"{DATABASE} (model {model_id})"
    else:
        path = Path(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(calibration.as_dict(), indent=2), encoding="utf-8")
        os.replace(partial, path)
        where = str(path)
    calibration_forget()
    return where


def calibration_remove(model_id: str | None = None) -> tuple[str, bool]:
    """Delete the model's calibration: its searches fuse with SEARCH_FUSION_WEIGHTS again.
    Returns where it was kept, and whether there was one."""
    source = calibration_source()
    if source is None:
        raise ValueError("SEARCH_FUSION_CALIBRATION is off: there is no calibration to remove")
    if source == DATABASE:
        model_id = model_id or providers.embedding_model_id()
        removed = FusionCalibration.objects.filter(model_id=model_id).delete()[0] > 0
        where = f"{DATABASE} (model {model_id})"
    else:
        removed = Path(source).is_file()
        Path(source).unlink(missing_ok=True)
        where = source
    calibration_forget()
    return where, removed


__all__ = [
    "Evidence",
    "MIN_QUERIES",
    "NotEnoughEvidence",
    "calibration_from_evidence",
    "calibration_remove",
    "calibration_save",
    "calibration_rows",
    "labels_read",
    "evidence_from_clicks",
    "evidence_from_labels",
    "evidence_merge",
]
