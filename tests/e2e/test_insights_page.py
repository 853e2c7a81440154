"""The merchandiser's insights page in a real browser (issue 16): signed in through the admin's
own login form, the period and channel chosen in its form, the charts drawn where they should be
and the tables' columns in order, at a laptop's and a phone's width."""

from __future__ import annotations

import pytest

from tests.e2e.browsing import admin_signed_in, axe_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def signed_in(browser, live_server, insights_log):  # insights_log: tests/search/insights_log.py
    return admin_signed_in(browser, live_server, "view_insights")


def test_the_insights_page_shows_its_numbers_charts_and_tables(signed_in, live_server, screenshot):
    page = signed_in
    page.click("text=Search insights")  # listed on the admin's home page for this permission
    page.wait_for_selector("#table-top")
    assert page.inner_text("#total-searches") == "12"
    charts = page.locator("svg.chart")
    assert charts.count() == 2
    first, second = charts.nth(0).bounding_box(), charts.nth(1).bounding_box()
    assert first["width"] > 250 and first["height"] > 60 and second["width"] > 250
    assert abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"] + first["width"] - 1  # side by side
    headers = [t.strip() for t in page.locator("#table-top thead th").all_text_contents()]  # (shown in capitals)
    assert headers == ["Query", "Searches", "Zero results", "Click-through", "Clicks", "Mean position"]
    assert page.locator("#table-top tbody tr").first.locator("td").all_inner_texts() == [
        "red mug",
        "5",
        "0",
        "60%",
        "4",
        "1.8",
    ]
    assert not axe_violations(page)
    screenshot(page, "insights")

    page.select_option("#id_channel", "api")
    page.click("#insights-filter input[type=submit]")
    page.wait_for_url("**channel=api**")
    assert page.inner_text("#total-searches") == "4"  # red mug once, unicorn once, blue vase twice
    assert page.locator("#table-no_clicks tbody tr td").first.inner_text() == "blue vase"

    page.set_viewport_size({"width": 390, "height": 844})
    page.select_option("#id_channel", "all")
    page.fill("#id_sku", "MUG-1")
    page.click("#insights-filter input[type=submit]")
    page.wait_for_selector("#product-queries")
    assert page.locator("#product-queries tbody tr td").first.inner_text() == "red mug"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the page scrolls sideways on a phone ({width}px)"
    screenshot(page, "insights-phone")
