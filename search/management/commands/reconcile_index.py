from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, Product
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.vector_store import IndexBusyError, IndexUnavailableError
from search.services import index_reconcile


class Command(BaseCommand):
    help = (
        "Compare the vector index with the catalog: points missing for rows marked indexed, orphan "
        "points, rows of another model or changed without being flagged, a collection of another "
        "vector size. Exits 1 when it finds problems; --fix repairs them and indexes what it flagged."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--fix",
            action="store_true",
            help="flag the products for indexing, delete orphan points, rebuild a wrong-size "
            "collection, then index the flagged products here",
        )

    def handle(self, *args, **opts):
        rows = Product.objects.searchable().filter(index_status=IndexStatus.INDEXED).count()
        try:
            with tqdm(total=rows, desc="check", unit="product", disable=opts["verbosity"] == 0, file=sys.stderr) as bar:
                report = index_reconcile(fix=opts["fix"], progress=bar.update)
        except IndexBusyError as exc:
            raise CommandError(
                f"{exc} Stop the server and run this again: the index can only be checked by the process that holds it."
            ) from exc
        except (IndexUnavailableError, ModelUnavailableError) as exc:
            raise CommandError(str(exc)) from exc
        for line in report.lines():
            self.stdout.write(line)
        if report.fixed is not None:
            fixed = report.fixed
            self.stdout.write(
                self.style.SUCCESS(
                    f"Fixed: indexed {fixed.indexed}, payload updated {fixed.payload_updated}, orphans removed "
                    f"{fixed.removed}, failed {fixed.failed}."
                )
            )
            for pk, error in list(fixed.errors.items())[:20]:
                self.stderr.write(self.style.ERROR(f"product {pk}: {error}"))
        elif report.problems:
            self.stdout.write("Run `python manage.py reconcile_index --fix` to repair the index from the database.")
            sys.exit(1)
