"""Single-product writes and the scheduling of indexing work."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from catalog.images import image_load
from catalog.models import IndexStatus, Product

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = ("title", "description", "brand", "category", "price", "currency",
                   "attributes", "active")


def _batches(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def products_enqueue(*, product_ids: Sequence[int], batch_size: int | None = None) -> int:
    """Send embedding tasks for these ids in batches; returns how many tasks were sent.

    A broker outage is logged, not raised: the rows stay pending and the periodic sweep
    sends them again, so a save never fails because the queue is down.
    """
    from catalog.tasks import embed_products_task

    ids = sorted({int(pk) for pk in product_ids if pk is not None})
    size = batch_size or settings.SEARCH_INDEX_BATCH_SIZE
    sent = 0
    for batch in _batches(ids, size):
        try:
            embed_products_task.apply_async(args=[batch])
            sent += 1
        except Exception:  # kombu raises many types; all mean "not queued now"
            logger.exception("Could not queue indexing of %d products; the sweep will retry",
                             len(batch))
    return sent


def products_enqueue_on_commit(*, product_ids: Sequence[int]) -> None:
    """Schedule indexing once the current transaction commits (never for a rollback)."""
    ids = list(product_ids)
    transaction.on_commit(lambda: products_enqueue(product_ids=ids))


def products_reindex(*, product_ids: Sequence[int]) -> int:
    """Force re-embedding of these products even if their content is unchanged."""
    ids = list(product_ids)
    with transaction.atomic():
        count = Product.objects.filter(pk__in=ids).update(
            index_status=IndexStatus.PENDING, content_hash="", payload_hash="")
        products_enqueue_on_commit(product_ids=ids)
    return count


def _attach_image(product: Product, image_bytes: bytes | None, image_name: str | None) -> None:
    if image_bytes is None:
        return
    checked = image_load(image_bytes, name=image_name or "image")
    product.image.save(checked.stored_name, ContentFile(image_bytes), save=False)


def product_create(*, sku: str, title: str, image_bytes: bytes | None = None,
                   image_name: str | None = None, **fields: Any) -> Product:
    """Create a product (validated like the admin form); indexing is scheduled on commit."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"unknown product fields: {', '.join(sorted(unknown))}")
    product = Product(sku=sku, title=title, **fields)
    with transaction.atomic():
        _attach_image(product, image_bytes, image_name)
        product.full_clean()
        product.save()
    return product


def product_update(*, product: Product, image_bytes: bytes | None = None,
                   image_name: str | None = None, **fields: Any) -> Product:
    """Update the given fields; indexing is scheduled on commit."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"unknown product fields: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(product, name, value)
    with transaction.atomic():
        _attach_image(product, image_bytes, image_name)
        product.full_clean()
        product.save()
    return product


def product_delete(*, product: Product) -> None:
    """Delete a product; the post_delete signal removes its point after commit."""
    with transaction.atomic():
        product.delete()
