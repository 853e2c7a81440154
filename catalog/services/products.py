"""Single-product writes, and the announcement that products changed.

Every write sets the product's dirty flag (`index_status = pending`) in the same transaction,
and once that commits the catalog announces the ids (`catalog.signals.products_changed`);
the serving app listens and indexes them. The catalog does not know who listens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction

from catalog.images import CHECK_ONLY, image_load
from catalog.models import IndexStatus, Product
from catalog.signals import products_announced_together, products_changed_on_commit

EDITABLE_FIELDS = ("title", "description", "brand", "category", "price", "currency", "attributes", "active")


def products_reindex(*, product_ids: Sequence[int]) -> int:
    """Force re-embedding of these products even if their content is unchanged."""
    ids = list(product_ids)
    with transaction.atomic():
        count = Product.objects.filter(pk__in=ids).mark_pending(content_hash="", payload_hash="")
        products_changed_on_commit(product_ids=ids)
    return count


def _attach_image(product: Product, image_bytes: bytes | None, image_name: str | None) -> None:
    """Store an uploaded image under its content-hash name (CheckedImage.stored_name)."""
    if image_bytes is None:
        return
    checked = image_load(image_bytes, name=image_name or "image", draft=CHECK_ONLY)
    product.image.save(checked.stored_name, ContentFile(image_bytes), save=False)


def _check_fields(fields: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise TypeError(f"unknown product fields: {', '.join(sorted(unknown))}")


def product_create(
    *, sku: str, title: str, image_bytes: bytes | None = None, image_name: str | None = None, **fields: Any
) -> Product:
    """Create a product (validated like the admin form); indexing is scheduled on commit."""
    _check_fields(fields, EDITABLE_FIELDS)
    product = Product(sku=sku, title=title, index_status=IndexStatus.PENDING, **fields)
    with transaction.atomic():
        _attach_image(product, image_bytes, image_name)
        product.full_clean()
        product.save()
    return product


def product_update(
    *,
    product: Product,
    image_bytes: bytes | None = None,
    image_name: str | None = None,
    remove_image: bool = False,
    **fields: Any,
) -> Product:
    """Update the given fields (`sku` included), replace or remove the image; indexing is
    scheduled on commit."""
    _check_fields(fields, ("sku", *EDITABLE_FIELDS))
    for name, value in fields.items():
        setattr(product, name, value)
    if remove_image:
        product.image = ""  # the file stays: an earlier search log or export may point at it
    product.index_status = IndexStatus.PENDING
    with transaction.atomic():
        _attach_image(product, image_bytes, image_name)
        product.full_clean()
        product.save()
    return product


def product_delete(*, product: Product) -> None:
    """Delete a product; its point leaves search after commit."""
    with transaction.atomic():
        product.delete()


def products_delete(*, product_ids: Sequence[int]) -> int:
    """Delete these products in one transaction; returns how many were deleted."""
    with transaction.atomic(), products_announced_together():
        deleted, _ = Product.objects.filter(pk__in=list(product_ids)).delete()
    return deleted
