"""Search events and clicks: what is stored, deduplication, pseudonymisation, 4xx answers."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError

from search.models import Click, SearchEvent, SearchImpression
from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db


def test_a_storefront_search_is_recorded_with_what_it_showed(client, shop):
    client.get("/", {"q": "  Red   MUG ", "category": "mugs", "sort": "price_asc"})

    event = SearchEvent.objects.get()
    impressions = list(event.impressions.order_by("position"))
    assert (event.channel, event.mode, event.query, event.query_normalized) == ("page", "text", "Red MUG", "red mug")
    assert event.filters["category"] == ["mugs"] and event.sort == "price_asc"
    assert event.strategy == "normalized" and event.model_id and event.result_count == 3
    assert [i.position for i in impressions] == [1, 2, 3]
    assert [i.product_sku for i in impressions] == ["green-mug", "no-image", "no-desc"]
    assert all(i.score is not None for i in impressions)


@pytest.fixture(autouse=True)
def api_session(client):
    """The API client names its shopper's session: clicks count only for a session's own searches."""
    client.defaults["HTTP_X_SESSION_ID"] = "shopper-1"


def test_a_search_made_without_a_session_takes_no_clicks(client, shop):
    del client.defaults["HTTP_X_SESSION_ID"]
    body = client.get("/api/search", {"q": "red mug"}).json()
    event, first = body["search_id"], body["results"][0]["id"]
    response = client.post("/api/clicks", {"search_id": event, "product_id": first}, content_type="application/json")
    assert response.status_code == 403
    assert "send X-Session-Id with the search" in response.json()["search_id"][0]
    assert client.get(f"/r/{event}/{first}/").status_code == 302  # the shopper still gets the product
    assert not Click.objects.exists()


def test_a_click_that_names_no_session_is_told_which_to_send(client, shop):
    body = client.get("/api/search", {"q": "red mug"}).json()
    del client.defaults["HTTP_X_SESSION_ID"]
    click = {"search_id": body["search_id"], "product_id": body["results"][0]["id"]}
    response = client.post("/api/clicks", click, content_type="application/json")
    assert response.status_code == 403
    assert "names no session: send the X-Session-Id the search was made with" in response.json()["search_id"][0]


def test_sessions_are_stored_only_as_a_keyed_hash(client, shop):
    client.get("/", {"q": "mug"})
    client.get("/", {"q": "vase"}, HTTP_HX_REQUEST="true")

    first, second = SearchEvent.objects.order_by("created_at")
    session_key = client.cookies["visit"].value  # the visit's own cookie: no session row is written
    expected = hmac.new(settings.SECRET_KEY.encode(), session_key.encode(), hashlib.sha256).hexdigest()
    assert first.session_hash == second.session_hash == expected
    assert second.channel == "htmx"
    stored = [str(v) for row in SearchEvent.objects.values() for v in row.values()]
    assert not any(session_key in v or "127.0.0.1" in v for v in stored)
    assert not Session.objects.exists()


def test_api_and_photo_searches_are_recorded_and_return_their_id(client, shop, concept):
    body = client.get("/api/search", {"q": "red"}, HTTP_X_SESSION_ID="user-42").json()
    photo = SimpleUploadedFile("q.png", png(concept.picture("red", "mug")), content_type="image/png")
    photo_body = client.post("/api/search/image", {"image": photo}).json()

    api = SearchEvent.objects.get(pk=body["search_id"])
    assert api.channel == "api" and api.session_hash and api.impressions.count() == body["count"] == 4
    assert SearchEvent.objects.get(pk=photo_body["search_id"]).mode == "image"


def test_clicks_are_recorded_once_at_the_shown_position(client, shop):
    body = client.get("/api/search", {"q": "red", "page": 2, "page_size": 3}).json()
    product = body["results"][0]

    first = client.post(
        "/api/clicks", {"search_id": body["search_id"], "product_id": product["id"]}, content_type="application/json"
    )
    again = client.post(
        "/api/clicks",
        {"search_id": body["search_id"], "sku": product["sku"], "position": 4},
        content_type="application/json",
    )

    assert first.status_code == 201 and again.status_code == 200
    click = Click.objects.get()
    assert click.position == 4 and click.product_sku == product["sku"]


@pytest.mark.parametrize(
    "change, field, status",
    [
        ({"search_id": "0" * 32}, "search_id", 404),  # well-formed, but no such search
        ({"search_id": "not-a-uuid"}, "search_id", 400),
        ({"product_id": 999_999}, "product_id", 404),
        ({"product_id": None, "sku": "no-such-sku"}, "sku", 404),
        ({"position": 7}, "position", 409),  # the search showed it elsewhere
        ({"product_id": None}, "product_id", 400),
    ],
)
def test_bad_clicks_get_a_4xx_that_names_the_field_and_are_not_stored(client, shop, change, field, status):
    body = client.get("/api/search", {"q": "red mug", "page_size": 3}).json()
    payload = {"search_id": body["search_id"], "product_id": body["results"][0]["id"], **change}
    payload = {k: v for k, v in payload.items() if v is not None}

    response = client.post("/api/clicks", payload, content_type="application/json")

    assert response.status_code == status and field in response.json()
    assert Click.objects.count() == 0


def test_a_product_not_shown_by_the_search_is_refused(client, shop):
    body = client.get("/api/search", {"q": "red mug", "page_size": 1}).json()
    other = SearchImpression.objects.exclude(product_sku=body["results"][0]["sku"])
    assert not other.exists()
    from catalog.models import Product

    unseen = Product.objects.exclude(sku=body["results"][0]["sku"]).first()
    response = client.post(
        "/api/clicks", {"search_id": body["search_id"], "product_id": unseen.pk}, content_type="application/json"
    )
    assert response.status_code == 409 and "not shown" in response.json()["product_id"][0]


def test_the_no_javascript_link_records_and_redirects(client, shop):
    html = client.get("/", {"q": "red mug"}).content.decode()
    event = SearchEvent.objects.get()
    first = event.impressions.get(position=1)
    link = f"/r/{event.pk.hex}/{first.product_id}/?from=q%3Dred%2Bmug"  # back to this search, later
    assert f'href="{link}"' in html

    response = client.get(link)
    client.get(link)  # a double-click

    assert response.status_code == 302
    assert response["Location"] == f"/products/{first.product_id}/?from=q%3Dred%2Bmug"
    assert Click.objects.get().position == 1


def test_a_failing_log_write_never_fails_the_search(client, shop, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(SearchImpression.objects, "bulk_create", broken)

    page = client.get("/", {"q": "red mug"})
    api = client.get("/api/search", {"q": "red mug"})

    assert page.status_code == 200 and "<mark>Red</mark> <mark>mug</mark>" in page.content.decode()
    assert api.status_code == 200 and api.json()["count"] == 3  # "mug" names the category
    assert SearchEvent.objects.count() == 0  # all or nothing per search
    assert "Could not record search" in caplog.text


@pytest.fixture
def slow_log_writer(monkeypatch):
    """The log writer's database is slow: its writes wait until the test opens the gate."""
    import threading

    from search.services import events

    gate = threading.Event()
    gate.reached = threading.Event()  # the writer thread has taken a batch and waits at the gate
    write = events._write_searches

    def slow(rows):
        if threading.current_thread().name == "search-log-writer":
            gate.reached.set()
            assert gate.wait(10), "the gate was never opened"
        write(rows)

    monkeypatch.setattr(events, "_write_searches", slow)
    yield gate
    gate.set()
    events.search_log_flush()


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_before_the_log_is_written_and_a_quicker_click_still_counts(
    client, shop, settings, slow_log_writer
):
    import threading

    settings.SEARCH_LOG_DEFERRED = True
    found = client.get("/api/search", {"q": "red mug"}).json()
    assert not SearchEvent.objects.filter(pk=found["search_id"]).exists()  # answered first

    threading.Timer(0.3, slow_log_writer.set).start()  # the write lands while the click waits
    clicked = client.post(
        "/api/clicks",
        {"search_id": found["search_id"], "product_id": found["results"][1]["id"]},
        content_type="application/json",
    )
    assert clicked.status_code == 201, clicked.content
    event = SearchEvent.objects.get(pk=found["search_id"])
    assert [i.product_sku for i in event.impressions.order_by("position")] == [r["sku"] for r in found["results"]]
    assert Click.objects.get().product_sku == found["results"][1]["sku"]


@pytest.mark.django_db(transaction=True)
def test_a_product_deleted_before_its_search_is_written_keeps_the_search(client, shop, settings, slow_log_writer):
    from catalog.models import Product
    from search.services.events import search_log_flush

    settings.SEARCH_LOG_DEFERRED = True
    found = client.get("/", {"q": "red mug"})
    assert found.status_code == 200
    Product.objects.filter(sku="no-image").delete()
    slow_log_writer.set()
    search_log_flush()

    event = SearchEvent.objects.get()
    shown = {i.product_sku: i.product_id for i in event.impressions.all()}
    assert len(shown) == event.result_count and shown["no-image"] is None  # the row, without the link
    assert all(pid is not None for sku, pid in shown.items() if sku != "no-image")


@pytest.mark.django_db(transaction=True)
def test_what_is_queued_at_exit_is_written_however_much(shop, settings, slow_log_writer):
    # the writer thread is stuck on a slow database; the exit flush writes all the rest itself
    import dataclasses
    import uuid

    from search.selectors import product_search
    from search.services.events import _writer, search_event_log

    settings.SEARCH_LOG_DEFERRED = True
    result = product_search(query="red mug")
    for _ in range(1201):
        assert search_event_log(
            result=dataclasses.replace(result, search_id=uuid.uuid4().hex),
            channel="api",
            session_key=None,
            deferred=True,
        )
    # what the writer thread took before the gate, counted once it waits there (counted while it
    # was still taking its batch, the queue's size raced it: 701 written of an expected 1201)
    assert slow_log_writer.reached.wait(10)
    stuck = 1201 - _writer().queue.qsize()
    _writer().flush()  # as at exit
    assert SearchEvent.objects.count() == 1201 - stuck


@pytest.mark.django_db(transaction=True)
def test_only_the_search_a_shopper_settles_on_is_logged_not_the_prefixes(client, shop, settings):
    client.defaults.pop("HTTP_X_SESSION_ID")  # the storefront: its visit cookie is the session
    import time

    from search.services.events import search_log_flush

    settings.SEARCH_LOG_DEFERRED = True
    settings.SEARCH_SETTLE_SECONDS = 0.6
    typed = {"HTTP_HX_REQUEST": "true"}
    # keystrokes, as the storefront sends them: the first starts a run, the rest continue it
    for n, prefix in enumerate(["r", "red", "red m", "red mug"]):
        response = client.get("/", {"q": prefix}, **typed, HTTP_X_SEARCH_TYPING="continue" if n else "start")
        assert response.status_code == 200
        # one history entry for the run: the first pushes the URL, the rest replace it
        assert ("HX-Push-Url" in response) == (n == 0) and ("HX-Replace-Url" in response) == (n > 0)
    time.sleep(0.3)
    assert SearchEvent.objects.count() == 0  # still typing, as far as anyone can tell
    deadline = time.monotonic() + 10
    while not SearchEvent.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # settles by itself, without another request
    assert list(SearchEvent.objects.values_list("query", flat=True)) == ["red mug"]

    # a filter from the same visit settles the next search at once; a click on a held one too
    client.get("/", {"q": "wool"}, **typed, HTTP_X_SEARCH_TYPING="start")
    client.get("/", {"q": "wool", "category": "socks"}, **typed)
    held = client.get("/", {"q": "lamp"}, **typed, HTTP_X_SEARCH_TYPING="start")
    search_id = held.content.decode().split('data-search="')[1].split('"')[0]
    product_id = held.content.decode().split('data-product="')[1].split('"')[0]
    clicked = client.post(
        "/api/clicks", {"search_id": search_id, "product_id": int(product_id)}, content_type="application/json"
    )
    assert clicked.status_code == 201, clicked.content
    search_log_flush()
    assert sorted(SearchEvent.objects.values_list("query", flat=True)) == ["lamp", "red mug", "wool", "wool"]


@pytest.mark.django_db(transaction=True)
def test_a_queued_search_keeps_what_the_log_writes_not_every_match(shop, settings, slow_log_writer):
    # given a search whose result holds every match and the page's product rows
    import gc
    import weakref

    from search.selectors import product_search
    from search.services.events import search_event_log, search_log_flush

    settings.SEARCH_LOG_DEFERRED = True
    result = product_search(query="red mug", page_size=2)
    assert len(result.ranked) > len(result.hits)
    search_id, shown = result.search_id, [hit.product.sku for hit in result.hits]
    # when it is queued behind a slow database
    assert search_event_log(result=result, channel="api", session_key=None, deferred=True)
    held = weakref.ref(result)
    del result
    gc.collect()
    # then the queue does not keep the result (its matches, scores and rows) alive
    assert held() is None
    # and what it kept is what the log writes
    slow_log_writer.set()
    search_log_flush()
    event = SearchEvent.objects.get(pk=search_id)
    assert [i.product_sku for i in event.impressions.order_by("position")] == shown
    assert event.result_count == 5


def test_the_sweep_deletes_expired_sessions(monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from search import tasks

    Session.objects.create(session_key="old", session_data="", expire_date=timezone.now() - timedelta(days=1))
    Session.objects.create(session_key="live", session_data="", expire_date=timezone.now() + timedelta(days=1))
    monkeypatch.setattr(tasks, "_sessions_pruned", -1e9)
    tasks.products_sweep_pending(grace_seconds=0)
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]
