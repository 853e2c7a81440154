from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from lab.evaluation import queries_load
from lab.simulation import shoppers_simulate
from search.management import store_open
from search.retrieval.encoders import ModelUnavailableError


class Command(BaseCommand):
    help = (
        "Search with labelled queries through the real search service and click with a "
        "position-biased click model driven by graded relevance; fills the real click log."
    )

    def add_arguments(self, parser):
        parser.add_argument("--queries", required=True)
        parser.add_argument("--sessions", type=int, required=True)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--strategy", help="default: SEARCH_STRATEGY")

    def handle(self, *args, queries: str, sessions: int, seed: int, strategy: str | None, **options):
        if sessions < 1:
            raise CommandError("--sessions must be at least 1.")
        try:
            labelled = queries_load(queries)
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        store_open(action="simulate", why="the simulated shoppers search the store")
        with tqdm(total=sessions, desc="shoppers", unit="session", disable=options["verbosity"] == 0) as bar:
            try:
                report = shoppers_simulate(
                    queries=labelled, sessions=sessions, seed=seed, strategy=strategy, progress=bar.update
                )
            except ModelUnavailableError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{report.sessions} sessions, {report.searches} searches ({report.logged} logged), {report.clicks} clicks."
        )
