"""Public endpoints against bad and hostile input: a clear 4xx that says what to fix, never a
500, and no body read whole before its size is checked (issue 13)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db


def test_a_photo_search_with_no_body_says_what_to_send(client, shop):
    response = client.generic("POST", "/api/search/image")  # as `curl -X POST`: no body, no content type
    assert response.status_code == 400
    assert response.json() == {"image": ["No file was submitted."]}


def test_json_nested_too_deep_is_refused_not_a_500(client, shop):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/clicks", deep, content_type="application/json")
    assert response.status_code == 400 and "nested" in response.json()["detail"]


def test_a_body_larger_than_the_limit_is_refused_before_it_is_read(client, shop, settings):
    settings.REQUEST_MAX_BYTES = 1_000_000
    big = SimpleUploadedFile("huge.png", b"\x89PNG" + b"\0" * 2_000_000, content_type="image/png")
    for url in ("/api/search/image", "/search/image"):
        response = client.post(url, {"image": big})
        big.seek(0)
        assert response.status_code == 413, url
        text = response.json()["detail"] if url.startswith("/api/") else response.content.decode()
        assert "976.6\xa0KB" in text and "20.0\xa0MB" in text and "REQUEST_MAX_BYTES" not in text


def test_a_streamed_upload_without_a_length_stops_at_the_limit(rf, settings):
    """A chunked body has no Content-Length: the upload handler counts what it reads."""
    from django.core.files.uploadhandler import StopUpload

    from shop_search.limits import BoundedUploadHandler

    settings.REQUEST_MAX_BYTES = 1000
    handler = BoundedUploadHandler()
    handler.new_file("image", "x.png", "image/png", None)
    handler.receive_data_chunk(b"x" * 600, 0)
    with pytest.raises(StopUpload):
        handler.receive_data_chunk(b"x" * 600, 600)


def test_the_photo_search_api_still_answers_a_real_photo(client, shop, concept):
    photo = SimpleUploadedFile("q.png", png(concept.picture("red", "mug")), content_type="image/png")
    response = client.post("/api/search/image", {"image": photo, "category": ["mugs"]})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["results"][0]["sku"] in {"no-desc", "no-image"}
    assert {r["category"] for r in body["results"]} == {"mugs"}  # the filter held


def storefront_search(client, query: str) -> tuple[str, int]:
    """A storefront search in this client's session: its search id and first product."""
    import re

    html = client.get("/", {"q": query}).content.decode()
    search_id, product = re.search(r'data-search="([0-9a-f]{32})" data-product="(\d+)"', html).groups()
    return search_id, int(product)


def test_a_click_counts_only_from_the_session_that_searched(client, shop, settings):
    from django.test import Client

    from search.models import Click

    search_id, product = storefront_search(client, "red mug")
    stranger = Client()  # search ids are in the page: anyone can read one
    stranger.get("/")  # a session of their own
    forged = stranger.post(
        "/api/clicks", {"search_id": search_id, "product_id": product}, content_type="application/json"
    )
    assert forged.status_code == 403 and "another session" in forged.json()["search_id"][0]
    stranger.get(f"/r/{search_id}/{product}/")  # the no-JavaScript link records nothing either
    assert not Click.objects.exists()

    own = client.post("/api/clicks", {"search_id": search_id, "product_id": product}, content_type="application/json")
    assert own.status_code == 201
    again = client.get(f"/r/{search_id}/{product}/")
    assert again.status_code == 302 and Click.objects.count() == 1  # once


def test_a_click_long_after_its_search_does_not_count(client, shop, settings):
    from datetime import timedelta

    from django.utils import timezone

    from search.models import Click, SearchEvent

    settings.SEARCH_LOG_DEFERRED = False
    search_id, product = storefront_search(client, "red mug")
    SearchEvent.objects.filter(pk=search_id).update(created_at=timezone.now() - timedelta(hours=2))
    late = client.post("/api/clicks", {"search_id": search_id, "product_id": product}, content_type="application/json")
    assert late.status_code == 403 and "60 minutes old" in late.json()["search_id"][0]
    assert not Click.objects.exists()


def test_an_api_client_clicks_with_the_session_it_searched_with(client, shop):
    body = client.get("/api/search", {"q": "red mug"}, HTTP_X_SESSION_ID="visit-1").json()
    click = {"search_id": body["search_id"], "product_id": body["results"][0]["id"]}
    other = client.post("/api/clicks", click, content_type="application/json", HTTP_X_SESSION_ID="visit-2")
    assert other.status_code == 403
    same = client.post("/api/clicks", click, content_type="application/json", HTTP_X_SESSION_ID="visit-1")
    assert same.status_code == 201


@pytest.fixture
def limits(settings):
    from django.core.cache import cache

    cache.clear()
    settings.SEARCH_RATE_LIMITS = "search=3/min,photo=1/min,suggest=2/min,clicks=2/min"
    yield
    cache.clear()


def test_each_public_endpoint_has_a_rate_limit_with_retry_after(client, shop, concept, limits):
    def photo():
        return {"image": SimpleUploadedFile("q.png", png(concept.picture("red", "mug")), content_type="image/png")}

    cases = [
        ("search page", 3, lambda: client.get("/", {"q": "mug"})),
        ("search API", 0, lambda: client.get("/api/search", {"q": "mug"})),  # shares the page's count
        ("suggest", 2, lambda: client.get("/api/suggest", {"q": "mu"})),
        ("photo API", 1, lambda: client.post("/api/search/image", photo())),
        ("photo page", 0, lambda: client.post("/search/image", photo())),
    ]
    for name, allowed, ask in cases:
        for _ in range(allowed):
            assert ask().status_code in (200, 303), name
        refused = ask()
        assert refused.status_code == 429, name
        wait = int(refused["Retry-After"])
        assert 1 <= wait <= 60 and str(wait) in refused.content.decode(), name


def test_another_address_has_a_count_of_its_own_and_cannot_pick_one(client, shop, limits):
    for _ in range(3):
        client.get("/", {"q": "mug"})
    assert client.get("/", {"q": "mug"}, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429  # a header is no address
    assert client.get("/", {"q": "mug"}, REMOTE_ADDR="10.0.0.2").status_code == 200


def test_a_bad_rate_limit_setting_stops_start_up_with_the_fix(settings):
    from django.core import checks

    settings.SEARCH_RATE_LIMITS = "search=lots"
    errors = [e for e in checks.run_checks() if e.id == "search.E005"]
    assert errors and "search=300/min" in errors[0].hint


def test_an_id_too_large_for_any_column_is_a_400(client, shop):
    body = client.get("/api/search", {"q": "mug"}).json()
    response = client.post(
        "/api/clicks", {"search_id": body["search_id"], "product_id": 2**70}, content_type="application/json"
    )
    assert response.status_code == 400 and "product_id" in response.json()
