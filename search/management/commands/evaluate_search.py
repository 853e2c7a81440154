from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, Product
from catalog.services import catalog_import
from search.encoders import ModelUnavailableError
from search.providers import embedding_model_id, get_encoder
from search.quality import chart, evaluate, field_slices, markdown, queries_load
from search.selectors import STRATEGIES
from search.services import products_index


class Command(BaseCommand):
    help = ("Measure search quality on labelled queries (nDCG@10, MRR@10, Recall@50 per strategy, "
            "overall and per missing-field slice); writes Markdown, JSON and a PNG chart.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog", required=True, help="folder with catalog.jsonl (generate_catalog)")
        parser.add_argument("--queries", help="default: CATALOG/queries.jsonl")
        parser.add_argument("--strategies", default=",".join(STRATEGIES))
        parser.add_argument("--report", help="folder for report.md, report.json, report.png")

    def handle(self, *args, catalog: str, queries: str | None, strategies: str, report: str | None, **options):
        folder = Path(catalog)
        catalog_file = folder / "catalog.jsonl"
        if not catalog_file.is_file():
            raise CommandError(f"No catalog.jsonl in {folder}.")
        wanted = [s.strip() for s in strategies.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in STRATEGIES]
        if unknown:
            raise CommandError(f"Unknown strategy {', '.join(unknown)}; use {', '.join(STRATEGIES)}.")
        try:
            labelled = queries_load(queries or folder / "queries.jsonl")
            get_encoder()
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except ModelUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        rows = [json.loads(line) for line in catalog_file.read_text(encoding="utf-8").splitlines() if line.strip()]

        # Index the catalog if needed: import (unchanged rows are skipped), then embed what is
        # not yet indexed with this model, here, so the numbers never race a queue.
        result = catalog_import(source=catalog_file)
        if result.errors:
            raise CommandError(f"The catalog has {result.failed} bad rows; fix them first.")
        skus = [r["sku"] for r in rows]
        todo = list(Product.objects.filter(sku__in=skus).exclude(index_status=IndexStatus.INDEXED,
                                                                 indexed_model=embedding_model_id())
                    .values_list("pk", flat=True))
        for start in tqdm(range(0, len(todo), 64), desc="index", unit="batch", disable=not todo or options["verbosity"] == 0):
            products_index(product_ids=todo[start:start + 64])

        with tqdm(total=len(labelled) * len(wanted), desc="evaluate", unit="query",
                  disable=options["verbosity"] == 0) as bar:
            results = evaluate(queries=labelled, slices=field_slices(rows), strategies=wanted, progress=bar.update)
        table = markdown(results)
        self.stdout.write(f"\n{len(labelled)} queries, model {embedding_model_id()}\n\n{table}\n")
        if report:
            out = Path(report)
            out.mkdir(parents=True, exist_ok=True)
            meta = {"catalog": str(folder), "queries": len(labelled), "model": embedding_model_id()}
            (out / "report.json").write_text(json.dumps({**meta, "strategies": results}, indent=2), encoding="utf-8")
            (out / "report.md").write_text(f"{len(labelled)} queries, model `{embedding_model_id()}`\n\n{table}\n",
                                           encoding="utf-8")
            chart(results, out / "report.png", title=f"nDCG@10 by strategy ({len(labelled)} queries)")
            self.stdout.write(self.style.SUCCESS(f"Report written to {out}/report.md, .json, .png"))
