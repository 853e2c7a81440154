from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from lab.sample import generate_catalog


class Command(BaseCommand):
    help = "Write a deterministic sample catalog (catalog.jsonl + drawn images/) for a seed."

    def add_arguments(self, parser):
        parser.add_argument("out_dir")
        parser.add_argument("--products", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--missing-image", type=float, default=0.1, help="fraction without image")
        parser.add_argument("--missing-description", type=float, default=0.1, help="fraction without description")
        parser.add_argument(
            "--queries", type=int, default=60, help="labelled shopper queries written to queries.jsonl (0: none)"
        )

    def handle(
        self,
        *args,
        out_dir: str,
        products: int,
        seed: int,
        missing_image: float,
        missing_description: float,
        queries: int,
        **options,
    ):
        if products < 1:
            raise CommandError("--products must be at least 1.")
        with tqdm(total=products, desc="products", unit="product", disable=options["verbosity"] == 0) as bar:
            try:
                path = generate_catalog(
                    Path(out_dir),
                    products=products,
                    seed=seed,
                    missing_image=missing_image,
                    missing_description=missing_description,
                    queries=queries,
                    progress=bar.update,
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        extra = f" and {queries} labelled queries to {path.parent / 'queries.jsonl'}" if queries else ""
        self.stdout.write(self.style.SUCCESS(f"Wrote {products} products to {path}{extra}"))
