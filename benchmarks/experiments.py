"""Online experiments measured in the offline world (lab/experiments.py): on generated shops,
how often an A/A experiment names a winner (false positives, at most the 0.05 level), and how
many sessions team-draft interleaving and an A/B split each need to find the better of two
rankings 80% of the time (candidates: a strategy that ranks by one modality alone, and equal
weights without the relevance model; the better one is the one with the higher nDCG@10 on the
labels, which the report shows); and the position bias estimated from adjacent swaps against
the simulated shoppers' examination curve.

Each shop: generated with labelled semantic queries, imported, indexed, its relevance model
fitted, then every query ranked once by the control and by each candidate through the real
search; many simulated experiments (sessions of one search each, clicks from lab.simulation's
position-biased click model) give each verdict with the serving code's statistics. Rates carry
Wilson 95% intervals over the runs. Writes report.md and power.png to --out.

    .venv/bin/python benchmarks/experiments.py --model DIR --seeds 301,302 --products 1000 --out DIR [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import import_catalog, setup_instance, table
from tqdm import tqdm

CANDIDATES = {
    "A/A (the same ranking)": {},
    "image vectors only": {"strategy": "image"},
    "text vectors only": {"strategy": "text"},
    "equal weights, no relevance model": {"weights": {"text": 1.0, "image": 1.0}},
}
LOOKS = [25, 50, 100, 200, 400, 800, 1600, 3200]
AA_SESSIONS = 1000
# the position bias: searches swapped with SWAP_PROBABILITY, estimates from this many sessions
SWAP_PROBABILITY = 0.1
BIAS_SESSIONS = (100_000, 400_000)
BIAS_RUNS = 3


def ndcg(rankings) -> float:
    from lab.metrics import ndcg_at_k

    control = statistics.mean(ndcg_at_k(r.control, r.grades, 10) for r in rankings)
    candidate = statistics.mean(ndcg_at_k(r.candidate, r.grades, 10) for r in rankings)
    return control, candidate


def measure_shop(seed: int, products: int, runs: int, tmp: Path) -> list[dict]:
    from catalog.models import Product
    from lab.experiments import AB, INTERLEAVE, power_curve, rankings_collect, sessions_needed
    from search.services.relevance import relevance_fit_if_due

    import_catalog(tmp, products=products, seed=seed, index=True, queries=200)
    relevance_fit_if_due(force=True)
    queries = [json.loads(line) for line in (tmp / f"shop-{seed}" / "queries.jsonl").read_text().splitlines()]
    sku_ids = dict(Product.objects.values_list("sku", "pk"))
    rows = []
    bias_rows = []
    for label, candidate in CANDIDATES.items():
        semantic = sum(q.get("kind", "semantic") == "semantic" for q in queries)
        with tqdm(desc=f"shop {seed}: rank for {label}", unit="query", total=semantic) as bar:
            rankings = rankings_collect(queries, candidate, sku_ids=sku_ids, progress=bar.update)
        if not candidate:
            bias_rows = measure_bias(rankings, seed)
        control_ndcg, candidate_ndcg = ndcg(rankings)
        better = "candidate" if candidate_ndcg > control_ndcg else "control"  # by the labels
        for method in (INTERLEAVE, AB):
            started = time.perf_counter()
            if candidate:
                curve = power_curve(rankings, method=method, looks=LOOKS, runs=runs, seed=seed, expect=better)
                needed = sessions_needed(curve)
            else:
                curve = power_curve(rankings, method=method, looks=[AA_SESSIONS], runs=runs * 2, seed=seed, expect=None)
                needed = None
            rows.append(
                {
                    "shop": seed,
                    "candidate": label,
                    "method": method,
                    "ndcg": (control_ndcg, candidate_ndcg),
                    "curve": {n: (r.value, *r.interval) for n, r in curve.items()},
                    "runs": next(iter(curve.values())).runs,
                    "needed": needed,
                    "better": better if candidate else None,
                    "seconds": time.perf_counter() - started,
                }
            )
    return rows + bias_rows


def measure_bias(rankings, seed: int) -> list[dict]:
    """The position bias estimate against the simulated shoppers' examination curve, over
    BIAS_RUNS runs of each number of sessions."""
    from lab.experiments import propensities_run

    out = []
    for sessions in BIAS_SESSIONS:
        for run in range(BIAS_RUNS):
            started = time.perf_counter()
            estimate, truth = propensities_run(
                rankings, sessions=sessions, probability=SWAP_PROBABILITY, seed=seed * 100 + run
            )
            out.append(
                {
                    "shop": seed,
                    "bias": True,
                    "sessions": sessions,
                    "run": run,
                    "estimate": list(estimate.values),
                    "truth": list(truth),
                    "seconds": time.perf_counter() - started,
                }
            )
    return out


def bias_report(rows: list[dict]) -> str:
    """Per number of sessions: the estimate over the truth at each position, mean and range over
    shops and runs, and the worst error at positions 1-10."""
    lines = [
        f"\nPosition bias from adjacent swaps ({SWAP_PROBABILITY:.0%} of searches swapped): the estimate "
        "over the simulated shoppers' examination curve (1/p)^0.8 (1.00: exact), mean [min, max] "
        f"over {len({r['shop'] for r in rows})} shops x {BIAS_RUNS} runs\n"
    ]
    header = ["sessions"] + [f"p{p}" for p in range(2, 11)] + ["worst |error|, p1-10"]
    table_rows = []
    for sessions in BIAS_SESSIONS:
        runs = [r for r in rows if r["sessions"] == sessions]
        cells, worst = [sessions], 0.0
        for p in range(2, 11):
            ratios = [
                r["estimate"][p - 1] / r["truth"][p - 1] for r in runs if len(r["estimate"]) >= p and r["truth"][p - 1]
            ]
            if len(ratios) < len(runs):
                cells.append(f"{len(ratios)}/{len(runs)} reach")
                worst = float("inf")
                continue
            cells.append(f"{statistics.mean(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]")
            worst = max(worst, *(abs(x - 1) for x in ratios))
        table_rows.append(cells + [f"{worst:.0%}"])
    lines.append(table(header, table_rows))
    return "\n".join(lines)


def report(rows: list[dict], out: Path, args) -> str:
    bias = [r for r in rows if r.get("bias")]
    rows = [r for r in rows if not r.get("bias")]
    lines = [
        f"Shops {args.seeds}, {args.products} products, 200 labelled queries each; model {args.model or 'random'}.",
        "",
    ]
    aa = [r for r in rows if not CANDIDATES[r["candidate"]]]
    lines.append(f"A/A: share of {aa[0]['runs']} experiments of {AA_SESSIONS} sessions naming a winner (level 0.05)\n")
    lines.append(
        table(
            ["shop", "method", "false positives", "95% interval"],
            [
                [r["shop"], r["method"], f"{r['curve'][AA_SESSIONS][0]:.3f}", _interval(r["curve"][AA_SESSIONS])]
                for r in aa
            ],
        )
    )
    compared = [r for r in rows if CANDIDATES[r["candidate"]]]
    lines.append(
        f"\nSessions for the better ranking (by nDCG@10 on the labels) to win in 80% of "
        f"{compared[0]['runs']} experiments\n"
    )
    lines.append(
        table(
            [
                "shop",
                "candidate",
                "nDCG@10 control / candidate",
                "better",
                "method",
                "sessions needed",
                "power at 400",
                "at 1600",
            ],
            [
                [
                    r["shop"],
                    r["candidate"],
                    f"{r['ndcg'][0]:.3f} / {r['ndcg'][1]:.3f}",
                    r["better"],
                    r["method"],
                    r["needed"] if r["needed"] is not None else f"> {LOOKS[-1]}",
                    f"{r['curve'][400][0]:.2f} {_interval(r['curve'][400])}",
                    f"{r['curve'][1600][0]:.2f} {_interval(r['curve'][1600])}",
                ]
                for r in compared
            ],
        )
    )
    if bias:
        lines.append(bias_report(bias))
    text = "\n".join(lines)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    _plot(compared, out / "power.png")
    return text


def _interval(point: tuple[float, float, float]) -> str:
    return f"[{point[1]:.2f}, {point[2]:.2f}]"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        xs = sorted(r["curve"])
        ax.plot(
            xs,
            [r["curve"][x][0] for x in xs],
            marker="o",
            linestyle="-" if r["method"] == "interleave" else "--",
            label=f"shop {r['shop']}, {r['candidate']}, {r['method']}",
        )
    ax.axhline(0.8, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sessions")
    ax.set_ylabel("share of experiments naming the better ranking")
    ax.set_title("Interleaving (solid) against an A/B split (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--seeds", default="301,302")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", required=True)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one shop, in a process of its own
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        tmp = setup_instance(model=args.model, preset="tiny")
        rows = measure_shop(args.one, args.products, args.runs, tmp)
        (out / f"shop-{args.one}.json").write_text(json.dumps(rows), encoding="utf-8")
        return
    rows = []
    for seed in args.seeds.split(","):
        # each shop in a fresh process: its own database and store
        command = [sys.executable, __file__, "--one", seed, "--products", str(args.products)]
        command += ["--runs", str(args.runs), "--out", str(out)] + (["--model", args.model] if args.model else [])
        subprocess.run(command, check=True)
        for row in json.loads((out / f"shop-{seed}.json").read_text(encoding="utf-8")):
            if "curve" in row:
                row["curve"] = {int(n): tuple(v) for n, v in row["curve"].items()}
            rows.append(row)
    print(report(rows, out, args))


if __name__ == "__main__":
    main()
