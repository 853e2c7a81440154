"""Ranking rules and synonyms on live results (issue 16): each rule's effect on what a word search
shows, on each engine, and what the log, the exports and the calibration make of it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Product
from search.models import RankingRule, SearchEvent, Synonym
from search.retrieval.fusion import Ranked
from search.retrieval.rules import Rule, rules_apply
from search.selectors import NO_MERCHANDISING, SearchFilters, product_search
from search.services.calibrating import evidence_from_clicks
from search.services.exports import clicks_export

pytestmark = [pytest.mark.django_db]


def skus(result) -> list[str]:
    return [hit.product.sku for hit in result.hits]


def rule(action: str, query: str = "red mug", *, match: str = "exact", **fields) -> RankingRule:
    if "product" in fields and isinstance(fields["product"], str):
        fields["product"] = Product.objects.get(sku=fields["product"])
    return RankingRule.objects.create(action=action, match=match, query=query, **fields)


# --- the ranking itself, on a list we can reason about ---


def ranking(n: int, **payloads) -> list[Ranked]:
    return [
        Ranked(id=i, score=1.0 - i / 100, raw={}, normalized={}, payload=payloads.get(f"p{i}", {}))
        for i in range(1, n + 1)
    ]


def ids(applied) -> list[int]:
    return [r.id for r in applied.ranked]


def test_a_boost_halves_the_distance_from_the_top_and_a_full_one_puts_the_products_first():
    acme = {"brand": "acme"}
    ranked = ranking(12, p11=acme, p7=acme)
    half = rules_apply(ranked, [Rule(1, "boost", field="brand", value="acme", strength=0.5)])
    # 7 -> 1 + 6 * 0.5 = 4 and 11 -> 6, each ahead of the product it meets there
    assert ids(half)[:8] == [1, 2, 3, 7, 4, 5, 11, 6]
    assert half.placements == {7: "boosted", 11: "boosted"} and half.rule_ids == [1]
    full = rules_apply(ranked, [Rule(1, "boost", field="brand", value="acme", strength=1.0)])
    assert ids(full)[:3] == [7, 11, 1]  # first, in their relevance order


def test_a_bury_doubles_the_position_and_a_full_one_puts_the_products_last():
    ranked = ranking(10, p1={"attr_colour": ["red", "white"]}, p3={"attr_colour": ["red"]})
    half = rules_apply(ranked, [Rule(2, "bury", field="attr_colour", value="red", strength=0.5)])
    assert ids(half)[:7] == [2, 1, 4, 5, 6, 3, 7]  # 1 -> 2, 3 -> 6, after the product met there
    full = rules_apply(ranked, [Rule(2, "bury", field="attr_colour", value="red", strength=1.0)])
    assert ids(full)[-2:] == [1, 3]
    assert full.placements == {1: "buried", 3: "buried"}


def test_pins_take_their_positions_a_hide_beats_a_pin_and_the_sort_keeps_only_hides():
    ranked = ranking(5)
    extra = Ranked(id=99, score=0.0, raw={}, normalized={})
    rules = [
        Rule(1, "pin", product_id=5, position=1),
        Rule(2, "pin", product_id=99, position=3),
        Rule(3, "pin", product_id=4, position=50),
        Rule(4, "pin", product_id=2, position=2),
        Rule(5, "hide", product_id=2),
        Rule(6, "pin", product_id=5, position=4),
    ]
    applied = rules_apply(ranked, rules, pinnable={99: extra})
    assert ids(applied) == [5, 1, 99, 3, 4]  # 4 pinned past the end is last; 2 hidden though pinned
    assert applied.inserted == {99} and applied.hidden == {2}
    assert applied.rule_ids == [1, 2, 3, 5]  # the pin of 5 at 4 lost to its pin at 1; 2's pin lost to the hide
    sorted_by_price = rules_apply(ranked, rules, relevance=False, pinnable={99: extra})
    assert ids(sorted_by_price) == [1, 3, 4, 5] and sorted_by_price.placements == {}


# --- on live results, each engine ---


@pytest.fixture
def live(vector_engine, shop):
    return shop


def test_a_pin_puts_the_product_at_its_position_for_that_query_only(live):
    before = skus(product_search(query="red mug"))
    other = skus(product_search(query="green mug"))
    assert before.index("green-mug") > 1
    rule("pin", product="green-mug", position=1)
    after = product_search(query="red mug")
    assert skus(after)[0] == "green-mug"
    assert after.hits[0].placement == "pinned"
    assert [s for s in skus(after) if s != "green-mug"] == [s for s in before if s != "green-mug"]
    assert skus(product_search(query="green mug")) == other
    # the query is compared word by word: case, punctuation and spacing do not matter
    assert skus(product_search(query="  RED, mug!"))[0] == "green-mug"


def test_rules_switched_off_in_bulk_stop_applying_at_the_next_search(live):
    # given a pin the search applies (and has compiled)
    rule("pin", product="green-mug", position=1)
    assert skus(product_search(query="red mug"))[0] == "green-mug"
    # when every rule is switched off by a bulk update (no save, no signal, no updated_at)
    RankingRule.objects.update(active=False)
    # then the next search no longer pins
    assert skus(product_search(query="red mug"))[0] != "green-mug"


def test_a_pinned_product_the_query_does_not_match_is_shown_unless_the_filters_exclude_it(live):
    before = product_search(query="red mug")
    assert "blue-sock" not in skus(before)
    rule("pin", product="blue-sock", position=2)
    after = product_search(query="red mug")
    assert skus(after)[1] == "blue-sock" and after.count == before.count + 1
    assert after.hits[1].score is None  # no score of the model's to show or log
    # the shopper's filters still hold: socks are not mugs
    mugs = product_search(query="red mug", filters=SearchFilters(categories=("mugs",)))
    assert "blue-sock" not in skus(mugs)
    # a category only the words named is no filter of the shopper's: the pin still shows
    read = product_search(query="red mug", understand=True)
    assert read.understood and skus(read)[1] == "blue-sock"
    # a category the shopper ticked besides: the filter is theirs, and socks are neither
    ticked = product_search(query="red mug", understand=True, filters=SearchFilters(categories=("lamps",)))
    assert "blue-sock" not in skus(ticked)
    # a product taken off sale is not shown
    Product.objects.filter(sku="blue-sock").update(active=False)
    assert "blue-sock" not in skus(product_search(query="red mug"))


def test_a_hidden_product_is_gone_from_the_results_the_count_and_the_facets(live):
    before = product_search(query="red mug")
    assert "no-image" in skus(before)
    rule("hide", product="no-image")
    after = product_search(query="red mug")
    assert "no-image" not in skus(after) and after.count == before.count - 1
    acme = {f.value: f.count for f in after.facets["brand"]}.get("acme", 0)
    assert acme == {f.value: f.count for f in before.facets["brand"]}["acme"] - 1
    # hidden whatever the sort, and whatever filter is on
    assert "no-image" not in skus(product_search(query="red mug", sort="price_asc"))
    filtered = product_search(query="red mug", filters=SearchFilters(brands=("Acme",)))
    assert "no-image" not in skus(filtered)


def test_boost_and_bury_by_brand_category_and_attribute(live):
    before = skus(product_search(query="red"))
    lumen = set(Product.objects.filter(brand="Lumen").values_list("sku", flat=True)) & set(before)
    assert lumen and before[0] not in lumen
    rule("boost", "red", field="brand", value="  LUMEN", strength=100)
    boosted = product_search(query="red")
    assert set(skus(boosted)[: len(lumen)]) == lumen
    assert {h.placement for h in boosted.hits if h.product.sku in lumen} == {"boosted"}
    RankingRule.objects.all().delete()
    rule("bury", "red", field="category", value="mugs", strength=100)
    mugs = set(Product.objects.filter(category="mugs").values_list("sku", flat=True)) & set(before)
    assert set(skus(product_search(query="red"))[-len(mugs) :]) == mugs


def test_a_boost_by_attribute_reads_every_spelling_of_it(vector_engine, untidy_shop):
    before = skus(product_search(query="mug"))
    assert before[0] != "u1"
    rule("boost", "mug", field="attribute", attribute="Colour", value="BLUE", strength=100)
    assert skus(product_search(query="mug"))[0] == "u1"  # stored as {"colour": "blue "}


def test_rules_match_the_query_exactly_by_its_words_or_every_word_search(live):
    rule("pin", "mug", match="contains", product="red-lamp", position=1)
    assert skus(product_search(query="red mug"))[0] == "red-lamp"
    assert skus(product_search(query="green ceramic mug"))[0] == "red-lamp"
    assert skus(product_search(query="mugs"))[:1] != ["red-lamp"]  # another word
    RankingRule.objects.all().delete()
    rule("hide", "", match="any", product="no-desc")
    assert all("no-desc" not in skus(product_search(query=q)) for q in ("red mug", "mug", "red"))
    # photo searches and browsing are not word searches: the rule is not theirs
    assert "no-desc" in skus(product_search(query="", page_size=50))


def test_an_inactive_rule_does_nothing_and_a_saved_change_applies_to_the_next_search(live):
    pin = rule("pin", product="green-mug", position=1, active=False)
    assert skus(product_search(query="red mug"))[0] != "green-mug"
    pin.active = True
    pin.save()
    assert skus(product_search(query="red mug"))[0] == "green-mug"


def test_a_rule_with_dates_applies_only_between_them(live):
    now = timezone.now()
    rule("pin", product="green-mug", position=1, starts_at=now + timedelta(hours=1))
    # (a second pin at the same position is refused, however its dates differ: another position)
    rule("pin", product="blue-sock", position=2, ends_at=now - timedelta(seconds=1))
    before = skus(product_search(query="red mug"))
    assert before[0] != "green-mug" and "blue-sock" not in before  # not started, ended
    RankingRule.objects.filter(product__sku="green-mug").update(
        starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1)
    )
    # (a change made behind the admin's back: the table's count and latest change still tell)
    RankingRule.objects.filter(product__sku="blue-sock").update(updated_at=now)
    assert skus(product_search(query="red mug"))[0] == "green-mug"


def test_a_deleted_product_takes_its_rules_with_it(live, django_capture_on_commit_callbacks):
    from catalog.services import product_delete

    rule("pin", product="green-mug", position=1)
    rule("hide", product="green-mug", query="mug")
    with django_capture_on_commit_callbacks(execute=True):
        product_delete(product=Product.objects.get(sku="green-mug"))
    assert not RankingRule.objects.exists()
    result = product_search(query="red mug")
    assert "green-mug" not in skus(result) and result.merchandising == {}


def test_a_synonym_lets_the_keyword_leg_find_the_words_the_catalog_uses(live):
    # "crimson" is neither a word of the catalog nor of the model: nothing to find
    plain = product_search(query="crimson")
    assert plain.count == 0
    Synonym.objects.create(words="crimson, red")
    found = product_search(query="crimson")
    assert found.count > 0 and set(skus(found)) <= {"no-image", "no-desc", "red-scarf", "red-lamp"}
    assert found.understood_as == ""  # a synonym is no typo: nothing is "corrected"
    assert found.merchandising["synonyms"] == [Synonym.objects.get().pk]
    # one-way: "jumper" finds scarves; "scarf" does not find what "jumper" names
    Synonym.objects.create(words="jumper, scarf", one_way_from="jumper")
    assert "red-scarf" in skus(product_search(query="jumper"))
    assert product_search(query="scarf").merchandising.get("synonyms") is None


# --- what the log, the exports and the calibration make of it ---


def test_a_search_logs_its_rules_and_the_placed_products_are_no_training_negatives(client, live):
    pin = rule("pin", "red", product="blue-vase", position=1)
    client.defaults["HTTP_X_SESSION_ID"] = "shopper-1"  # clicks count for their session's searches
    # "red": no word that names a category, which would keep a pinned vase out
    body = client.get("/api/search", {"q": "red"}).json()
    assert body["results"][0]["sku"] == "blue-vase"
    assert "placement" not in body["results"][0] and "pinned" not in str(body)  # shoppers see only the result
    event = SearchEvent.objects.get(pk=body["search_id"])
    assert event.merchandising == {"rules": [pin.pk]}
    assert [(i.product_sku, i.placement) for i in event.impressions.all()[:2]] == [
        ("blue-vase", "pinned"),
        (body["results"][1]["sku"], ""),
    ]
    third = body["results"][2]
    assert (
        client.post(
            "/api/clicks", {"search_id": body["search_id"], "product_id": third["id"]}, content_type="application/json"
        ).status_code
        == 201
    )

    events = list(clicks_export(kind="events"))
    assert events[0]["merchandising"] == {"rules": [pin.pk], "synonyms": []}  # every key, exported
    assert events[0]["impressions"][0]["placement"] == "pinned"
    triplets = list(clicks_export(kind="triplets"))
    # the product shown second is a negative; the pinned one above it is not
    assert [t["negative_position"] for t in triplets] == [2]
    evidence = evidence_from_clicks()
    assert Product.objects.get(sku="blue-vase").pk not in evidence.labels["red"]
    assert len(evidence.labels["red"]) == 3  # the 2 shown above the click (one pinned, left out), it, the next


def test_the_calibration_searches_without_rules(live):
    rule("pin", product="blue-vase", position=1)
    assert skus(product_search(query="red mug"))[0] == "blue-vase"
    assert skus(product_search(query="red mug", merchandising=NO_MERCHANDISING))[0] != "blue-vase"
