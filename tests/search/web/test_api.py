"""JSON API: shape, per-field 400s, photo search, OpenAPI schema."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import png_bytes
from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db


def test_search_returns_the_documented_shape(client, shop):
    body = client.get("/api/search", {"q": "red mug", "page_size": 3}).json()

    assert set(body) >= {"search_id", "query", "strategy", "count", "results", "facets", "understood"}
    assert body["strategy"] == "normalized" and body["count"] == 3 and len(body["results"]) == 3
    # "mug" names the category: its products only, and what was read, to be taken back
    assert body["understood"] == [
        {
            "param": "category",
            "value": "mugs",
            "label": "Category: mugs",
            "words": "mug",
            "price_min": None,
            "price_max": None,
        }
    ]
    first = body["results"][0]
    assert set(first) >= {"id", "sku", "title", "brand", "category", "price", "image_url", "score", "modalities"}
    assert first["image_url"].startswith("http://testserver/media/")
    by_sku = {r["sku"]: r for r in body["results"]}
    assert set(by_sku["no-image"]["modalities"]) == {"text", "keyword"}  # image left out, not zero
    assert by_sku["no-image"]["image_url"] is None
    assert set(by_sku["no-desc"]["modalities"]) == {"text", "image", "keyword"}
    assert set(by_sku["no-desc"]["modalities"]["image"]) == {"raw", "normalized"}
    assert {f["value"] for f in body["facets"]["category"]} == {"mugs", "scarves", "lamps"}
    assert len(body["search_id"]) == 32


def test_strategies_filters_sort_and_pages(client, shop):
    avg = client.get("/api/search", {"q": "red mug", "strategy": "avg"}).json()
    assert avg["strategy"] == "avg"
    mugs = client.get(
        "/api/search",
        {"q": "red mug", "category": "mugs", "brand": ["Lumen", "Acme"], "price_min": "11.5", "sort": "price_desc"},
    ).json()
    assert [r["sku"] for r in mugs["results"]] == ["no-desc", "no-image"]
    page2 = client.get("/api/search", {"q": "red", "page": 2, "page_size": 2}).json()
    assert [r["position"] for r in page2["results"]] == [3, 4]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"strategy": "best"}, "strategy"),
        ({"sort": "random"}, "sort"),
        ({"page": "0"}, "page"),
        ({"page_size": "1000"}, "page_size"),
        ({"price_min": "abc"}, "price_min"),
        ({"price_min": "-1"}, "price_min"),
        ({"price_min": "50", "price_max": "10"}, "price_max"),
        ({"q": "x" * 5000}, "q"),
    ],
)
def test_invalid_parameters_get_a_400_per_field(client, shop, params, field):
    response = client.get("/api/search", {"q": "mug", **params})
    assert response.status_code == 400
    assert field in response.json() and response.json()[field]


def test_photo_search(client, shop, concept):
    photo = SimpleUploadedFile("q.png", png(concept.picture("red", "mug")), content_type="image/png")
    body = client.post("/api/search/image", {"image": photo, "category": "mugs"}).json()
    assert body["results"][0]["sku"] == "no-desc"
    assert {r["category"] for r in body["results"]} == {"mugs"}


def test_photo_search_errors(client, shop):
    assert "image" in client.post("/api/search/image", {}).json()
    broken = SimpleUploadedFile("q.png", png_bytes("red")[:40], content_type="image/png")
    response = client.post("/api/search/image", {"image": broken})
    assert response.status_code == 400 and "image" in response.json()
    text = SimpleUploadedFile("q.txt", b"hello", content_type="text/plain")
    assert client.post("/api/search/image", {"image": text}).status_code == 400


def test_openapi_schema_is_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/search" in schema["paths"] and "/api/search/image" in schema["paths"]
    params = {p["name"] for p in schema["paths"]["/api/search"]["get"]["parameters"]}
    assert {"q", "strategy", "category", "brand", "price_min", "price_max", "sort", "page", "page_size"} <= params


def test_an_unavailable_model_is_a_503_with_a_reason(client, settings, tmp_path, make_product):
    from search.retrieval import providers

    make_product("Red mug")
    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "gone")
    providers.get_encoder.cache_clear()
    try:
        response = client.get("/api/search", {"q": "mug"})
    finally:
        providers.get_encoder.cache_clear()
    assert response.status_code == 503 and "could not be loaded" in response.json()["detail"]


def test_a_query_that_matches_nothing_counts_zero(client, shop):
    body = client.get("/api/search", {"q": "xqzvvplk fjjwq"}).json()
    assert (body["count"], body["results"], body["count_capped"]) == (0, [], False)
    typo = client.get("/api/search", {"q": "red mgu"}).json()
    assert typo["understood_as"] == "red mug" and typo["results"][0]["sku"] in ("no-image", "no-desc")


def test_a_client_searching_as_its_shopper_types_says_the_last_word_is_unfinished(client, shop):
    typing = client.get("/api/search", {"q": "lum", "prefix": "true"}).json()
    assert typing["count"] > 0 and typing["understood_as"] == ""
    assert {hit["brand"] for hit in typing["results"]} == {"Lumen"}
    # sent as it is, the same words read the same (a link to it shows what typing showed)
    sent = client.get("/api/search", {"q": "lum"}).json()
    assert [hit["sku"] for hit in sent["results"]] == [hit["sku"] for hit in typing["results"]]
    # a single letter being typed is not read yet
    assert client.get("/api/search", {"q": "l", "prefix": "true"}).json()["understood_as"] == ""


def test_suggest_completes_titles_brands_and_categories(client, shop):
    body = client.get("/api/suggest", {"q": "red c"}).json()
    assert body["query"] == "red c"
    assert {"text": "Red ceramic mug", "kind": "product"} in body["suggestions"]
    assert client.get("/api/suggest", {"q": "lum"}).json()["suggestions"][0] == {"text": "Lumen", "kind": "brand"}
    assert {"text": "mugs", "kind": "category"} in client.get("/api/suggest", {"q": "mu"}).json()["suggestions"]
    # a typo in a finished word and in the word being typed
    assert {"text": "Red ceramic mug", "kind": "product"} in client.get("/api/suggest", {"q": "rde cera"}).json()[
        "suggestions"
    ]
    assert {"text": "Lumen", "kind": "brand"} in client.get("/api/suggest", {"q": "lmen"}).json()["suggestions"]
    assert client.get("/api/suggest", {"q": "xqzv"}).json()["suggestions"] == []
    assert client.get("/api/suggest", {"q": ""}).json()["suggestions"] == []


@pytest.mark.parametrize(
    "params, field", [({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"limit": "500"}, "limit")]
)
def test_suggest_refuses_bad_input_with_a_clear_error(client, shop, params, field):
    response = client.get("/api/suggest", {"q": "mug", **params})
    assert response.status_code == 400 and field in response.json()


def test_suggest_offers_queries_shoppers_clicked(client, shop):
    from search.selectors import product_search
    from search.services import click_log, search_event_log

    for _ in range(2):
        result = product_search(query="wool socks")
        search_event_log(result=result, channel="api", session_key="s")
        click_log(search_id=result.search_id, product_id=result.hits[0].product.pk, session_key="s")
    unclicked = product_search(query="wool scarves")
    search_event_log(result=unclicked, channel="api", session_key="s")
    suggestions = client.get("/api/suggest", {"q": "wo"}).json()["suggestions"]
    assert suggestions[0] == {"text": "wool socks", "kind": "query"}
    assert {"text": "wool scarves", "kind": "query"} not in suggestions
    long = client.get("/api/suggest", {"q": "m" * 5000})
    assert long.status_code == 200 and long.json()["suggestions"] == []


def test_attribute_filters_and_facets_in_the_api(client, untidy_shop):
    body = client.get("/api/search", {"colour": ["RED", "Blue"], "category": "mugs "}).json()
    assert body["count"] == 2
    assert {f["label"]: f["count"] for f in body["facets"]["attr_colour"]} == {"Red": 1, "blue": 1}  # within mugs
    assert {f["value"]: f["selected"] for f in body["facets"]["attr_colour"]} == {"red": True, "blue": True}
    assert {f["label"] for f in body["facets"]["category"]} == {"Mugs", "socks"}
    too_long = client.get("/api/search", {"colour": "x" * 500})
    assert too_long.status_code == 400 and "colour" in too_long.json()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims these dimensions (its header only): nothing needs decoding to refuse it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(6000, 3000), (20000, 10000)])  # 18 MP; 200 MP, past Pillow's own bomb limit
def test_a_photo_too_large_is_refused_saying_what_to_send(client, shop, size):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("big.png", _png_header(*size), content_type="image/png")
    response = client.post("/api/search/image", {"image": upload})
    assert response.status_code == 400
    message = response.json()["image"][0]
    assert "more than this shop takes (16 megapixels); send a smaller photo" in message, message


def test_the_api_says_what_it_read_and_takes_it_back_when_told(client, shop):
    body = client.get("/api/search", {"q": "mugs under $13"}).json()
    assert [(u["param"], u["value"], u["words"], u["price_max"]) for u in body["understood"]] == [
        ("category", "mugs", "mugs", None),
        ("price", "", "under $13", 12.99),
    ]
    assert sorted(r["sku"] for r in body["results"]) == ["green-mug", "no-image"]
    # the client keeps the category, drops the price: the query is not read again
    kept = client.get("/api/search", {"q": "mugs under $13", "category": "mugs", "understood": "mugs under $13"}).json()
    assert kept["understood"] == [] and kept["count"] == 3


def test_suggest_shows_products_with_picture_and_price_the_best_match_first_and_groups_with_counts(client, shop):
    body = client.get("/api/suggest", {"q": "red m"}).json()
    # every word as typed and the word being typed whole ("mug") before a title it only begins
    assert [p["title"] for p in body["products"]][:2] == ["Red mug", "Red ceramic mug"]
    mug = body["products"][0]
    assert mug["price_shown"] == "$14.00" and mug["url"] == f"/products/{shop['no-desc']}/"
    assert mug["image_url"].startswith("http://testserver/media/")
    assert body["products"][1]["image_url"] is None  # the mug without a picture
    # the categories and brands of the products whose titles hold the words, with how many
    assert body["categories"] == [{"text": "mugs", "count": 2, "count_more": False}]
    assert {(g["text"], g["count"]) for g in body["brands"]} == {("Lumen", 1), ("Acme", 1)}


def test_a_product_shoppers_click_comes_first_among_titles_that_match_as_well(client, shop):
    from search.selectors import product_search
    from search.services import click_log, search_event_log

    titles = lambda: [p["title"] for p in client.get("/api/suggest", {"q": "blue v"}).json()["products"]]  # noqa: E731
    assert titles() == ["Blue vase", "Blue glass vase"]  # the shorter title first
    result = product_search(query="vase")
    search_event_log(result=result, channel="api", session_key="s")
    click_log(search_id=result.search_id, product_id=shop["vase-text-only"], session_key="s")
    assert titles() == ["Blue glass vase", "Blue vase"]


def test_a_value_read_from_the_words_keeps_products_that_do_not_say_theirs(
    client, untidy_shop, concept, django_capture_on_commit_callbacks
):
    from catalog.models import Product
    from catalog.services import product_create
    from search.selectors import SearchFilters
    from tests.shop_fixtures import png

    with django_capture_on_commit_callbacks(execute=True):
        product_create(
            sku="plain", title="Red enamel mug", category="mugs", brand="Acme", price="10",
            image_bytes=png(concept.picture("red", "mug")), image_name="p.png",
        )  # fmt: skip
    body = client.get("/api/search", {"q": "red mug"}).json()
    assert {u["param"] for u in body["understood"]} == {"colour", "category"}
    # a mug that says it is red, and one that says no colour; not the one that says blue
    assert sorted(r["title"] for r in body["results"]) == ["Red enamel mug", "Red mug"]
    # the page's next request (a sort) sends what was read as its filters: still read the same way
    again = {"q": "red mug", "colour": "red", "category": "mugs", "understood": "red mug", "sort": "price_asc"}
    assert sorted(r["title"] for r in client.get("/api/search", again).json()["results"]) == [
        "Red enamel mug",
        "Red mug",
    ]
    # a colour the shopper ticks, not their words: only products that say it
    strict = client.get("/api/search", {"q": "mug", "colour": "red", "understood": "mug"}).json()
    assert [r["title"] for r in strict["results"]] == ["Red mug"]
    # the database reads the same filters the same way (browsing, facets while the engine lags)
    read = SearchFilters(attributes=(("attr_colour", ("red",)),), open=("attr_colour",))
    rows = read.queryset(Product.objects.filter(category__icontains="mug").order_by("title"))
    assert [p.title for p in rows] == ["Red enamel mug", "Red mug"]


def test_a_shop_can_keep_words_only_words(client, shop, settings):
    settings.SEARCH_QUERY_FILTERS = False
    body = client.get("/api/search", {"q": "mugs under $13"}).json()
    assert body["understood"] == [] and all(f["selected"] is False for f in body["facets"]["category"])
