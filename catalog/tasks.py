"""Thin Celery tasks: take ids, call a service, declare retries."""
from __future__ import annotations

from celery import shared_task
from qdrant_client.http.exceptions import ResponseHandlingException


@shared_task(
    autoretry_for=(ConnectionError, TimeoutError, ResponseHandlingException),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_kwargs={"max_retries": 5},
    acks_late=True,
)
def embed_products_task(product_ids: list[int]) -> dict:
    """Embed and upsert these products (or remove their points); safe to run twice."""
    from search.services import products_index

    return products_index(product_ids=product_ids).as_dict()


@shared_task(acks_late=True)
def sweep_pending_products_task() -> int:
    """Re-send products still pending (bulk paths, broker outages); returns how many."""
    from search.services import products_sweep_pending

    return products_sweep_pending()
