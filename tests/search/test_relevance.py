"""Honest match sets (issue 30): a word search matches the products the relevance model, fitted
from the catalog itself (no labels, no clicks), judges likely good matches; counts, facets,
sorts, pages and the API agree with it; rules act within it; a photo counts what looks like it;
a shop too small to fit one says so and searches as before.

Reproduced first on a shop the concept encoder understands (tests/search/concept_encoder.py):
before, "red mug" matched every product more similar than noise: red scarves, red lamps, blue
and green mugs; sorted by price, the cheapest "red mug" results were socks."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from catalog.models import Product
from search.models import RankingRule, RelevanceFit, Synonym
from search.retrieval.config import search_config
from search.selectors import NO_MERCHANDISING, SearchFilters, product_search
from search.selectors.calibrations import calibration_forget
from search.services.relevance import MIN_PRODUCTS, relevance_due, relevance_fit_if_due
from tests.search.insights_log import search_logged
from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db

KINDS = {"mugs": "mug", "vases": "vase", "scarves": "scarf", "lamps": "lamp", "socks": "sock"}
COLOURS = ("red", "blue", "green")
MATERIALS = ("ceramic", "glass", "wool")
BRANDS = ("Acme", "Lumen")


@pytest.fixture
def catalog(concept, django_capture_on_commit_callbacks):
    """90 products: every kind x colour x material x brand; every 4th without an image, every 5th
    without a description. Prices rise with the number, so a price sort mixes kinds."""
    from catalog.services import product_create

    made = {}
    number = 0
    with django_capture_on_commit_callbacks(execute=True):
        for category, noun in KINDS.items():
            for colour in COLOURS:
                for material in MATERIALS:
                    for brand in BRANDS:
                        number += 1
                        title = f"{brand} {colour} {material} {noun}"
                        picture = png(concept.picture(colour, material, noun, brand)) if number % 4 else None
                        made[title] = product_create(
                            sku=f"R-{number:03d}",
                            title=title,
                            description=f"A {colour} {noun} made of {material}." if number % 5 else "",
                            category=category,
                            brand=brand,
                            price=Decimal(5 + (number * 37) % 90),
                            attributes={"colour": colour, "material": material},
                            image_bytes=picture,
                            image_name="p.png",
                        )
    return made


@pytest.fixture
def fitted(catalog):
    row = relevance_fit_if_due()
    assert row is not None and row.fitted and not row.problem, row and row.problem
    calibration_forget()
    return catalog


def categories(result) -> set[str]:
    return {r.payload["category"] for r in result.ranked}


def test_before_the_fit_a_query_matched_its_neighbours_and_after_it_only_what_it_asks(catalog):
    before = product_search(query="red mug")
    assert categories(before) > {"mugs"}  # the issue: red scarves and lamps, and mugs of any colour

    relevance_fit_if_due()
    calibration_forget()
    after = product_search(query="red mug")

    titles = [Product.objects.get(pk=r.id).title for r in after.ranked]
    assert after.count == len(titles) == 6  # the red mugs: 3 materials x 2 brands
    assert all(" red " in title and title.endswith(" mug") for title in titles), titles
    assert all(r.relevance >= search_config().relevance_threshold for r in after.ranked)


def test_count_facets_sorts_pages_and_the_api_agree_with_the_match_set(fitted, client):
    matched = product_search(query="blue vase", page_size=100)
    ids = {r.id for r in matched.ranked}
    assert matched.count == len(ids) > 0
    assert sum(v.count for v in matched.facets["category"]) == matched.count
    assert [v.value for v in matched.facets["category"]] == ["vases"]
    for sort in ("price_asc", "price_desc", "newest"):
        page_one = product_search(query="blue vase", sort=sort, page_size=4)
        page_two = product_search(query="blue vase", sort=sort, page_size=4, page=2)
        shown = [h.product.pk for h in page_one.hits + page_two.hits]
        assert page_one.count == matched.count and set(shown) <= ids and len(shown) == min(8, matched.count)
    cheapest = product_search(query="blue vase", sort="price_asc").hits[0].product
    assert cheapest.category == "vases" and "blue" in cheapest.title  # not a sock because it is cheap

    body = client.get("/api/search", {"q": "blue vase"}, HTTP_X_SESSION_ID="s-1").json()
    assert body["count"] == matched.count
    assert {hit["id"] for hit in body["results"]} <= ids
    assert all(search_config().relevance_threshold <= hit["relevance"] <= 1 for hit in body["results"])


def test_a_filter_counts_only_what_matches_and_its_facet_the_rest(fitted):
    unfiltered = product_search(query="green lamp")
    by_brand = {v.value: v.count for v in unfiltered.facets["brand"]}
    filtered = product_search(query="green lamp", filters=SearchFilters(brands=("acme",)))
    assert filtered.count == by_brand["acme"] > 0
    # the brand facet under its own filter still counts the other brand's matches (disjunctive)
    assert {v.value: v.count for v in filtered.facets["brand"]} == by_brand


@pytest.mark.parametrize("query", ["red glass mug", "red wool mug", "blue ceramic mug"])
def test_products_missing_a_field_rank_with_complete_ones_of_the_same_relevance(fitted, query):
    result = product_search(query=query, merchandising=NO_MERCHANDISING)
    exact = {p.pk: (bool(p.image), bool(p.description)) for title, p in fitted.items() if title.endswith(query)}
    assert len(set(exact.values())) == 2  # one of the two lacks an image or a description
    assert {r.id for r in result.ranked[: len(exact)]} == set(exact)


def test_nonsense_finds_nothing(fitted):
    assert product_search(query="blorptastic gizmo").count == 0
    assert product_search(query="zzqx").count == 0


def test_a_boost_reorders_the_matches_and_never_pulls_in_others(fitted):
    RankingRule.objects.create(
        match="contains", query="mug", action="boost", field="brand", value="Lumen", strength=100
    )
    pin = Product.objects.get(title="Acme blue glass vase")
    RankingRule.objects.create(match="contains", query="mug", action="pin", product=pin, position=2)

    result = product_search(query="red mug")

    titles = [h.product.title for h in result.hits]
    assert titles[1] == "Acme blue glass vase"  # a pin still shows its product
    rest = titles[:1] + titles[2:]
    assert all(t.endswith(" red ceramic mug") or " red " in t and t.endswith(" mug") for t in rest), titles
    assert [t.split()[0] for t in rest] == sorted((t.split()[0] for t in rest), key=lambda b: b != "Lumen")


def test_the_preview_lists_the_other_searched_queries_a_rule_changes(fitted, client):
    user = User.objects.create_superuser("boss", password="pw-boss-1")
    client.force_login(user)
    for _ in range(3):
        search_logged("green mug", days_ago=1)
    search_logged("blue vase", days_ago=2)
    form = {
        "match": "contains",
        "query": "mug",
        "action": "bury",
        "product": "",
        "position": "",
        "field": "brand",
        "attribute": "",
        "value": "Acme",
        "strength": "100",
        "note": "",
        "active": "on",
        "starts_at": "",
        "ends_at": "",
    }
    html = client.post("/admin/search/rankingrule/preview/", form).content.decode()

    others = html.split('id="preview-others"', 1)[1].split("</section>", 1)[0]
    assert "“green mug”" in others and "<td>3</td>" in others
    assert "blue vase" not in others  # the rule is not for it
    now, then = (re.findall(r"<li>R-\d+ (\w+)", cell) for cell in others.split("<td>")[2:4])
    assert len(now) == len(then) == 5 and now != then
    assert then[:3] == ["Lumen"] * 3  # buried: Acme's green mugs go after Lumen's three


def test_a_photo_finds_its_own_product_first_and_counts_what_looks_like_it(fitted, concept):
    own = Product.objects.get(title="Lumen green wool scarf")
    assert own.image
    with own.image.open("rb") as handle:
        from PIL import Image

        photo = Image.open(handle).convert("RGB")
        photo.load()
    result = product_search(image=photo)
    # first, or beside its twin of the other brand (the concept encoder draws no brands)
    twin = Product.objects.get(title="Acme green wool scarf")
    assert {r.id for r in result.ranked[:2]} == {own.pk, twin.pk} and result.ranked[0].score > 0.99
    assert 0 < result.count < Product.objects.exclude(image="").count() / 2


def test_a_synonym_finds_the_same_for_a_longer_query(fitted):
    Synonym.objects.create(words="cup, mug")
    cup = {r.id for r in product_search(query="coffee cup").ranked}
    mug = {r.id for r in product_search(query="coffee mug").ranked}
    assert cup == mug and len(mug) == 18


def test_a_shop_too_small_says_so_and_searches_as_before(concept, make_product, client):
    for n in range(3):
        make_product(f"Red ceramic mug {n}", sku=f"S-{n}")
    row = relevance_fit_if_due(force=True)
    assert row.problem == f"the catalog has 3 products on sale; it is learnt from {MIN_PRODUCTS} or more."
    assert product_search(query="red mug").count == 3

    User.objects.create_superuser("boss", password="pw-boss-1")
    client.login(username="boss", password="pw-boss-1")
    page = client.get("/admin/search/relevancefit/").content.decode()
    assert "Could not learn from the catalog" in page
    assert "the catalog has 3 products on sale; it is learnt from 50 or more. Until it works, a search shows" in page


def test_it_is_fitted_again_when_the_catalog_changes_by_a_quarter_or_the_model(fitted):
    row = RelevanceFit.objects.get()
    assert not relevance_due(row.model_id, row.products, row)
    assert not relevance_due(row.model_id, int(row.products * 1.2), row)
    assert relevance_due(row.model_id, int(row.products * 1.3), row)
    assert relevance_due(row.model_id, int(row.products * 0.7), row)
    assert relevance_due("another/model", row.products, None)


def test_threshold_zero_matches_everything_above_the_cutoff_as_before(fitted):
    with override_settings(SEARCH_RELEVANCE_THRESHOLD=0):
        assert categories(product_search(query="red mug")) > {"mugs"}


def test_the_admin_says_what_searches_match_before_and_after_the_fit(catalog, client):
    User.objects.create_superuser("boss", password="pw-boss-1")
    client.login(username="boss", password="pw-boss-1")
    assert (
        "Not learnt yet: the server learns what a good match is"
        in client.get("/admin/search/relevancefit/").content.decode()
    )

    relevance_fit_if_due()
    page = client.get("/admin/search/relevancefit/").content.decode()
    assert "Learnt from the catalog" in page and "at least 40% likely to be a good match" in page
    assert "Relevance models" in page


def test_single_words_and_brands_match_every_product_holding_them(fitted):
    red = {p.pk for t, p in fitted.items() if " red " in t}
    assert {r.id for r in product_search(query="red").ranked} == red
    lumen = {p.pk for t, p in fitted.items() if t.startswith("Lumen ")}
    result = product_search(query="lumen")
    assert {r.id for r in result.ranked} == lumen
    assert all(r.relevance >= search_config().relevance_threshold for r in result.ranked)
