"""Recording searches and clicks. Logging never makes a search fail."""
from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Product
from search.models import Click, SearchEvent, SearchImpression
from search.selectors import SearchResult, query_normalize

logger = logging.getLogger(__name__)


def session_pseudonym(session_key: str | None) -> str:
    """Keyed hash of a session key: stable within a visit, not reversible without the key."""
    if not session_key:
        return ""
    key = (settings.SEARCH_LOG_HASH_KEY or settings.SECRET_KEY).encode()
    return hmac.new(key, session_key.encode(), hashlib.sha256).hexdigest()


def search_event_log(*, result: SearchResult, channel: str, session_key: str | None) -> bool:
    """Record a search with what it showed; returns False (and logs why) if that failed."""
    from search.retrieval.providers import embedding_model_id

    filters = {"category": list(result.filters.categories), "brand": list(result.filters.brands),
               "price_min": str(result.filters.price_min) if result.filters.price_min is not None else None,
               "price_max": str(result.filters.price_max) if result.filters.price_max is not None else None}
    try:
        with transaction.atomic():
            event = SearchEvent.objects.create(
                id=uuid.UUID(result.search_id), channel=channel, mode=result.mode, query=result.query[:500],
                query_normalized=query_normalize(result.query).lower()[:500], filters=filters,
                sort=result.sort, strategy=result.strategy,
                model_id=(result.model_id or embedding_model_id())[:255],
                page=result.page, page_size=result.page_size, result_count=result.count,
                session_hash=session_pseudonym(session_key))
            SearchImpression.objects.bulk_create([
                SearchImpression(search=event, product=hit.product, product_sku=hit.product.sku,
                                 position=hit.position, score=hit.score) for hit in result.hits])
    except Exception:  # the shopper still gets results; the operator gets the traceback
        logger.exception("Could not record search %s", result.search_id)
        return False
    return True


class ClickError(ValueError):
    """The click names something that does not exist; the message says what."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ClickOutcome:
    click: Click
    created: bool


def click_log(*, search_id: str, product_id: int | None = None, sku: str | None = None,
              position: int | None = None) -> ClickOutcome:
    """Record a click on a product shown by a search; a repeat of the same click is kept once."""
    try:
        event = SearchEvent.objects.get(pk=uuid.UUID(str(search_id)))
    except (ValueError, SearchEvent.DoesNotExist):
        raise ClickError("search_id", "No search with this id.") from None
    product = Product.objects.filter(pk=product_id).first() if product_id is not None else \
        Product.objects.filter(sku=sku).first() if sku else None
    if product is None:
        raise ClickError("product_id" if product_id is not None else "sku", "No such product.")
    shown = event.impressions.filter(product_sku=product.sku).values_list("position", flat=True).first()
    if shown is None:
        raise ClickError("product_id" if product_id is not None else "sku",
                         "This product was not shown by that search.")
    if position is not None and position != shown:
        raise ClickError("position", f"The product was shown at position {shown}, not {position}.")
    try:
        with transaction.atomic():
            click = Click.objects.create(search=event, product=product, product_sku=product.sku, position=shown)
        return ClickOutcome(click, True)
    except IntegrityError:
        return ClickOutcome(Click.objects.get(search=event, product_sku=product.sku), False)


def search_logs_prune(*, older_than_days: int, batch_size: int = 1000) -> int:
    """Delete searches (with their impressions and clicks) older than the cut-off; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(SearchEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        SearchEvent.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
