from __future__ import annotations

import json
import random
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, Product
from catalog.services import catalog_import
from lab.evaluation import (
    UNCALIBRATED,
    chart,
    comparison_markdown,
    evaluate,
    field_slices,
    kinds_markdown,
    markdown,
    match_sets_markdown,
    queries_load,
    significance,
    significance_markdown,
    targets_check,
    tuning_markdown,
    weight_sets_parse,
)
from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.fusion import weights_format
from search.retrieval.providers import embedding_model_id, fusion_weights, get_encoder
from search.selectors import STRATEGIES
from search.selectors.calibrations import calibration_source, fusion_calibration
from search.services import products_index
from search.services.calibrating import NotEnoughEvidence, calibration_from_evidence, evidence_from_labels
from search.services.relevance import relevance_fit_if_due


class Command(BaseCommand):
    help = (
        "Measure search quality on labelled queries (nDCG@10, MRR@10, Recall@50 per strategy, "
        "overall and per missing-field slice); writes Markdown, JSON and a PNG chart."
    )

    def add_arguments(self, parser):
        parser.add_argument("--catalog", required=True, help="folder with catalog.jsonl (generate_catalog)")
        parser.add_argument("--queries", help="default: CATALOG/queries.jsonl")
        parser.add_argument("--strategies", default=",".join(STRATEGIES))
        parser.add_argument("--report", help="folder for report.md, report.json, report.png")
        parser.add_argument(
            "--tune-weights",
            metavar="SETS",
            help="try these SEARCH_FUSION_WEIGHTS for normalized, e.g. "
            "'text=1,image=1;text=1,image=0.5'; the best (overall nDCG@10) is used for "
            "the report and written to REPORT/weights.env",
        )
        parser.add_argument("--baseline", help="an earlier report.json to compare with (before -> after)")
        parser.add_argument(
            "--cross-fit",
            type=int,
            default=0,
            metavar="K",
            help="fit the fusion calibration on the labelled queries themselves, K folds: each "
            "query is ranked with the calibration fitted on the other folds (K >= 2); adds "
            f"{UNCALIBRATED} (SEARCH_FUSION_WEIGHTS, no calibration)",
        )

    def handle(
        self,
        *args,
        catalog: str,
        queries: str | None,
        strategies: str,
        report: str | None,
        tune_weights: str | None,
        baseline: str | None,
        cross_fit: int,
        **options,
    ):
        folder = Path(catalog)
        if not (folder / "catalog.jsonl").is_file():
            raise CommandError(f"No catalog.jsonl in {folder}.")
        wanted = self._strategies(strategies, cross_fit, tune_weights)
        try:
            labelled = queries_load(queries or folder / "queries.jsonl")
            weight_sets = weight_sets_parse(tune_weights) if tune_weights else []
            before = json.loads(Path(baseline).read_text(encoding="utf-8"))["strategies"] if baseline else None
            get_encoder()
        except (OSError, ValueError, KeyError, ModelUnavailableError) as exc:
            raise CommandError(str(exc)) from exc
        quiet = options["verbosity"] == 0
        rows = self._catalog_indexed(folder / "catalog.jsonl", quiet)
        self._relevance_fitted(quiet)
        slices = field_slices(rows)
        weights, tuning = self._weights_tuned(labelled, slices, weight_sets, quiet)
        calibration_of = None
        if cross_fit:
            calibration_of = self._cross_fit(labelled, cross_fit, quiet)
            if "normalized" in wanted and UNCALIBRATED not in wanted:
                wanted.insert(wanted.index("normalized") + 1, UNCALIBRATED)
        with tqdm(total=len(labelled) * len(wanted), desc="evaluate", unit="query", disable=quiet) as bar:
            results = evaluate(
                queries=labelled,
                slices=slices,
                strategies=wanted,
                weights=weights,
                progress=bar.update,
                calibration_of=calibration_of,
            )
        comparisons = significance(results)
        targets = targets_check(results, before, comparisons)
        weights_used = weights_format(weights or fusion_weights())
        text = self._report_text(labelled, results, comparisons, targets, before, weights, weights_used, cross_fit)
        self.stdout.write(f"\n{text}\n")
        if report:
            meta = {
                "catalog": str(folder),
                "queries": len(labelled),
                "model": embedding_model_id(),
                "weights": weights_used,
                "cross_fit": cross_fit,
                "comparisons": comparisons,
            }
            self._report_write(Path(report), meta, text, results, tuning, targets, weights_used)

    def _strategies(self, strategies: str, cross_fit: int, tune_weights: str | None) -> list[str]:
        """The strategies asked for, and the options checked together."""
        wanted = [s.strip() for s in strategies.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in (*STRATEGIES, UNCALIBRATED)]
        if unknown:
            raise CommandError(f"Unknown strategy {', '.join(unknown)}; use {', '.join((*STRATEGIES, UNCALIBRATED))}.")
        if cross_fit == 1 or cross_fit < 0:
            raise CommandError("--cross-fit needs at least 2 folds (or 0: the model's own calibration, if any).")
        if cross_fit and tune_weights:
            raise CommandError("--cross-fit and --tune-weights measure two different fusions; run them apart.")
        return wanted

    def _catalog_indexed(self, catalog_file: Path, quiet: bool) -> list[dict]:
        """Index the catalog if needed: import (unchanged rows are skipped), then embed what is not
        yet indexed with this model, here, so the numbers never race a queue. Returns its rows."""
        rows = [json.loads(line) for line in catalog_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        result = catalog_import(source=catalog_file)
        if result.errors:
            raise CommandError(f"The catalog has {result.failed} bad rows; fix them first.")
        todo = list(
            Product.objects.filter(sku__in=[r["sku"] for r in rows])
            .exclude(index_status=IndexStatus.INDEXED, indexed_model=embedding_model_id())
            .values_list("pk", flat=True)
        )
        for start in tqdm(range(0, len(todo), 64), desc="index", unit="batch", disable=not todo or quiet):
            products_index(product_ids=todo[start : start + 64])
        return rows

    def _relevance_fitted(self, quiet: bool) -> None:
        """The relevance model of this model on this catalog, fitted here as the sweep would; says
        what it is."""
        if search_config().relevance_threshold <= 0:
            return
        row = relevance_fit_if_due(force=True)  # with this code: a kept fit may be an older version's
        if not quiet and row is not None:
            fitted = (row.fitted or {}).get("fitted", {})
            state = row.problem or f"fitted on {fitted.get('queries')} pseudo-queries in {fitted.get('seconds')} s"
            self.stdout.write(f"Relevance model: {state}")

    def _weights_tuned(self, labelled: list[dict], slices, weight_sets: list, quiet: bool) -> tuple[dict | None, list]:
        """The best of the weight sets by nDCG@10 on the semantic queries, and each set's report."""
        if not weight_sets:
            return None, []
        semantic = [q for q in labelled if q.get("kind", "semantic") == "semantic"]  # what tuning ranks by
        tuning = []
        with tqdm(total=len(semantic) * len(weight_sets), desc="tune weights", unit="query", disable=quiet) as bar:
            for candidate in weight_sets:
                measured = evaluate(
                    queries=semantic, slices=slices, strategies=["normalized"], weights=candidate, progress=bar.update
                )
                tuning.append((candidate, measured["normalized"]))
        weights = max(tuning, key=lambda t: t[1]["overall"]["ndcg@10"])[0]
        self.stdout.write(
            f"\nnormalized with each weight set:\n\n{tuning_markdown(tuning)}\n\n"
            f"Best: SEARCH_FUSION_WEIGHTS={weights_format(weights)}"
        )
        return weights, tuning

    def _report_text(self, labelled, results, comparisons, targets, before, weights, weights_used, cross_fit) -> str:
        stored = calibration_source() if not cross_fit and not weights and fusion_calibration() else None
        if cross_fit:
            fused = (
                f"normalized: calibration cross-fitted over {cross_fit} folds; {UNCALIBRATED}: "
                f"SEARCH_FUSION_WEIGHTS={weights_used}"
            )
        elif stored:
            fused = f"normalized: the model's fitted calibration ({stored})"
        else:
            fused = f"SEARCH_FUSION_WEIGHTS={weights_used}"
        sections = [f"{len(labelled)} queries, model `{embedding_model_id()}`, {fused}", markdown(results)]
        if comparisons:
            sections += [
                "normalized against each other strategy, paired over the same queries (difference in "
                "nDCG@10 [95% confidence interval] and p-value of a paired t-test):",
                significance_markdown(comparisons),
            ]
        if any(r.get("match_sets") for r in results.values()):
            sections += [
                "What each word query matches (mean over queries [95% bootstrap interval]; the typo rows are "
                "the semantic queries typed with slips):",
                match_sets_markdown(results),
            ]
        if any(r.get("kinds", {}).keys() - {"semantic"} for r in results.values()):
            sections += ["Per query kind (the table above is the semantic queries):", kinds_markdown(results)]
        if before is not None:
            sections += ["Against the baseline report (before -> after):", comparison_markdown(before, results)]
        if targets:
            sections.append(
                "Targets:\n\n"
                + "\n".join(f"- [{'x' if met else ' '}] {name}: {figures}" for name, met, figures in targets)
            )
        return "\n\n".join(sections)

    def _report_write(self, out: Path, meta: dict, text: str, results, tuning, targets, weights_used: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        document = {
            **meta,
            "strategies": results,
            "tuning": [{"weights": w, **r} for w, r in tuning],
            "targets": [{"target": n, "met": m, "figures": f} for n, m, f in targets],
        }
        (out / "report.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
        (out / "report.md").write_text(text + "\n", encoding="utf-8")
        if tuning:
            (out / "weights.env").write_text(f"SEARCH_FUSION_WEIGHTS={weights_used}\n", encoding="utf-8")
        chart(results, out / "report.png", title=f"nDCG@10 by strategy ({meta['queries']} queries)")
        self.stdout.write(self.style.SUCCESS(f"Report written to {out}/report.md, .json, .png"))

    def _cross_fit(self, labelled: list[dict], folds: int, quiet: bool):
        """One calibration per fold, fitted on the semantic queries of the other folds; returns
        each query's: a semantic query its fold's, a typo its clean query's, the others fold 0's."""
        semantic = [q for q in labelled if q.get("kind", "semantic") == "semantic"]
        order = sorted(semantic, key=lambda q: q.get("id", q["query"]))
        random.Random(CROSS_FIT_SEED).shuffle(order)
        fold_of = {q.get("id", q["query"]): i % folds for i, q in enumerate(order)}
        calibrations = []
        with tqdm(total=len(semantic), desc="cross-fit", unit="query", disable=quiet) as bar:
            for fold in range(folds):
                others = [q for q in semantic if fold_of[q.get("id", q["query"])] != fold]
                try:
                    calibrations.append(calibration_from_evidence(evidence_from_labels(others), progress=bar.update))
                except NotEnoughEvidence as exc:
                    raise CommandError(f"fold {fold + 1} of {folds}: {exc}") from exc

        def calibration_of(query: dict):
            key = query.get("clean") if query.get("kind") == "typo" else query.get("id", query["query"])
            return calibrations[fold_of.get(key, 0)]

        return calibration_of


CROSS_FIT_SEED = 20261123
