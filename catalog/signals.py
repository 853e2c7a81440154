"""What the catalog tells the rest of the project, after commit. It never imports who listens:
the serving app subscribes to `products_changed` and schedules the indexing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from .models import INDEX_STATE_FIELDS, Product

# Sent once the transaction that created, changed or deleted these products has committed
# (never for a rollback), with `product_ids`: a list of ints.
products_changed = Signal()


# Within products_announced_together(), the single-row receivers below collect ids here instead
# of announcing each row: a bulk delete is one announcement (one task per batch, not per row).
_collecting: ContextVar[set[int] | None] = ContextVar("products_changed_collecting", default=None)


def products_changed_on_commit(*, product_ids: Sequence[int]) -> None:
    """Announce these products once the current transaction commits (never for a rollback)."""
    ids = sorted({int(pk) for pk in product_ids if pk is not None})
    collecting = _collecting.get()
    if collecting is not None:
        collecting.update(ids)
        return
    if ids:
        transaction.on_commit(lambda: products_changed.send(sender=Product, product_ids=ids))


@contextmanager
def products_announced_together() -> Iterator[None]:
    """Announce every product changed inside the block once, after commit."""
    collected: set[int] = set()
    token = _collecting.set(collected)
    try:
        yield
    finally:
        _collecting.reset(token)
    products_changed_on_commit(product_ids=list(collected))


# A single-row save or delete reaches search even when it bypasses the services (a shell, a
# data fix): the receivers below only announce it. Bulk paths send no such signals; the
# services announce those themselves, and rows written by a bare `QuerySet.update()` are
# flagged with `mark_pending()` for the sweep.
@receiver(post_save, sender=Product, dispatch_uid="catalog.product_saved")
def product_saved(sender, instance: Product, update_fields=None, raw=False, **kwargs) -> None:
    # The indexer writes only index-state fields; those saves must not schedule it again.
    if raw or (update_fields is not None and set(update_fields) <= INDEX_STATE_FIELDS):
        return
    products_changed_on_commit(product_ids=[instance.pk])


@receiver(post_delete, sender=Product, dispatch_uid="catalog.product_deleted")
def product_deleted(sender, instance: Product, **kwargs) -> None:
    # The indexer finds no row for this id and removes its point.
    products_changed_on_commit(product_ids=[instance.pk])
