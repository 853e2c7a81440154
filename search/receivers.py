"""The serving app's subscriptions: catalog changes become indexing tasks. Receivers only
schedule work; the catalog sends after commit, so a rolled-back save schedules nothing."""

from __future__ import annotations

from django.dispatch import receiver

from catalog.signals import products_changed
from search.tasks import products_enqueue


@receiver(products_changed, dispatch_uid="search.products_changed_enqueue")
def products_changed_enqueue(sender, product_ids: list[int], **kwargs) -> None:
    products_enqueue(product_ids=product_ids)
