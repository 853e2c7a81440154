"""Signals only schedule indexing, after the transaction commits."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import INDEX_STATE_FIELDS, Product


@receiver(post_save, sender=Product, dispatch_uid="catalog.product_saved")
def product_saved(sender, instance: Product, update_fields=None, raw=False, **kwargs) -> None:
    if raw or (update_fields is not None and set(update_fields) <= INDEX_STATE_FIELDS):
        return
    from .services import products_enqueue_on_commit

    products_enqueue_on_commit(product_ids=[instance.pk])


@receiver(post_delete, sender=Product, dispatch_uid="catalog.product_deleted")
def product_deleted(sender, instance: Product, **kwargs) -> None:
    from .services import products_enqueue_on_commit

    # The task finds no row for this id and removes its point.
    products_enqueue_on_commit(product_ids=[instance.pk])
