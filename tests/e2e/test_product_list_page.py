"""The merchandiser's product list in a real browser (issue 31): the newest first, a thumbnail
each, titles on one or two lines, prices as the shop writes them and the indexing time whole."""

from __future__ import annotations

import pytest

from tests.e2e.browsing import admin_signed_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_the_product_list_shows_the_newest_first_with_pictures_and_readable_rows(
    browser, live_server, shop, screenshot
):
    from catalog.services import product_create

    product_create(sku="zz-new", title="Hand-thrown speckled stoneware coffee mug with a wide handle", price="19.5")
    page = admin_signed_in(browser, live_server, "view_product")
    page.goto(live_server.url + "/admin/catalog/product/")
    screenshot(page, "products")
    rows = page.locator("#result_list tbody tr")
    first = rows.first
    assert first.locator("td.field-sku").inner_text() == "zz-new"  # the one just added
    assert first.locator("td.field-price_shown").inner_text() == "$19.50"
    # the long title wraps to two lines at most (about 20 px a line); the time stays on one line
    assert first.locator("th.field-title, td.field-title").first.bounding_box()["height"] < 3 * 20
    # every column on the screen: nothing to scroll sideways to, the indexing time on one line
    table = page.locator("#result_list").bounding_box()
    assert table["x"] + table["width"] <= page.locator("#changelist-filter").bounding_box()["x"]
    indexed = rows.nth(1).locator("td.field-indexed_when")
    assert indexed.bounding_box()["x"] + indexed.bounding_box()["width"] <= table["x"] + table["width"]
    assert len(indexed.inner_text().splitlines()) == 1
    # a thumbnail where the product has a picture, a dash where it has none
    assert rows.locator("img.thumb").count() == sum(1 for sku, row in _catalog().items() if row[2])
    assert rows.locator(".no-picture").count() == 1 + sum(1 for row in _catalog().values() if not row[2])
    page.close()


def _catalog():
    from tests.shop_fixtures import CATALOG

    return CATALOG
