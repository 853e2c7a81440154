"""The quality grid: generated shops of several seeds and missing-field rates, each measured with
the default settings by `evaluate_search --cross-fit` in its own process (own SQLite database and
Qdrant folder), then read back into one table with the paired tests of every cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .evaluation import BASELINES, MATCH_MEASURES, PUSHDOWN_TOLERANCE, UNCALIBRATED
from .sample import generate_catalog
from .significance import comparison_text, holm, interval_text

SCOPES = (("overall", "overall"), ("no image", "no_image"), ("no description", "no_description"))


@dataclass(frozen=True)
class Cell:
    seed: int
    missing_image: float
    missing_description: float

    @property
    def name(self) -> str:
        return f"seed{self.seed}-image{self.missing_image:g}-description{self.missing_description:g}"


def model_fingerprint(model: str) -> str:
    """Changes when the model's files do (a demo model trained again at the same path), so the
    stores built with the old one are not read as this one's."""
    folder = Path(model)
    digest = hashlib.sha256(model.encode())
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def cell_prepare(out: Path, cell: Cell, *, products: int, queries: int) -> Path:
    """The cell's catalog (generated once per parameters: the drawn images are cached with it)
    and its semantic queries; returns the cell's folder."""
    folder = out / cell.name
    params = {
        "seed": cell.seed,
        "missing_image": cell.missing_image,
        "missing_description": cell.missing_description,
        "products": products,
        "queries": queries,
    }
    marker = folder / "params.json"
    if not marker.exists() or json.loads(marker.read_text()) != params:
        generate_catalog(
            folder / "catalog",
            products=products,
            seed=cell.seed,
            missing_image=cell.missing_image,
            missing_description=cell.missing_description,
            queries=queries,
        )
        marker.write_text(json.dumps(params))
    rows = [json.loads(line) for line in (folder / "catalog" / "queries.jsonl").read_text().splitlines() if line]
    (folder / "semantic.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r.get("kind", "semantic") == "semantic")
    )
    return folder


def cell_run(folder: Path, *, model: str, folds: int, strategies: Sequence[str], threads: int) -> dict:
    """evaluate_search --cross-fit in a process of its own, with the default fusion settings; the
    store of each model is kept in the cell (var-<fingerprint>), so a run again encodes nothing."""
    fingerprint = model_fingerprint(model)
    for old in folder.glob("var-*"):
        if old.name != f"var-{fingerprint}":
            shutil.rmtree(old)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL", "QDRANT_PATH", "SEARCH_FUSION_WEIGHTS")
    }
    env.update(
        SHOP_SEARCH_VAR_DIR=str(folder / f"var-{fingerprint}"),
        SEARCH_EMBEDDING_MODEL=model,
        SEARCH_FUSION_CALIBRATION="off",
        LOG_LEVEL="WARNING",
        OMP_NUM_THREADS=str(threads),
        SEARCH_SERVE_TORCH_THREADS=str(threads),
    )
    manage = [sys.executable, str(Path(__file__).resolve().parent.parent / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "--verbosity", "0"], env=env, check=True)
    log = folder / "evaluate.log"
    with log.open("w") as handle:
        done = subprocess.run(
            [
                *manage,
                "evaluate_search",
                "--catalog",
                str(folder / "catalog"),
                "--queries",
                str(folder / ("semantic.jsonl" if folds else "catalog/queries.jsonl")),
                "--strategies",
                ",".join(strategies),
                *(["--cross-fit", str(folds)] if folds else []),
                "--report",
                str(folder / "report"),
                "--verbosity",
                "0",
            ],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        raise RuntimeError(f"{folder.name}: evaluate_search failed; see {log}")
    return json.loads((folder / "report" / "report.json").read_text())


def grid_run(
    out: Path,
    cells: Sequence[Cell],
    *,
    model: str,
    products: int,
    queries: int,
    folds: int,
    strategies: Sequence[str],
    jobs: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Every cell's report.json by cell name; `jobs` cells at a time."""
    out.mkdir(parents=True, exist_ok=True)
    folders = {cell.name: cell_prepare(out, cell, products=products, queries=queries) for cell in cells}
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def one(cell: Cell) -> tuple[str, dict]:
        report = cell_run(folders[cell.name], model=model, folds=folds, strategies=strategies, threads=threads)
        if progress:
            progress(cell.name)
        return cell.name, report

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(one, cells))


def _cell_match_sets(strategies: dict) -> dict:
    """A cell's match-set figures and nonsense share, of normalized and (when measured) the
    weights and cutoff alone."""
    mine = [s for s in ("normalized", UNCALIBRATED) if s in strategies]
    return {
        "match_sets": {s: strategies[s].get("match_sets", {}) for s in mine},
        "nonsense": {s: strategies[s].get("kinds", {}).get("nonsense", {}).get("value") for s in mine},
    }


def grid_summary(cells: Sequence[Cell], reports: dict[str, dict], *, tolerance: float = PUSHDOWN_TOLERANCE) -> dict:
    """Per cell: normalized's nDCG@10 and, per scope, the best baseline's and the paired test
    against it; the push-down intervals; whether each target holds. Holm-adjusted p-values over
    every comparison of the grid (a family of many tests)."""
    rows = []
    for cell in cells:
        report = reports[cell.name]
        strategies, comparisons = report["strategies"], report["comparisons"]
        mine = strategies["normalized"]
        row = {
            "cell": cell.name,
            "seed": cell.seed,
            "missing_image": cell.missing_image,
            "missing_description": cell.missing_description,
            "queries": mine["queries"],
            "scopes": {},
        }
        for _label, key in SCOPES:

            def value(r, key=key):
                return r["overall"]["ndcg@10"] if key == "overall" else r["slices"][key]["ndcg@10"]

            baselines = {s: r for s, r in strategies.items() if s in BASELINES}
            best = max(baselines, key=lambda s: value(baselines[s]))
            row["scopes"][key] = {
                "normalized": value(mine),
                "best": best,
                "best_value": value(baselines[best]),
                "uncalibrated": value(strategies[UNCALIBRATED]) if UNCALIBRATED in strategies else None,
                "test": comparisons["against"][best][key],
                "met": value(mine) >= value(baselines[best]),
            }
        row["pushdown"] = {
            name: {
                **comparisons["pushdown"]["normalized"][name],
                "uncalibrated": comparisons["pushdown"].get(UNCALIBRATED, {}).get(name),
            }
            for name in ("no_image", "no_description")
        }
        for p in row["pushdown"].values():
            p["met"] = p["value"] is not None and abs(p["value"]) <= tolerance
        row.update(_cell_match_sets(strategies))
        rows.append(row)
    tests = [(i, key) for i, row in enumerate(rows) for _, key in SCOPES]
    adjusted = holm([rows[i]["scopes"][key]["test"]["p_value"] for i, key in tests]) if tests else []
    for (i, key), p in zip(tests, adjusted):
        rows[i]["scopes"][key]["test"]["p_holm"] = p
    met = {f"ndcg_{key}": sum(r["scopes"][key]["met"] for r in rows) for _, key in SCOPES}
    met.update(_match_sets_met(rows))
    met.update(
        {f"pushdown_{name}": sum(r["pushdown"][name]["met"] for r in rows) for name in ("no_image", "no_description")}
    )
    lost = sum(
        r["scopes"][key]["test"]["verdict"] == "loses" and r["scopes"][key]["test"]["p_holm"] < 0.05
        for r in rows
        for _, key in SCOPES
    )
    return {"cells": rows, "met": met, "significant_losses_after_holm": lost}


NONSENSE_TARGET = 0.95  # the share of nonsense queries answered with no results


def _matched(row: dict, strategy: str, kind: str, key: str) -> float:
    value = row.get("match_sets", {}).get(strategy, {}).get(kind, {}).get(key)
    return float((value or {}).get("value") or 0.0)


def _match_sets_met(rows: list[dict]) -> dict[str, int]:
    """In how many cells each match-set target holds (normalized, semantic queries)."""
    met = {
        key: sum(_matched(r, "normalized", "semantic", key) >= target for r in rows)
        for key, (_, target) in MATCH_MEASURES.items()
        if target is not None
    }
    met["nonsense"] = sum((r["nonsense"].get("normalized") or 0) >= NONSENSE_TARGET for r in rows)
    return met


def match_sets_grid_markdown(summary: dict) -> str:
    """Per cell: what a word query matches, the default (in brackets: the weights and cutoff
    alone), with 95% bootstrap intervals; the typo'd queries; nonsense answered with nothing."""
    rows = [r for r in summary["cells"] if r.get("match_sets", {}).get("normalized")]
    if not rows:
        return ""
    lines = [
        "| seed | missing image / description | matches (median) | in the category asked [95% CI] | "
        "grade >= 2 of the matches | grade >= 2 matched [95% CI] | grade >= 2 of the 10 cheapest [95% CI] | "
        "nonsense: no results | typo'd: in category / grade >= 2 matched / 10 cheapest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict, key: str, *, interval: bool = True) -> str:
        own = row["match_sets"]["normalized"].get("semantic", {}).get(key) or {}
        if own.get("value") is None:
            return "n/a"
        _, target = MATCH_MEASURES[key]
        text = f"{own['value']:.3f}"
        if interval and own.get("low") is not None:
            text += f" [{own['low']:.3f}, {own['high']:.3f}]"
        if target is not None and own["value"] < target:
            text += " **miss**"
        before = row["match_sets"].get(UNCALIBRATED, {}).get("semantic", {}).get(key) or {}
        return text + (f" ({before['value']:.3f})" if before.get("value") is not None else "")

    for r in rows:
        own = r["match_sets"]["normalized"]
        before = r["match_sets"].get(UNCALIBRATED, {}).get("semantic", {})
        typo = own.get("typo", {})
        typo_text = " / ".join(
            f"{(typo.get(k) or {}).get('value') or 0:.3f}" for k in ("in_category", "good_matched", "cheapest_good")
        )
        nonsense = r["nonsense"].get("normalized")
        lines.append(
            f"| {r['seed']} | {r['missing_image']:g} / {r['missing_description']:g} | "
            f"{own['semantic']['matches_median']:g} ({before.get('matches_median', 0):g}) | {cell(r, 'in_category')} | "
            f"{cell(r, 'good_share', interval=False)} | {cell(r, 'good_matched')} | {cell(r, 'cheapest_good')} | "
            f"{'n/a' if nonsense is None else f'{nonsense:.2f}'}"
            f"{'' if nonsense is None or nonsense >= NONSENSE_TARGET else ' **miss**'} | {typo_text} |"
        )
    met, n = summary["met"], len(rows)
    lines += [
        "",
        f"Targets over {n} cells: in the category asked >= 0.95 in {met.get('in_category', 0)}, grade >= 2 "
        f"matched >= 0.95 in {met.get('good_matched', 0)}, the 10 cheapest >= 0.80 grade >= 2 in "
        f"{met.get('cheapest_good', 0)}, nonsense with no results >= 0.95 in {met.get('nonsense', 0)}.",
    ]
    return "\n".join(lines)


def grid_markdown(summary: dict) -> str:
    lines = [
        "| seed | missing image / description | nDCG@10 normalized (uncalibrated) | best baseline | "
        "normalized - best [95% CI] | no image: normalized vs best | no description: normalized vs best | "
        "MRR loss no image [95% CI] (uncalibrated) | MRR loss no description [95% CI] (uncalibrated) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["cells"]:
        o, i, d = (r["scopes"][k] for k in ("overall", "no_image", "no_description"))
        tick = {True: "", False: " **miss**"}
        lines.append(
            f"| {r['seed']} | {r['missing_image']:g} / {r['missing_description']:g} | "
            f"{o['normalized']:.3f} ({o['uncalibrated']:.3f}) | {o['best']} {o['best_value']:.3f} | "
            f"{comparison_text(o['test'], p_value=False)}{tick[o['met']]} | "
            f"{i['normalized']:.3f} vs {i['best']} {i['best_value']:.3f}, {i['test']['verdict']}{tick[i['met']]} | "
            f"{d['normalized']:.3f} vs {d['best']} {d['best_value']:.3f}, {d['test']['verdict']}{tick[d['met']]} | "
            f"{interval_text(r['pushdown']['no_image'], decimals=0)}{tick[r['pushdown']['no_image']['met']]} "
            f"({interval_text(r['pushdown']['no_image']['uncalibrated'], decimals=0)}) | "
            f"{interval_text(r['pushdown']['no_description'], decimals=0)}"
            f"{tick[r['pushdown']['no_description']['met']]} "
            f"({interval_text(r['pushdown']['no_description']['uncalibrated'], decimals=0)}) |"
        )
    n, met = len(summary["cells"]), summary["met"]
    lines += [
        "",
        f"Targets over {n} cells: normalized >= every baseline on nDCG@10 overall in {met['ndcg_overall']}, "
        f"on products without an image in {met['ndcg_no_image']}, without a description in "
        f"{met['ndcg_no_description']}; products missing a field within +-{PUSHDOWN_TOLERANCE:.0%} of the MRR of "
        "complete ones: "
        f"no image in {met['pushdown_no_image']}, no description in {met['pushdown_no_description']}. "
        f"Losses to the best baseline that stay significant after Holm's correction over the grid's "
        f"{3 * n} tests: {summary['significant_losses_after_holm']}.",
    ]
    matched = match_sets_grid_markdown(summary)
    return "\n".join(lines) + (f"\n\nWhat each word query matches:\n\n{matched}" if matched else "")


def grid_chart(summary: dict, path: Path) -> Path:
    """nDCG@10 (normalized, uncalibrated, best baseline) and the MRR loss, by missing-field rate,
    one point per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary["cells"]
    rate = [c["missing_image"] for c in cells]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=120)
    for n, (label, get, marker) in enumerate(
        (
            ("normalized (calibrated)", lambda c: c["scopes"]["overall"]["normalized"], "o"),
            ("normalized, weights only", lambda c: c["scopes"]["overall"]["uncalibrated"], "s"),
            ("best baseline", lambda c: c["scopes"]["overall"]["best_value"], "^"),
        )
    ):
        left.scatter(
            [r + (n - 1) * 0.008 for r in rate], [get(c) for c in cells], label=label, marker=marker, alpha=0.8
        )
    left.set_xlabel("share of products missing an image (and a description)")
    left.set_ylabel("nDCG@10")
    left.set_title("nDCG@10, one point per shop")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    series = [
        (f"{name.replace('_', ' ')}, {kind}", name, kind, marker)
        for kind, markers in (("calibrated", ("o", "s")), ("weights only", ("x", "+")))
        for name, marker in zip(("no_image", "no_description"), markers)
    ]
    for n, (label, name, kind, marker) in enumerate(series):
        points = [c["pushdown"][name] if kind == "calibrated" else c["pushdown"][name]["uncalibrated"] for c in cells]
        keep = [(r, p) for r, p in zip(rate, points) if p and p.get("value") is not None]
        x = [r + (n - 1.5) * 0.007 for r, _ in keep]
        values = [p["value"] for _, p in keep]
        errors = [
            [p["value"] - (p["low"] if p["low"] is not None else p["value"]) for _, p in keep],
            [(p["high"] if p["high"] is not None else p["value"]) - p["value"] for _, p in keep],
        ]
        right.errorbar(x, values, yerr=errors, fmt=marker, label=label, alpha=0.8, capsize=2)
    right.axhspan(
        -PUSHDOWN_TOLERANCE, PUSHDOWN_TOLERANCE, color="green", alpha=0.15, label=f"target +-{PUSHDOWN_TOLERANCE:.0%}"
    )
    right.set_xlabel("share of products missing an image (and a description)")
    right.set_ylabel("MRR loss against complete products")
    right.set_title("products missing a field (95% intervals; < 0: ranked higher)")
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["Cell", "grid_chart", "grid_markdown", "grid_run", "grid_summary", "model_fingerprint"]
