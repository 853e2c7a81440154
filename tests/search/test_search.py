"""Search through the same selector the storefront and API call, on each engine: qdrant-client's
in-memory mode standing in for a server, and Qdrant Edge in a temp folder."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Product
from search.selectors import SearchFilters, product_search, product_similar
from search.selectors.lexicon import price_bounds, round_price
from tests.shop_fixtures import CATALOG

# every test here runs on both engines (tests/conftest.py: vector_engine)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_engine")]


def skus(result) -> list[str]:
    return [hit.product.sku for hit in result.hits]


def rank(result, sku: str) -> int:
    return skus(result).index(sku)


PARTIAL_MATCHES = ("green-mug", "red-scarf", "red-lamp")  # a mug, or red: half of "red mug"
RED_MUG_MATCHES = {"no-image", "no-desc", *PARTIAL_MATCHES}


def test_normalized_ranks_each_product_by_the_evidence_it_has(shop):
    result = product_search(query="red mug", strategy="normalized")

    # both relevant products lead, one lacking an image, the other a description
    assert set(skus(result)[:2]) == {"no-image", "no-desc"}
    # the partial matches follow; products that share nothing with the query are not results
    assert set(skus(result)) == RED_MUG_MATCHES and result.count == 5
    by_sku = {h.product.sku: h for h in result.hits}
    assert set(by_sku["no-image"].raw) == {"text", "keyword"}  # no image: absent, not zero
    assert set(by_sku["no-desc"].raw) == {"text", "image", "keyword"}


def test_avg_lets_text_only_products_float_up(shop):
    result = product_search(query="red mug", strategy="avg")
    # the averaged vector of a text-only product is its text vector, whose cosines run high
    assert rank(result, "no-image") < rank(result, "no-desc")


@pytest.mark.parametrize("strategy", ["dbsf", "rrf"])
def test_qdrant_fusions_sink_the_product_without_an_image(shop, strategy):
    result = product_search(query="red mug", strategy=strategy)
    # missing from the image list counts as the worst score: partial matches overtake it
    for partial in PARTIAL_MATCHES:
        assert rank(result, partial) < rank(result, "no-image")


def test_single_modality_strategies_leave_out_products_without_that_vector(shop):
    image_only = product_search(query="red mug", strategy="image")
    assert "no-image" not in skus(image_only) and skus(image_only)[0] == "no-desc"
    text_only = product_search(query="red mug", strategy="text")
    assert set(skus(text_only)) == {"no-image", "no-desc", "green-mug"}  # above the text cutoff


def test_filters_are_applied_inside_qdrant(shop, settings):
    # with at most 2 matches per leg, post-filtering the best of the catalog would find one sock
    # at most for "wool" (the scarf is wool too); filtering inside Qdrant finds both
    settings.SEARCH_MAX_MATCHES = 2
    result = product_search(query="wool", filters=SearchFilters(categories=("socks",)))
    assert set(skus(result)) == {"green-sock", "blue-sock"}


def test_filters_combine(shop):
    mugs_by_lumen = product_search(query="red mug", filters=SearchFilters(categories=("mugs",), brands=("Lumen",)))
    assert set(skus(mugs_by_lumen)) == {"no-desc", "green-mug"}
    cheap = product_search(query="red mug", filters=SearchFilters(price_min=Decimal("10"), price_max=Decimal("14")))
    assert set(skus(cheap)) == {"no-image", "no-desc", "green-mug"}
    nothing = product_search(query="red mug", filters=SearchFilters(price_max=Decimal("1")))
    assert nothing.count == 0 and nothing.hits == []


def test_facets_count_the_query_and_ignore_their_own_filter(shop):
    result = product_search(query="red mug", filters=SearchFilters(categories=("mugs",)))
    categories = {f.value: (f.count, f.selected) for f in result.facets["category"]}
    brands = {f.label: f.count for f in result.facets["brand"]}
    prices = {f.label: f.count for f in result.facets["price"]}

    # the category facet still offers the other categories the query matches (it ignores the
    # category filter); vases match nothing of "red mug"
    assert categories == {"mugs": (3, True), "scarves": (1, False), "lamps": (1, False)}
    # the others count within the chosen category
    assert brands == {"Acme": 1, "Lumen": 2}
    # price buckets from the shop's own prices (8.00 to 120.00), as the shop writes prices
    assert prices == {"Under $10": 0, "$10 – $15": 3, "$15 – $50": 0, "$50 – $75": 0, "$75 and up": 0}


def test_count_facets_and_pages_cover_exactly_the_matches(shop):
    # when: a shopper searches, then picks a category
    result = product_search(query="red mug", page_size=2)
    mugs = product_search(query="red mug", filters=SearchFilters(categories=("mugs",)))

    # then: count and facets are those of every product the query and filters match
    assert result.count == 5 and result.num_pages == 3 and not result.count_capped
    assert {f.value: f.count for f in result.facets["category"]} == {"mugs": 3, "scarves": 1, "lamps": 1}
    assert {f.label: f.count for f in result.facets["brand"]} == {"Acme": 3, "Lumen": 2}
    assert sum(f.count for f in result.facets["price"]) == 5
    assert mugs.count == 3 and {f.label: f.count for f in mugs.facets["brand"]} == {"Acme": 1, "Lumen": 2}
    # ...the best matches lead, and every counted product is on some page, once
    assert set(skus(result)) == {"no-image", "no-desc"}
    pages = [skus(product_search(query="red mug", page=p, page_size=2)) for p in (1, 2, 3)]
    assert sorted(s for page in pages for s in page) == sorted(RED_MUG_MATCHES)
    assert product_search(query="red mug", page=4, page_size=2).hits == []


def test_a_query_past_the_match_limit_says_its_count_is_cut(shop, settings):
    settings.SEARCH_MAX_MATCHES = 2
    result = product_search(query="red mug")
    assert result.count_capped and 2 <= result.count <= 5


def test_sorting_orders_the_matches(shop):
    pages = [product_search(query="red mug", sort="price_asc", page=p, page_size=2) for p in (1, 2, 3)]
    order = [h.product.sku for page in pages for h in page.hits]
    # the cheapest product in the shop (socks, 8.00) does not match "red mug": not shown at all
    assert order == ["green-mug", "no-image", "no-desc", "red-scarf", "red-lamp"]
    assert [h.position for page in pages for h in page.hits] == [1, 2, 3, 4, 5]
    by_price = product_search(query="red mug", sort="price_desc", page_size=2)
    assert skus(by_price) == ["red-lamp", "red-scarf"] and by_price.has_next
    assert skus(product_search(query="red mug", sort="newest", page_size=1)) == ["red-lamp"]


def test_a_single_modality_strategy_counts_only_products_with_that_vector(shop):
    image_only = product_search(query="red mug", strategy="image", page_size=20)
    with_image = {sku for sku, row in CATALOG.items() if row[2] is not None}
    assert image_only.count == len(image_only.hits) > 0 and set(skus(image_only)) <= with_image


def test_pages_are_stable(shop):
    pages = [skus(product_search(query="red", page=p, page_size=1)) for p in range(1, 6)]
    flat = [s for page in pages for s in page]
    assert len(flat) == len(set(flat)) == product_search(query="red").count  # none twice, none lost


def test_empty_query_browses_with_exact_facets(shop):
    result = product_search(query="  ", filters=SearchFilters(brands=("Acme",)), sort="price_asc")
    assert result.mode == "browse" and result.count == 5
    assert skus(result)[0] == "green-sock" and all(h.score is None for h in result.hits)
    brands = {f.label: f.count for f in result.facets["brand"]}
    assert brands == {"Acme": 5, "Lumen": 5}  # the brand facet ignores the brand filter


def test_browsing_counts_every_listed_product_while_indexing_catches_up(shop):
    from search.services import products_index

    acme = SearchFilters(brands=("Acme",))
    assert product_search(filters=acme).count == 5  # every product indexed: the engine counts
    # a product saved a moment ago is listed and counted before it reaches the vector index
    new = Product.objects.create(sku="new-mug", title="Yellow mug", brand="Acme", category="mugs", price=Decimal("9"))
    pending = product_search(filters=acme)
    assert pending.count == 6 and "new-mug" in skus(pending)
    assert {f.label: f.count for f in pending.facets["brand"]} == {"Acme": 6, "Lumen": 5}
    products_index(product_ids=[new.pk])
    new.refresh_from_db()
    assert new.index_status == "indexed"
    indexed = product_search(filters=acme)
    assert indexed.count == 6 and {f.label: f.count for f in indexed.facets["brand"]} == {"Acme": 6, "Lumen": 5}
    assert {f.value: f.count for f in indexed.facets["category"]} == {
        f.value: f.count for f in pending.facets["category"]
    }
    Product.objects.filter(pk=new.pk).update(active=False)  # unlisted: gone from both at once
    products_index(product_ids=[new.pk])
    assert product_search(filters=acme).count == 5


def test_search_by_photo_fuses_image_to_image_and_image_to_text(shop, concept):
    photo = concept.picture("red", "mug")
    result = product_search(image=photo)
    assert result.mode == "image"
    assert skus(result)[0] == "no-desc"
    # the mug without an image is still found, through its text
    assert rank(result, "no-image") < rank(result, "vase-text-only")
    assert rank(result, "no-image") < rank(result, "blue-vase")


def test_similar_products_come_from_the_products_own_vectors(shop):
    no_image = Product.objects.get(sku="no-image")
    similar = [h.product.sku for h in product_similar(product=no_image, limit=3)]
    assert "no-image" not in similar and similar[0] == "no-desc"
    scarf = [h.product.sku for h in product_similar(product=Product.objects.get(sku="red-scarf"), limit=3)]
    assert "red-scarf" not in scarf and len(scarf) == 3


def test_repeated_queries_skip_the_text_tower(shop, concept, monkeypatch):
    calls = []
    original = concept.encode_texts
    monkeypatch.setattr(concept, "encode_texts", lambda texts, **kw: calls.append(texts) or original(texts, **kw))
    product_search(query="red mug")
    product_search(query="red   mug ", sort="price_asc", page=2)  # same normalised text
    product_search(query="mug")
    # the query once; the relevance cutoff's calibration once (it embeds its own made-up queries)
    assert [c for c in calls if c in (["red mug"], ["mug"])] == [["red mug"], ["mug"]] and len(calls) == 3


def test_bad_arguments_are_refused(shop):
    with pytest.raises(ValueError, match="unknown strategy"):
        product_search(query="mug", strategy="best")
    with pytest.raises(ValueError, match="unknown sort"):
        product_search(query="mug", sort="random")


def test_warming_up_loads_the_model_and_measures_the_cutoff_before_the_first_search(shop, concept, monkeypatch):
    from search.retrieval import providers

    providers.cutoff_forget()
    providers.query_vector.cache_clear()
    providers.serving_warm_start().join(timeout=60)
    calls = []
    original = concept.encode_texts
    monkeypatch.setattr(concept, "encode_texts", lambda texts, **kw: calls.append(texts) or original(texts, **kw))
    product_search(query="red mug")
    assert calls == [["red mug"]]  # no calibration left for the first shopper: only the query


def test_a_price_on_a_bucket_boundary_is_counted_once_and_its_bucket_lists_it(make_product):
    # given mugs on either side of the 25 and 50 boundaries
    prices = {"a": "24.99", "b": "25.00", "c": "49.99", "d": "50.00"}
    for name, price in prices.items():
        make_product(f"Red mug {name}", price=Decimal(price))

    def buckets(result) -> dict[str, int]:
        return {f.label: f.count for f in result.facets["price"] if f.count}

    # when the shop is browsed (the engine counts), searched (the matches count), and browsed
    # while a product is pending (the database counts)
    browsed, searched = product_search(), product_search(query="red mug")
    Product.objects.filter(title="Red mug a").mark_pending()
    pending = product_search()

    # then each price is in one bucket: 25.00 in "$25 – $50", 50.00 in "$50 and up"
    for result in (browsed, searched, pending):
        assert buckets(result) == {"Under $25": 1, "$25 – $50": 2, "$50 and up": 1}
        # and a bucket's filter finds exactly what it counted
        for facet in result.facets["price"]:
            chosen = product_search(filters=SearchFilters(price_min=facet.price_min, price_max=facet.price_max))
            assert chosen.count == facet.count, facet.label
            assert next(f for f in chosen.facets["price"] if f.label == facet.label).selected


def test_a_furniture_shop_gets_price_buckets_that_split_its_own_prices(make_product, settings):
    # given a shop whose cheapest product is 180.00 and dearest 2,950.00, priced in euros
    prices = ["180.00", "240.00", "420.00", "650.00", "780.00", "990.00", "1250.00", "1600.00", "2100.00", "2950.00"]
    for n, price in enumerate(prices):
        make_product(f"Oak sofa {n}", price=Decimal(price), currency="EUR", category="sofas")
    settings.CATALOG_LOCALE = "de_DE"

    result = product_search()

    # then its buckets are round numbers between its prices, each holding some (none is the
    # "200 and up" that held them all), with prices as a German shop writes them
    buckets = {f.label.replace("\xa0", " "): f.count for f in result.facets["price"]}
    assert buckets == {
        "Under 400 €": 2,
        "400 € – 750 €": 2,
        "750 € – 1.500 €": 3,
        "1.500 € – 2.000 €": 1,
        "2.000 € and up": 2,
    }


@pytest.mark.parametrize(
    "price, rounded", [("26.39", "25"), ("47", "50"), ("1234", "1500"), ("0.33", "0.3"), ("99.99", "100"), ("62", "60")]
)
def test_a_price_bound_is_a_round_number(price, rounded):
    assert str(round_price(Decimal(price))) == rounded


def test_too_few_prices_make_no_buckets_and_a_bound_never_leaves_a_bucket_empty():
    assert price_bounds([]) == () and price_bounds([Decimal("5")] * 10) == ()
    bounds = price_bounds([Decimal(p) for p in ("24.99", "25.00", "49.99", "50.00")])
    assert bounds == (Decimal(25), Decimal(50))  # 50.00 alone in "50 and up"; nothing under 24.99
