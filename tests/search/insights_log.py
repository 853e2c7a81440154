"""A search and click log with known counts, for the insights tests (tests/search/test_insights.py,
tests/e2e/test_insights_page.py); a plugin of tests/conftest.py, so its `log` fixture serves both."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Product
from search.models import SearchEvent, SearchImpression
from search.services.events import click_log, session_pseudonym

# the visit that ran the logged searches (clicks count only for their own session's searches)
SESSION = "insights-visit"
NOW = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)


def search_logged(
    query: str,
    *,
    days_ago: int,
    channel: str = "page",
    results: int = 10,
    mode: str = "text",
    clicks: tuple[tuple[Product, int], ...] = (),
) -> SearchEvent:
    """A logged search with its impressions, its clicks recorded through the click service (which
    keeps the search's click count), then moved `days_ago` back."""
    event = SearchEvent.objects.create(
        channel=channel,
        mode=mode,
        query=query,
        query_normalized=" ".join(query.lower().split()),
        sort="relevance",
        strategy="normalized",
        result_count=results,
        day=timezone.localdate(),
        session_hash=session_pseudonym(SESSION),
    )
    for product, position in clicks:
        SearchImpression.objects.create(search=event, product=product, product_sku=product.sku, position=position)
        click_log(search_id=str(event.pk), product_id=product.pk, session_key=SESSION)
    when = NOW - timedelta(days=days_ago)
    SearchEvent.objects.filter(pk=event.pk).update(created_at=when, day=timezone.localdate(when))
    return event


@pytest.fixture
def insights_log():
    mug = Product.objects.create(sku="MUG-1", title="Red mug", price=Decimal("9"))
    cup = Product.objects.create(sku="CUP-1", title="Red cup", price=Decimal("7"))
    # red mug: 5 searches in the period (two spellings), 3 with clicks, 4 clicks at 1, 3, 2, 1
    search_logged("red mug", days_ago=1, clicks=((mug, 1), (cup, 3)))
    search_logged("Red  Mug", days_ago=1, channel="htmx", clicks=((mug, 2),))
    search_logged("red mug", days_ago=2, clicks=((mug, 1),))
    search_logged("red mug", days_ago=2)
    search_logged("red mug", days_ago=3, channel="api")
    search_logged("red mug", days_ago=40, clicks=((mug, 1),))  # outside the last 30 days
    # unicorn: found nothing, 3 times (one through the API)
    for days, channel in ((1, "page"), (2, "page"), (3, "api")):
        search_logged("unicorn", days_ago=days, channel=channel, results=0)
    # blue vase: found something twice through the API, never clicked
    search_logged("blue vase", days_ago=1, channel="api")
    search_logged("blue vase", days_ago=2, channel="api")
    # mug: once, clicked at 4; a photo search (no words)
    search_logged("mug", days_ago=3, clicks=((mug, 4),))
    search_logged("", days_ago=1, channel="photo_page", mode="image")
    return {"mug": mug, "cup": cup}
