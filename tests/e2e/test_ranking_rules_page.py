"""A ranking rule made in a real browser (issue 16): the merchandiser picks the product from the
admin's search box, previews the rule against live results (the two lists side by side, the
pinned product marked new), saves it, and the storefront shows it at once."""

from __future__ import annotations

import pytest

from catalog.models import Product
from search.models import RankingRule
from tests.e2e.browsing import admin_signed_in, axe_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_a_pin_previewed_saved_and_shown_on_the_storefront(browser, live_server, shop, concept, screenshot):
    # titles as long as a real shop's: the two lists must still fit side by side
    for product in Product.objects.exclude(sku="blue-sock"):
        Product.objects.filter(pk=product.pk).update(title=f"{product.title}, Northwind heritage collection 2026")
    page = admin_signed_in(
        browser,
        live_server,
        "add_rankingrule",
        "view_rankingrule",
        "change_rankingrule",
        "view_product",
        viewport={"width": 1280, "height": 1000},
    )
    page.click("text=Ranking rules")
    page.click("text=Add ranking rule")

    page.fill("#id_query", "red mug")
    # the form shows what the chosen action uses
    page.select_option("#id_action", "boost")
    assert page.is_hidden(".field-product") and page.is_visible(".field-value") and page.is_hidden(".field-attribute")
    page.select_option("#id_field", "attribute")
    assert page.is_visible(".field-attribute")
    page.select_option("#id_match", "any")
    assert page.is_hidden(".field-query")
    page.select_option("#id_match", "exact")
    page.select_option("#id_action", "pin")
    assert page.is_visible(".field-position") and page.is_hidden(".field-value") and page.is_hidden(".field-strength")
    page.click("#id_product + .select2 .select2-selection")  # the admin's product search box
    page.fill(".select2-search__field", "sock")
    page.click(".select2-results__option:has-text('blue-sock')")
    page.fill("#id_position", "2")
    page.click("#preview-button")
    page.wait_for_selector(".preview-then")

    now = page.locator(".preview-now tbody tr")
    then = page.locator(".preview-then tbody tr")
    assert [t.strip() for t in then.nth(1).locator("td").all_inner_texts()] == [
        "2",
        "blue-sock",
        "Blue wool sock pinned",
        "new",
    ]
    assert then.nth(1).locator("img.thumb").is_visible()  # with its picture
    assert then.nth(0).locator("td").nth(1).inner_text() == now.nth(0).locator("td").nth(1).inner_text()
    assert then.nth(2).locator("td").nth(1).inner_text() == now.nth(1).locator("td").nth(1).inner_text()
    left, right = page.locator(".preview-now").bounding_box(), page.locator(".preview-then").bounding_box()
    assert abs(left["y"] - right["y"]) < 2 and right["x"] >= left["x"] + left["width"]  # side by side
    assert not RankingRule.objects.exists()  # a preview saves nothing
    assert not axe_violations(page)
    screenshot(page, "ranking-rule-preview")

    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert page.locator("#result_list tbody tr td.field-target").inner_text() == "blue-sock at 2"

    store = browser.new_page(viewport={"width": 1280, "height": 900})
    store.goto(live_server.url + "/?q=red+mug")
    titles = store.locator("#results .card h2").all_inner_texts()
    assert titles[1] == "Blue wool sock"
