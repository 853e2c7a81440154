from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.management import store_open
from search.retrieval import fusion
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.experiments import MIN_STEP_CLICKS
from search.selectors.calibrations import DATABASE, calibration_source
from search.services.calibrating import (
    NotEnoughEvidence,
    calibration_from_evidence,
    calibration_remove,
    calibration_save,
    evidence_from_clicks,
    evidence_from_labels,
    evidence_merge,
    labels_read,
)


class Command(BaseCommand):
    help = (
        "Fit the fusion calibration of the model in use on this shop's clicks and labelled queries, and keep "
        "it with the model: word searches then rank every product, with or without an image or a "
        'description, on one relevance scale (docs/architecture.md, "Fusion calibration"). With '
        "SEARCH_FUSION_CALIBRATION=FILE it is written to that file instead (a candidate for "
        "`experiment start --candidate-calibration FILE`)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queries",
            metavar="FILE",
            help='labelled queries, JSONL: {"query": "red mug", "relevance": {"SKU-1": 3, ...}} '
            "(grades 0-3; products not listed are irrelevant)",
        )
        parser.add_argument("--no-clicks", action="store_true", help="leave the search log out")
        parser.add_argument("--days", type=int, default=90, help="the search log's last DAYS days (default 90)")
        parser.add_argument(
            "--no-weighing",
            action="store_true",
            help="take clicks as they are, even where the log's swaps measure the position bias (to compare)",
        )
        parser.add_argument(
            "--remove",
            action="store_true",
            help="delete the model's calibration: searches fuse with SEARCH_FUSION_WEIGHTS again",
        )

    def handle(
        self, *args, queries: str | None, no_clicks: bool, days: int, remove: bool, no_weighing: bool, **options
    ):
        if calibration_source() is None:
            raise CommandError("SEARCH_FUSION_CALIBRATION is off; set it to auto (or a file) to keep a calibration.")
        if remove:
            where, removed = calibration_remove()
            if removed:
                self.stdout.write(f"Removed from {where}: searches fuse with SEARCH_FUSION_WEIGHTS.")
            else:
                self.stdout.write(f"There is no calibration in {where}: searches fuse with SEARCH_FUSION_WEIGHTS.")
            return
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if no_clicks and not queries:
            raise CommandError("Nothing to fit on: give --queries FILE, or leave out --no-clicks.")
        store_open(action="fit", why="the fit searches the store")
        parts = []
        if queries:
            try:
                rows = labels_read(queries)
                parts.append(evidence_from_labels(r for r in rows if r.get("kind", "semantic") == "semantic"))
            except (OSError, ValueError, TypeError) as exc:
                raise CommandError(f"{queries}: {exc}") from exc
        if not no_clicks:
            parts.append(evidence_from_clicks(days=days, weigh=not no_weighing))
        evidence = evidence_merge(*parts)
        with tqdm(
            total=len(evidence.labels),
            desc="search again",
            unit="query",
            disable=options["verbosity"] == 0 or not evidence.labels,
        ) as bar:
            try:
                calibration = calibration_from_evidence(evidence, progress=bar.update)
            except (NotEnoughEvidence, ModelUnavailableError) as exc:
                raise CommandError(str(exc)) from exc

        saved = calibration_save(calibration)
        self.stdout.write(_fitted_said(calibration, no_weighing))
        # a file is read by the processes whose setting names it; the database's row by every
        # process that reads the database's (auto)
        readers = (
            "every process"
            if calibration_source() == DATABASE
            else f"every process with SEARCH_FUSION_CALIBRATION={saved}"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Saved in {saved}: word searches with model {calibration.fitted['model']} use it now, in {readers}."
            )
        )


def _fitted_said(calibration: fusion.Calibration, no_weighing: bool) -> str:
    fitted = calibration.fitted
    lines = [
        f"Fitted on {fitted['queries']} queries ({fitted['labelled_queries']} labelled, "
        f"{fitted['click_queries']} from the search log; a query can be both), {fitted['rows']} (query, product) rows.",
        "Clicks taken as they are (--no-weighing)."
        if no_weighing
        else _weighing_said(fitted.get("clicks_weighed"), fitted["click_queries"]),
        "",
        "| feature | coefficient |",
        "|---|---|",
    ]
    lines += [f"| {name} | {calibration.coefficients[name]:+.3f} |" for name in fusion.FEATURES]
    return "\n".join(lines)


def _weighing_said(propensities: list[float] | None, click_queries: int) -> str:
    if propensities:
        deepest = len(propensities)
        return (
            f"Clicks weighed by how often shoppers look at their positions, measured from the log's swaps "
            f"down to position {deepest} (there {propensities[-1]:.2f} of position 1's); a click deeper "
            f"weighs as one at {deepest}."
        )
    if not click_queries:
        return ""
    return (
        "Clicks taken as they are, with their position bias: the log's swaps (SEARCH_SWAP_PROBABILITY) do not "
        f"measure it yet (each step needs {MIN_STEP_CLICKS} clicks on both sides of a swap)."
    )
