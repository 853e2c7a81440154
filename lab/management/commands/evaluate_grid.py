from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lab.evaluation import UNCALIBRATED
from lab.grid import Cell, grid_chart, grid_markdown, grid_run, grid_summary
from search.retrieval.providers import embedding_model_id
from search.selectors import STRATEGIES


def _cells(seeds: str, rates: str, *, mixed: bool) -> list[Cell]:
    """A shop per seed and missing-field rate (the same rate for images and descriptions), and
    with `mixed` the lowest and highest rates crossed too."""
    seed_list = _numbers(seeds, int, "seeds")
    rate_list = _numbers(rates, float, "rates")
    if any(not 0 <= r <= 1 for r in rate_list):
        raise CommandError("--rates must be between 0 and 1.")
    cells = [Cell(seed, rate, rate) for seed in seed_list for rate in rate_list]
    if mixed:
        low, high = min(rate_list), max(rate_list)
        cells += [Cell(seed, a, b) for seed in seed_list for a, b in ((high, low), (low, high))]
    return cells


def _mixes(seeds: str, mixes: str) -> list[Cell]:
    """A shop per seed and "image/description" missing rates pair."""
    cells = []
    for pair in filter(None, (p.strip() for p in mixes.split(","))):
        try:
            image, description = (float(v) for v in pair.split("/"))
        except ValueError:
            raise CommandError(
                f"--mixes: write image/description rate pairs, e.g. 0.3/0.3,0.5/0.05 ({pair!r})"
            ) from None
        if not (0 <= image <= 1 and 0 <= description <= 1):
            raise CommandError("--mixes: rates are between 0 and 1.")
        cells += [Cell(seed, image, description) for seed in _numbers(seeds, int, "seeds")]
    return sorted(cells, key=lambda c: (c.seed, -c.missing_image, -c.missing_description))


def _numbers(raw: str, kind, name: str) -> list:
    try:
        values = [kind(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"--{name}: write comma-separated numbers, e.g. 0.05,0.15,0.3,0.5") from None
    if not values:
        raise CommandError(f"--{name}: give at least one value")
    return values


class Command(BaseCommand):
    help = (
        "Measure search quality on a grid of generated shops (seeds x missing-field rates), each with the default "
        "settings and the fusion calibration cross-fitted on its own labelled queries; writes grid.md, grid.json, "
        "grid.png."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out",
            required=True,
            help="folder for the cells (catalogs and stores are kept there "
            "and reused by the next run) and the grid report",
        )
        parser.add_argument("--seeds", default="301,302,303")
        parser.add_argument(
            "--rates",
            default="0.05,0.15,0.3,0.5",
            help="missing-image and missing-description rates (a cell per rate, both fields)",
        )
        parser.add_argument(
            "--mixed",
            action="store_true",
            help="also the cells with one field missing at the highest rate and the other at the lowest",
        )
        parser.add_argument(
            "--mixes",
            help="instead of --rates: image/description missing-rate pairs, e.g. 0.3/0.3,0.5/0.05,0.05/0.5",
        )
        parser.add_argument("--products", type=int, default=1500)
        parser.add_argument("--queries", type=int, default=200)
        parser.add_argument(
            "--folds",
            type=int,
            default=2,
            help="cross-fit the calibration over this many folds of each shop's queries; 0: no labels, "
            "the default a shop has on its first day (against normalized-uncalibrated, the weights and "
            "cutoff alone), over every kind of query",
        )
        parser.add_argument("--strategies", default="normalized,avg,rrf,dbsf,text")
        parser.add_argument("--jobs", type=int, default=2, help="cells measured at once (each in its own process)")

    def handle(
        self,
        *args,
        out: str,
        seeds: str,
        rates: str,
        mixed: bool,
        mixes: str | None,
        products: int,
        queries: int,
        folds: int,
        strategies: str,
        jobs: int,
        **options,
    ):
        if folds == 1 or folds < 0 or jobs < 1 or products < 10 or queries < 20:
            raise CommandError("--folds 0 or >= 2, --jobs >= 1, --products >= 10, --queries >= 20.")
        wanted = [s.strip() for s in strategies.split(",") if s.strip()]
        if "normalized" not in wanted or set(wanted) - set(STRATEGIES):
            raise CommandError(f"--strategies must include normalized, from {', '.join(STRATEGIES)}.")
        if not folds:
            wanted.insert(wanted.index("normalized") + 1, UNCALIBRATED)
        cells = _mixes(seeds, mixes) if mixes else _cells(seeds, rates, mixed=mixed)
        folder = Path(out)
        started = time.monotonic()
        done = []

        def progress(name: str) -> None:
            done.append(name)
            self.stdout.write(f"[{len(done)}/{len(cells)}] {name} measured ({time.monotonic() - started:.0f} s)")

        self.stdout.write(f"{len(cells)} cells, {jobs} at a time, model {embedding_model_id()}")
        try:
            reports = grid_run(
                folder,
                cells,
                model=embedding_model_id(),
                products=products,
                queries=queries,
                folds=folds,
                strategies=wanted,
                jobs=jobs,
                progress=progress,
            )
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self._write(
            folder, grid_summary(cells, reports), cells=len(cells), products=products, queries=queries, folds=folds
        )
        self.stdout.write(
            self.style.SUCCESS(f"Grid written to {folder}/grid.md, .json, .png ({time.monotonic() - started:.0f} s)")
        )

    def _write(self, folder: Path, summary: dict, *, cells: int, products: int, queries: int, folds: int) -> None:
        fused = (
            f"calibration cross-fitted over {folds} folds of each shop's queries"
            if folds
            else "no labels, no clicks: the relevance model fitted from each catalog (in brackets: the weights "
            "and cutoff alone, the default before it)"
        )
        text = (
            f"{cells} shops of {products} products, {queries} labelled queries each; model "
            f"`{embedding_model_id()}`; default settings; {fused}.\n\n{grid_markdown(summary)}"
        )
        (folder / "grid.md").write_text(text + "\n", encoding="utf-8")
        (folder / "grid.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        grid_chart(summary, folder / "grid.png")
        self.stdout.write(f"\n{text}\n")
