"""The storefront in a real browser: Python Playwright driving Debian's Chromium.

Never `playwright install`: the browser is /usr/bin/chromium from apt (.ci/run installs it).
"""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Playwright's sync API keeps an event loop in this thread; Django's ORM calls made by the
# test's fixtures are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def card_titles(page) -> list[str]:
    return page.locator("#results .card h2").all_inner_texts()


def test_typing_swaps_in_results_and_filters_update_without_reload(browser, live_server, shop):
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    assert len(card_titles(page)) == 10

    # typing: debounced htmx request, the results partial swaps in, the URL follows
    page.locator("#q").press_sequentially("red mug", delay=40)
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('red mug')")
    assert card_titles(page)[0] == "Red mug"
    assert "q=red+mug" in page.url
    assert page.evaluate("window.__sameDocument") is True

    # a filter: only mugs, still no reload, state in the URL
    page.locator("input[name=category][value=mugs]").check()
    page.wait_for_function("document.querySelectorAll('#results .card').length === 3")
    assert set(card_titles(page)) == {"Red mug", "Red ceramic mug", "Green ceramic mug"}
    assert "category=mugs" in page.url
    assert page.evaluate("window.__sameDocument") is True

    # the back button returns to the unfiltered results: every product that matches "red mug"
    page.go_back()
    page.wait_for_function("document.querySelectorAll('#results .card').length === 5")
    assert "category=mugs" not in page.url
    page.close()


def test_the_same_search_works_with_javascript_off(browser, live_server, shop):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/?q=red+mug")
    assert card_titles(page)[0] == "Red mug"

    page.locator("input[name=category][value=mugs]").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**category=mugs**")
    assert len(card_titles(page)) == 3
    context.close()


def test_a_result_click_is_recorded_by_beacon_and_goes_straight_to_the_product(browser, live_server, shop):
    import time

    from search.models import Click

    page = browser.new_page()
    page.goto(live_server.url + "/?q=red+mug")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.locator("#results .card a").first.click()
    page.wait_for_url("**/products/*/")

    assert not any("/r/" in url for url in requests)  # no redirect hop with JavaScript on
    deadline = time.monotonic() + 10
    while not Click.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    click = Click.objects.get()
    assert click.position == 1 and click.product_sku == "no-desc"
    page.close()
