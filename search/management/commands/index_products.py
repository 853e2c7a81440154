from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.vector_store import IndexBusyError, IndexSchemaError, IndexUnavailableError
from search.services import IndexReport, model_switch_advance, products_index
from search.tasks import products_enqueue


class Command(BaseCommand):
    help = "Embed products into the vector index, in this process with a progress bar (or --queue)."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every product")
        which.add_argument("--dirty", action="store_true", help="products pending indexing")
        which.add_argument("--failed", action="store_true", help="products whose indexing failed")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--force", action="store_true", help="re-embed even if unchanged")
        parser.add_argument(
            "--recreate",
            action="store_true",
            help="drop and recreate the collection first (after a model change of size)",
        )
        parser.add_argument(
            "--queue", action="store_true", help="send tasks to the Celery workers instead of indexing here"
        )

    def handle(self, *args, **opts):
        products = Product.objects.all()
        if opts["dirty"]:
            products = products.filter(index_status=IndexStatus.PENDING)
        elif opts["failed"]:
            products = products.filter(index_status=IndexStatus.FAILED)
        ids = list(products.order_by("pk").values_list("pk", flat=True))
        if opts["queue"]:
            self._queue(ids, opts["batch_size"])
            return
        try:
            index = self._store(recreate=opts["recreate"])
        except IndexBusyError as exc:
            self._hand_over(exc, ids, force=opts["force"], recreate=opts["recreate"])
            return
        try:
            encoder = providers.get_encoder()
        except ModelUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        if opts["recreate"]:
            index.drop()  # rebuilt in place for the configured model: no switch
        else:
            model_switch_advance()  # a changed model: flag what its store lacks...
            index = providers.indexing_index()  # ...and fill that store while the old one serves
            if opts["dirty"]:
                ids = list(Product.objects.pending().order_by("pk").values_list("pk", flat=True))
        total = self._indexed(ids, encoder, index, force=opts["force"] or opts["recreate"], opts=opts)
        self.stdout.write(
            f"Indexed {total.indexed}, unchanged {total.skipped}, payload updated "
            f"{total.payload_updated}, removed {total.removed}, failed {total.failed}."
        )
        if not opts["recreate"]:
            self._switch_said(encoder.model_id)
        for pk, error in list(total.errors.items())[:20]:
            self.stderr.write(self.style.ERROR(f"product {pk}: {error}"))

    def _queue(self, ids: list[int], batch_size: int) -> None:
        queued = products_enqueue(product_ids=ids, batch_size=batch_size)
        if queued.unsent:
            raise CommandError(
                f"Could not queue {queued.unsent} of {len(ids)} products: the broker did not take them "
                f"({queued.error}). They stay pending: the sweep sends them once the broker is back, or run "
                "this command again (or without --queue, to index them here)."
            )
        self.stdout.write(f"Queued {len(ids)} products in {queued.sent} tasks.")

    def _store(self, *, recreate: bool):
        """The serving store, opened here (IndexBusyError: another process holds it); an
        unreadable embedded one is removed with --recreate, to be rebuilt from the database."""
        try:
            index = providers.get_product_index()
            index.count()  # opens the embedded store, or finds another process holding it
            return index
        except IndexBusyError:
            raise
        except IndexUnavailableError as exc:  # unreadable or of another size
            if not recreate:
                raise CommandError(str(exc)) from exc
            if providers.vector_engine() != "edge":
                raise CommandError(
                    f"{exc} Remove the folder {search_config().qdrant_path} (it holds only vectors; the "
                    "database keeps every product) and run this again."
                ) from exc
            index = providers.get_product_index()
            index.drop()  # an unreadable embedded store: the database rebuilds it below
            self.stdout.write(f"{exc} Removed it; embedding every product again from the database.")
            return index

    def _indexed(self, ids: list[int], encoder, index, *, force: bool, opts: dict) -> IndexReport:
        total = IndexReport()
        with tqdm(total=len(ids), desc="index", unit="product", disable=opts["verbosity"] == 0) as bar:
            for start in range(0, len(ids), opts["batch_size"]):
                batch = ids[start : start + opts["batch_size"]]
                try:
                    total.merge(products_index(product_ids=batch, encoder=encoder, index=index, force=force))
                except IndexSchemaError as exc:
                    raise CommandError(str(exc)) from exc
                bar.update(len(batch))
        return total

    def _switch_said(self, model_id: str) -> None:
        """A model switch moved on: served now, or what finishes it."""
        if model_switch_advance() == "switched":
            self.stdout.write(f"Search now answers with {model_id}; the previous model's store was deleted.")
        elif providers.model_switching():
            self.stdout.write(
                "Search keeps answering with the previous model until every product is embedded by "
                f"{model_id}: `python manage.py index_products --dirty` finishes it."
            )

    def _hand_over(self, exc: IndexBusyError, ids: list[int], *, force: bool, recreate: bool) -> None:
        """The running server holds the embedded index: flag the products for it instead."""
        if recreate:
            raise CommandError(f"{exc} Stop the server first: --recreate rebuilds the index from scratch.")
        changes = {"content_hash": ""} if force else {}
        handed = Product.objects.filter(pk__in=ids).mark_pending(**changes)
        self.stdout.write(
            f"{exc} Handed {handed} products to the running server, which indexes them within "
            f"{search_config().embedded_sweep_seconds:g} s (or run this again once it is stopped)."
        )
