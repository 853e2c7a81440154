"""Offline search quality: labelled queries through product_search, the code shoppers hit.

Per strategy: nDCG@10 (graded), MRR@10 and Recall@50 (top grade = relevant), overall and per
slice of the relevant products (all fields, no image, no description), and how far products
missing a field are pushed down against complete products of the same relevance.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .evaluation import mean, ndcg_at_k, recall_at_k, reciprocal_rank, reciprocal_ranks, relative_loss, slice_view
from .selectors import product_search

SLICES = ("complete", "no_image", "no_description")
DEPTH = 50  # results read per query: Recall@50 and the push-down look this deep


def queries_load(path: str | Path) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if not {"query", "relevance"} <= set(row):
            raise ValueError(f"{path}: every line needs 'query' and 'relevance'")
    return rows


def field_slices(catalog_rows: Sequence[dict]) -> dict[str, str]:
    """sku -> the slice it belongs to (a product missing both fields counts as no_image)."""
    out = {}
    for row in catalog_rows:
        out[row["sku"]] = ("no_image" if not row.get("image") else
                           "no_description" if not row.get("description") else "complete")
    return out


def evaluate(*, queries: Sequence[dict], slices: dict[str, str], strategies: Sequence[str],
             progress: Callable[[int], None] | None = None) -> dict:
    """Returns {strategy: {"overall": {...}, "slices": {slice: {...}}, "pushdown": {...}}}."""
    report = {}
    for strategy in strategies:
        overall = {"ndcg@10": [], "mrr@10": [], "recall@50": []}
        per_slice = {s: {"ndcg@10": [], "mrr@10": [], "recall@50": []} for s in SLICES}
        rr = {s: [] for s in SLICES}
        for query in queries:
            grades = {sku: int(g) for sku, g in query["relevance"].items()}
            ranked = [h.product.sku for h in product_search(query=query["query"], strategy=strategy,
                                                            page_size=DEPTH).hits]
            relevant = {sku for sku, g in grades.items() if g >= 3}
            overall["ndcg@10"].append(ndcg_at_k(ranked, grades, 10))
            overall["mrr@10"].append(reciprocal_rank(ranked, relevant, 10))
            overall["recall@50"].append(recall_at_k(ranked, relevant, DEPTH))
            for name in SLICES:
                keep = {sku for sku in relevant if slices.get(sku) == name}
                if not keep:
                    continue
                view, gains = slice_view(ranked, grades, keep)
                per_slice[name]["ndcg@10"].append(ndcg_at_k(view, gains, 10))
                per_slice[name]["mrr@10"].append(reciprocal_rank(view, keep, 10))
                per_slice[name]["recall@50"].append(recall_at_k(view, keep, DEPTH))
                rr[name].extend(reciprocal_ranks(ranked, keep))
            if progress:
                progress(1)
        report[strategy] = {
            "overall": {m: mean(v) for m, v in overall.items()},
            "slices": {s: {**{m: mean(v) for m, v in per_slice[s].items()}, "queries": len(per_slice[s]["ndcg@10"])}
                       for s in SLICES},
            "pushdown": {"mrr_complete": mean(rr["complete"]),
                         "mrr_no_image": mean(rr["no_image"]), "mrr_no_description": mean(rr["no_description"]),
                         "loss_no_image": relative_loss(rr["no_image"], rr["complete"]),
                         "loss_no_description": relative_loss(rr["no_description"], rr["complete"])},
            "queries": len(queries),
        }
    return report


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def markdown(report: dict) -> str:
    header = ("| strategy | nDCG@10 | MRR@10 | Recall@50 | nDCG@10 all fields | nDCG@10 no image | "
              "nDCG@10 no description | MRR loss no image | MRR loss no description |")
    lines = [header, "|" + "---|" * 9]
    for strategy, r in report.items():
        o, s, p = r["overall"], r["slices"], r["pushdown"]
        lines.append(f"| {strategy} | {o['ndcg@10']:.3f} | {o['mrr@10']:.3f} | {o['recall@50']:.3f} | "
                     f"{s['complete']['ndcg@10']:.3f} | {s['no_image']['ndcg@10']:.3f} | "
                     f"{s['no_description']['ndcg@10']:.3f} | {_pct(p['loss_no_image'])} | "
                     f"{_pct(p['loss_no_description'])} |")
    return "\n".join(lines)


def chart(report: dict, path: Path, *, title: str) -> Path:
    """Grouped bars of nDCG@10 per strategy: overall and per slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    strategies = list(report)
    groups = [("overall", lambda r: r["overall"]["ndcg@10"])] + [
        (name.replace("_", " "), lambda r, n=name: r["slices"][n]["ndcg@10"]) for name in SLICES]
    x = np.arange(len(strategies))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, (label, get) in enumerate(groups):
        ax.bar(x + i * width - 0.4 + width / 2, [get(report[s]) for s in strategies], width, label=label)
    ax.set_xticks(x, strategies)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
