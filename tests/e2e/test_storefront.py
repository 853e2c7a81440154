"""The storefront in a real browser: Python Playwright driving Debian's Chromium (the fixtures
are in tests/e2e/conftest.py)."""

from __future__ import annotations

import pytest

from tests.e2e.browsing import axe_violations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


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

    # a filter: only mugs, still no reload, shown as a chip; the URL says it by the words alone
    # ("mug" names the category: the search is the same with it read from them)
    page.locator("input[type=checkbox][name=category][value=mugs]").check()
    page.wait_for_function("document.querySelectorAll('#results .card').length === 3")
    assert set(card_titles(page)) == {"Red mug", "Red ceramic mug", "Green ceramic mug"}
    assert page.get_by_role("link", name="Remove filter Category: mugs").is_visible()
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

    page.locator("input[type=checkbox][name=category][value=mugs]").check()
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
    page.wait_for_url("**/products/*/**")

    assert not any("/r/" in url for url in requests)  # no redirect hop with JavaScript on
    deadline = time.monotonic() + 10
    while not Click.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    click = Click.objects.get()
    assert click.position == 1 and click.product_sku == "no-desc"
    page.close()


def test_suggestions_follow_typing_and_the_keyboard(browser, live_server, shop):
    page = browser.new_page()
    page.goto(live_server.url + "/")
    box = page.get_by_role("combobox", name="Search products")
    box.press_sequentially("red m", delay=40)

    # a list of suggestions opens under the box, the box keeps focus and says it is expanded
    listbox = page.get_by_role("listbox", name="Suggestions")
    listbox.wait_for(state="visible")
    options = listbox.get_by_role("option")
    assert {"Red mug", "Red ceramic mug"} <= {t.split("\n")[0] for t in options.all_inner_texts()}
    assert box.get_attribute("aria-expanded") == "true"
    below = listbox.bounding_box()
    field = box.bounding_box()
    assert below["y"] >= field["y"] + field["height"] - 1 and below["width"] >= field["width"] - 1

    # Down highlights the first option (named by aria-activedescendant), Down again the next
    box.press("ArrowDown")
    first = options.nth(0)
    assert first.get_attribute("aria-selected") == "true"
    assert box.get_attribute("aria-activedescendant") == first.get_attribute("id")
    assert page.evaluate("document.activeElement.id") == "q"
    highlighted = first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert highlighted != options.nth(1).evaluate("e => getComputedStyle(e).backgroundColor")

    # Enter takes a completion: the box holds it and the results are searched for it
    box.fill("")
    box.press_sequentially("lum", delay=40)
    listbox.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#q-suggestions [role=option]')?.textContent.startsWith('Lumen')")
    box.press("ArrowDown")
    chosen = options.nth(0).inner_text().split("\n")[0]
    assert chosen == "Lumen"
    box.press("Enter")
    page.wait_for_function(f"document.querySelector('#results .summary')?.textContent.includes({chosen!r})")
    assert box.input_value() == chosen and listbox.is_hidden()
    assert box.get_attribute("aria-expanded") == "false"

    # Escape closes an open list and leaves what was typed
    box.fill("")
    box.press_sequentially("lum", delay=40)
    listbox.wait_for(state="visible")
    box.press("Escape")
    assert listbox.is_hidden() and box.input_value() == "lum"
    page.close()


@pytest.mark.parametrize("width", [375, 768, 1280])
def test_predictive_search_shows_products_that_open_groups_with_counts_and_see_all(
    browser, live_server, shop, screenshot, width
):
    page = browser.new_page(viewport={"width": width, "height": 812})
    page.goto(live_server.url + "/")
    box = page.get_by_role("combobox", name="Search products")
    box.press_sequentially("red m", delay=40)
    listbox = page.get_by_role("listbox", name="Suggestions")
    listbox.wait_for(state="visible")
    products = listbox.locator("[data-kind=product]")
    products.first.wait_for()
    # products with their picture (or a blank square) and price, the best match first
    assert products.nth(0).locator(".title").inner_text() == "Red mug"
    assert products.nth(0).locator(".price").inner_text() == "$14.00"
    assert products.nth(0).locator("img.thumb").is_visible()
    assert products.nth(1).locator(".thumb-none").count() == 1  # "Red ceramic mug" has no picture
    # a group of categories with their counts, all inside the phone's width
    category = listbox.get_by_role("option", name="mugs 2")  # the two red mugs' titles hold "red m"
    assert category.is_visible()
    box_right = listbox.bounding_box()["x"] + listbox.bounding_box()["width"]
    assert box_right <= width
    screenshot(page, "predictive")
    # "See all N results" takes the live results' count once they are in
    see_all = listbox.locator("[data-kind=all]")
    page.wait_for_function(
        "(() => { const r = document.getElementById('results'); return r.dataset.q === 'red m' && "
        "document.querySelector('[data-kind=all]')?.textContent"
        " === `See all ${r.dataset.count} results for “red m”`; })()"
    )
    # Down to the first product and Enter: its page opens
    box.press("ArrowDown")
    assert products.nth(0).get_attribute("aria-selected") == "true"
    box.press("Enter")
    page.wait_for_url(f"**/products/{shop['no-desc']}/")
    assert page.get_by_role("heading", name="Red mug").is_visible()
    page.go_back()
    # See all: the words typed, searched
    box = page.get_by_role("combobox", name="Search products")
    box.fill("")
    box.press_sequentially("red m", delay=40)
    see_all.wait_for()
    see_all.click()
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('“red m”')")
    assert listbox.is_hidden()
    page.close()


@pytest.mark.parametrize("width", [375, 768, 1280])
def test_words_that_are_filters_show_as_chips_that_take_them_back(browser, live_server, shop, screenshot, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(live_server.url + "/?q=mugs+under+%2413")
    chips = page.locator(".chips .chip")
    shown = lambda: [" ".join(t.split()) for t in chips.all_inner_texts()]  # noqa: E731
    assert shown() == ["Category: mugs ✕", "Under $13 ✕"]
    first_card = page.locator("#results .card").first.bounding_box()
    row = page.locator(".chips").bounding_box()
    # above the results, inside the screen, nothing to scroll sideways
    assert row["y"] + row["height"] <= first_card["y"] and row["x"] >= 0 and row["x"] + row["width"] <= width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    prices = page.locator("#results .card .price").all_inner_texts()
    assert prices and all(float(p.strip("$")) < 13 for p in prices)
    screenshot(page, "chips")
    # taking the price back: the mugs at any price, the category chip stays, the words not read again
    page.get_by_role("link", name="Remove filter Under $13").click()
    page.wait_for_function("document.querySelectorAll('#results .card').length === 3")
    assert shown() == ["Category: mugs ✕"] and "understood=" in page.url
    assert page.locator("#q").input_value() == "mugs under $13"
    screenshot(page, "price taken back")
    page.close()


def test_the_zero_results_page_uses_the_width_of_the_page(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(live_server.url + "/?q=xqzvvplk+fjjwq")
    heading = page.get_by_role("heading", name="No products match “xqzvvplk fjjwq”")
    box = heading.bounding_box()
    # one line across the page, not squeezed into the filter column (220px) of a results page
    assert box["width"] > 400 and box["height"] < 40
    assert page.get_by_role("link", name="Browse all products").is_visible()
    assert page.locator("select[name=sort]").count() == 0
    page.close()


LAYOUT = """() => {
  const grid = document.querySelector('#results .grid');
  return {nested: document.querySelectorAll('#results #results').length,
          columns: grid ? getComputedStyle(grid).gridTemplateColumns.split(' ').length : 0,
          width: grid ? Math.round(grid.getBoundingClientRect().width) : 0};
}"""


def open_filters(page) -> None:
    """On a phone the filters are behind the Filters switch: open it if it is closed."""
    toggle = page.locator("#show-filters")
    if page.locator("label.filters-button").is_visible() and not toggle.is_checked():
        page.locator("label.filters-button").click()


@pytest.mark.parametrize("width, columns", [(375, 2), (768, 2), (1280, 4)])
def test_every_live_update_keeps_the_page_layout(browser, live_server, shop, concept, screenshot, width, columns):
    from tests.shop_fixtures import png

    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(live_server.url + "/?q=red&page_size=2")
    before = page.evaluate(LAYOUT)
    assert before == {"nested": 0, "columns": columns, "width": before["width"]} and before["width"] > width * 0.5
    screenshot(page, "start")
    # phones: the filters folded away behind a switch; wider: beside the results
    assert page.locator("input[name=category]").first.is_visible() == (width >= 768)

    def price() -> None:
        open_filters(page)
        page.get_by_role("spinbutton", name="Minimum price").fill("1")
        page.keyboard.press("Tab")
        page.keyboard.type("500")
        page.keyboard.press("Tab")

    def typing() -> None:
        box = page.locator("#q")
        box.fill("")
        box.press_sequentially("mug", delay=30)
        page.get_by_role("listbox", name="Suggestions").wait_for(state="visible")
        box.press("Escape")  # the suggestions close; what was typed stays and is searched

    def photo() -> None:
        page.locator("input[name=image]").set_input_files(
            {"name": "red.png", "mimeType": "image/png", "buffer": png(concept.picture("red", "mug"))}
        )
        page.get_by_role("button", name="Find similar").click()

    def facet(name: str, value: str):
        def act() -> None:
            open_filters(page)
            page.locator(f"input[type=checkbox][name={name}][value={value}]").check()

        return act

    updates = [
        ("next page", lambda: page.get_by_role("link", name="Next →").click(), "location.search.includes('page=2')"),
        (
            "sort",
            lambda: page.locator("select[name=sort]").select_option("price_asc"),
            "location.search.includes('sort=price_asc')",
        ),
        ("filter", facet("brand", "Acme"), "location.search.includes('brand=Acme')"),
        ("price", price, "location.search.includes('price_max=500')"),
        ("typing", typing, "document.querySelector('#results .summary')?.textContent.includes('“mug”')"),
        ("photo", photo, "location.search.includes('photo=')"),
        (
            "filter on a photo",
            facet("category", "mugs"),
            "location.search.includes('photo=') && location.search.includes('category=mugs')",
        ),
    ]
    for name, act, check in updates:
        act()
        page.wait_for_function(check)
        page.wait_for_load_state("networkidle")
        after = page.evaluate(LAYOUT)
        screenshot(page, name)
        assert after == before, f"after {name} at {width}px: {after} (before: {before})"
        first = page.locator("#results .card").first.bounding_box()
        assert first["x"] >= 0 and first["x"] + first["width"] <= width, name
    page.close()


def test_a_photo_search_keeps_its_photo_through_filters_and_says_what_it_is_for(
    browser, live_server, shop, concept, screenshot
):
    from tests.shop_fixtures import png

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/?q=lamp&category=mugs")
    page.locator("input[name=image]").set_input_files(
        {"name": "red.png", "mimeType": "image/png", "buffer": png(concept.picture("red", "mug"))}
    )
    page.get_by_role("button", name="Find similar").click()
    page.wait_for_url("**photo=**")
    page.wait_for_load_state("networkidle")
    screenshot(page, "photo search")
    # its own state: the photo, the filter the shopper had, not the words it replaced
    assert "category=mugs" in page.url and "q=" not in page.url
    assert page.locator("#q").input_value() == ""
    assert "Red mug" in card_titles(page)[:2] and len(card_titles(page)) == 3  # red mugs before the green one
    assert page.get_by_role("img", name="Your photo").is_visible()
    assert "look like" in page.locator(".photo-query").inner_text()
    assert page.locator("#search-status").inner_text() == "3 products like your photo"

    # a facet keeps the photo; so does the pager's and the product page's way back
    page.locator("input[type=checkbox][name=brand][value=Lumen]").check()
    page.wait_for_url("**brand=Lumen**")
    assert "photo=" in page.url and "category=mugs" in page.url
    page.wait_for_function("document.querySelectorAll('#results .card').length === 2")
    page.locator("#results .card a").first.click()
    page.wait_for_url("**/products/*/**")
    page.get_by_role("link", name="← Back to search").click()
    page.wait_for_url("**photo=**")
    assert "brand=Lumen" in page.url and page.locator("input[type=checkbox][name=brand][value=Lumen]").is_checked()

    # removing the photo keeps the filters and browses them
    page.get_by_role("link", name="Remove the photo").click()
    page.wait_for_url("**/?category=mugs&brand=Lumen")
    assert page.locator(".summary").inner_text() == "2 products"
    page.close()


def test_a_phones_20_mp_photo_is_scaled_down_in_the_browser_and_refused_without_javascript(browser, live_server, shop):
    """A shopper's photo over SEARCH_PHOTO_MAX_PIXELS (16 MP) is refused from its header; the
    storefront scales it down before sending, so a phone's photo still searches (issue 29)."""
    from PIL import Image, ImageDraw

    from tests.shop_fixtures import png

    photo = Image.new("RGB", (5000, 4000), (200, 30, 30))
    ImageDraw.Draw(photo).ellipse((1000, 800, 4000, 3200), fill=(240, 240, 240))
    upload = {"name": "IMG_0001.png", "mimeType": "image/png", "buffer": png(photo)}

    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(live_server.url + "/?category=mugs")
    sent = []
    page.on(
        "request",
        lambda request: sent.append(len(request.post_data_buffer or b"")) if request.method == "POST" else None,
    )
    page.locator("input[name=image]").set_input_files(upload)
    page.get_by_role("button", name="Find similar").click()  # at once: it waits for the scaling
    page.wait_for_url("**photo=**")
    assert page.locator("#search-status").inner_text() == "3 products like your photo"
    assert page.get_by_role("img", name="Your photo").is_visible()
    assert sent and max(sent) < 200_000, sent  # a JPEG of 1024 px, not the 20 MP original
    page.close()

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/?category=mugs")
    page.locator("input[name=image]").set_input_files(upload)
    page.get_by_role("button", name="Find similar").click()
    page.wait_for_load_state()
    assert "5000x4000 pixels is more than this shop takes (16 megapixels); send a smaller photo" in (
        page.locator("body").inner_text()
    )
    context.close()


def test_a_photo_search_works_with_javascript_off(browser, live_server, shop, concept):
    from tests.shop_fixtures import png

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/?category=mugs")
    page.locator("input[name=image]").set_input_files(
        {"name": "red.png", "mimeType": "image/png", "buffer": png(concept.picture("red", "mug"))}
    )
    page.get_by_role("button", name="Find similar").click()
    page.wait_for_url("**photo=**")
    assert "category=mugs" in page.url and "Red mug" in card_titles(page)[:2]
    page.locator("input[type=checkbox][name=brand][value=Acme]").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**brand=Acme**")
    assert "photo=" in page.url and card_titles(page) == ["Red ceramic mug"]
    context.close()


def test_attribute_filters_and_one_value_per_spelling(browser, live_server, untidy_shop, screenshot):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/")
    colours = page.get_by_role("group", name="Colour")
    assert colours.get_by_role("checkbox").count() == 2  # "Red" and "red" are one colour
    categories = page.get_by_role("group", name="Category")
    assert [t.split()[0] for t in categories.locator("label").all_inner_texts()] == ["Mugs", "socks"]
    colours.get_by_role("checkbox", name="Red").check()
    page.wait_for_url("**colour=Red**")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 2")
    screenshot(page, "red")
    assert sorted(card_titles(page)) == ["Red mug", "Red sock"]
    assert page.evaluate(LAYOUT)["nested"] == 0
    page.get_by_role("group", name="Material").get_by_role("checkbox", name="wool").check()
    page.wait_for_url("**material=wool**")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 1")
    assert card_titles(page) == ["Red sock"]
    page.close()


def test_a_price_range_is_typed_whole_before_it_applies(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/?q=mug")
    low, high = (
        page.get_by_role("spinbutton", name="Minimum price"),
        page.get_by_role("spinbutton", name="Maximum price"),
    )
    low.click()
    low.press_sequentially("10", delay=30)
    page.keyboard.press("Tab")
    page.wait_for_timeout(600)  # long enough for a request a Tab used to send, and its swap
    assert page.evaluate("document.activeElement.name") == "price_max"
    high.press_sequentially("13", delay=30)
    page.wait_for_timeout(600)
    assert high.input_value() == "13" and low.input_value() == "10"  # neither wiped meanwhile
    page.keyboard.press("Tab")  # leaving the range applies it
    page.wait_for_url("**price_max=13**")
    assert "price_min=10" in page.url
    assert float(low.input_value()) == 10 and float(high.input_value()) == 13
    assert sorted(card_titles(page)) == ["Green ceramic mug", "Red ceramic mug"]
    page.close()


def test_back_to_search_returns_to_the_search_and_a_new_page_starts_at_the_top(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 1280, "height": 500})
    page.goto(live_server.url + "/?q=red&brand=Acme&page_size=2")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.get_by_role("link", name="Next →").click()
    page.wait_for_url("**page=2**")
    # the new page of results, from its top: htmx scrolls once the swap settles, which may be
    # after the URL changed (asserting at once read 98 px, the shorter page's clamp, in a full run)
    page.wait_for_function("window.scrollY === 0", timeout=5000)
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == 0  # and stays there

    page.locator("#results .card a").first.click()
    page.wait_for_url("**/products/*/**")
    page.get_by_role("link", name="← Back to search").click()
    page.wait_for_url("**/?**")
    assert all(part in page.url for part in ("q=red", "brand=Acme", "page_size=2", "page=2"))
    assert page.locator("input[type=checkbox][name=brand][value=Acme]").is_checked()
    page.close()


def test_back_to_search_works_with_javascript_off(browser, live_server, shop):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/?q=red+mug&category=mugs")
    page.locator("#results .card a").first.click()  # through the recording redirect
    page.wait_for_url("**/products/*/**")
    page.get_by_role("link", name="← Back to search").click()
    page.wait_for_url("**category=mugs**")
    assert "q=red+mug" in page.url
    context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_phones_see_results_first_and_open_the_filters_on_demand(browser, live_server, shop, screenshot, javascript):
    context = browser.new_context(viewport={"width": 375, "height": 812}, java_script_enabled=javascript)
    page = context.new_page()
    page.goto(live_server.url + "/?q=red")
    first = page.locator("#results .card").first.bounding_box()
    screenshot(page, "phone")
    assert first["y"] + 100 < 812  # the first result is on the screen without scrolling
    assert first["x"] >= 0 and first["x"] + first["width"] <= 375
    category = page.locator("input[type=checkbox][name=category][value=mugs]")
    assert not category.is_visible()

    page.locator("label.filters-button").click()
    assert category.is_visible()
    category.check()
    if not javascript:
        page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**category=mugs**")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 2")  # the red mugs
    context.close()


def test_every_page_passes_axe_and_keyboard_users_skip_to_the_results(browser, live_server, shop, concept):
    from tests.shop_fixtures import png

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    pages = {"home": "/", "results": "/?q=red+mug", "zero results": "/?q=xqzvvplk+fjjwq"}
    for name, url in pages.items():
        page.goto(live_server.url + url)
        assert page.locator("h1").count() == 1, name
        assert axe_violations(page) == [], name
    page.goto(live_server.url + "/?q=red+mug")
    page.locator("#results .card a").first.click()
    page.wait_for_url("**/products/*/**")
    assert page.locator("h1").count() == 1 and axe_violations(page) == [], "product"

    # a photo search, swapped in by htmx
    page.goto(live_server.url + "/")
    page.locator("input[name=image]").set_input_files(
        {"name": "red.png", "mimeType": "image/png", "buffer": png(concept.picture("red", "mug"))}
    )
    page.get_by_role("button", name="Find similar").click()
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('photo')")
    assert axe_violations(page) == [], "photo"

    # the first Tab reaches the skip link, which takes focus to the results
    page.goto(live_server.url + "/?q=red")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to results")
    assert page.evaluate("document.activeElement.textContent") == "Skip to results" and skip.is_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#results') !== null")
    # one polite status says how many results, and says it again after each search
    status = page.locator("#search-status")
    assert status.get_attribute("aria-live") == "polite" and status.inner_text() == "4 results for “red”"
    page.locator("input[type=checkbox][name=category][value=mugs]").check()
    page.wait_for_function("document.querySelector('#search-status').textContent.startsWith('2 results')")
    assert page.locator("[aria-live]").count() == 1
    page.close()


def test_typing_adds_one_history_entry_and_logs_only_the_search_settled_on(browser, live_server, shop, settings):
    import time

    from search.models import SearchEvent

    settings.SEARCH_LOG_DEFERRED = True
    settings.SEARCH_SETTLE_SECONDS = 1.0
    page = browser.new_page()
    page.goto(live_server.url + "/")
    start = page.evaluate("history.length")
    box = page.locator("#q")
    box.press_sequentially("red", delay=40)
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('“red”')")
    box.press_sequentially(" mug", delay=40)  # more keystrokes within the pause that settles a search
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('“red mug”')")
    assert page.evaluate("history.length") == start + 1 and "q=red+mug" in page.url

    typed = SearchEvent.objects.filter(mode="text")
    deadline = time.monotonic() + 10
    while not typed.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # longer than a settle: anything else held would be written by now
    assert list(typed.values_list("query", flat=True)) == ["red mug"]  # "red" is counted nowhere

    page.go_back()  # one step back is the page before the search, not a prefix of it
    page.wait_for_function("!location.search.includes('q=')")
    page.close()


def test_a_refused_live_update_says_why(browser, live_server, shop, settings):
    from django.core.cache import cache

    cache.clear()
    settings.SEARCH_RATE_LIMITS = "search=2/min"
    page = browser.new_page()
    page.goto(live_server.url + "/?q=red")  # the first of two
    page.locator("input[type=checkbox][name=brand][value=Acme]").check()  # the second
    page.wait_for_url("**brand=Acme**")
    page.locator("input[type=checkbox][name=category][value=mugs]").check()  # one too many
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text().startswith("Too many requests from your address. Please try again in")
    cache.clear()
    page.close()


def test_the_storefront_works_under_its_content_security_policy(browser, live_server, shop, concept):
    from tests.shop_fixtures import png

    page = browser.real.new_page()  # the policy applies: no string conditions in this test
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: violations.append(str(e)))
    response = page.goto(live_server.url + "/?q=red")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator("input[type=checkbox][name=brand][value=Acme]").check()  # htmx
    page.wait_for_url("**brand=Acme**")
    page.locator("#results .summary").filter(has_text="3 results").wait_for()
    page.locator("#q").press("End")
    page.locator("#q").press_sequentially(" mug", delay=40)  # suggestions, typing
    page.get_by_role("listbox", name="Suggestions").wait_for()
    page.locator("#q").press("Escape")
    page.locator("#results .summary").filter(has_text="“red mug”").wait_for()
    page.locator("input[name=image]").set_input_files(
        {"name": "red.png", "mimeType": "image/png", "buffer": png(concept.picture("red", "mug"))}
    )
    page.get_by_role("button", name="Find similar").click()
    page.wait_for_url("**photo=**")
    page.get_by_role("img", name="Your photo").wait_for()
    assert violations == []
    page.close()


@pytest.mark.parametrize("width", [320, 375, 414])
@pytest.mark.parametrize("sku", ["green-mug", "vase-text-only"], ids=["image", "no-image"])
def test_a_product_page_on_a_phone_stacks_with_no_sideways_scroll(browser, live_server, shop, screenshot, width, sku):
    page = browser.new_page(viewport={"width": width, "height": 812})
    page.goto(f"{live_server.url}/products/{shop[sku]}/")
    screenshot(page, f"product-{width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing to scroll sideways to
    picture = page.locator("article.product img, article.product .placeholder").first.bounding_box()
    title = page.get_by_role("heading", level=1).bounding_box()
    back = page.get_by_role("link", name="← Back to search").bounding_box()
    # image, then title, price, description and the way back, each within the screen
    assert picture["width"] >= width - 2 * 24 and picture["x"] >= 0 and picture["x"] + picture["width"] <= width
    assert title["y"] >= picture["y"] + picture["height"]
    assert back["y"] > title["y"]
    for box in (title, back):
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert title["height"] < 3 * 40  # the title wraps as a title does, not one word a line
    page.close()


@pytest.mark.parametrize("sku", ["green-mug", "vase-text-only"], ids=["image", "no-image"])
def test_a_product_page_on_a_desktop_shows_the_picture_beside_the_text(browser, live_server, shop, screenshot, sku):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/products/{shop[sku]}/")
    screenshot(page, "product-1280")
    picture = page.locator("article.product img, article.product .placeholder").first.bounding_box()
    title = page.get_by_role("heading", level=1).bounding_box()
    assert picture["width"] == pytest.approx(360, abs=1)  # a missing picture keeps its place
    assert title["x"] >= picture["x"] + picture["width"] and title["y"] < picture["y"] + picture["height"] / 2
    page.close()


def test_a_shopper_typing_a_brand_sees_its_products_before_the_word_is_finished(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(live_server.url + "/")
    page.locator("#q").press_sequentially("lum", delay=40)
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('lum')")
    # Lumen's products, not a correction of "lum" nor an empty page
    brands = page.locator("#results .card .brand-name").all_inner_texts()
    assert brands and set(brands) == {"Lumen"}
    assert page.get_by_text("Including results for").count() == 0
    page.close()


def focused(page) -> str:
    """What has focus: its tag, name and value, or its text."""
    return page.evaluate(
        "(() => { const e = document.activeElement; return e.tagName + ':' + (e.name || '') + ':' + "
        "(e.type === 'checkbox' ? e.value : e.name ? '' : (e.textContent || '').trim().slice(0, 40)); })()"
    )


def test_keyboard_users_keep_their_place_through_filters_and_sort_and_skip_to_the_first_product(
    browser, live_server, shop
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(live_server.url + "/?q=red")

    # "Skip to results" lands on the products: the next Tab is the first one
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement === document.querySelector('#results .card a')")

    # a filter ticked with Space keeps focus, and Tab goes on to the next filter
    mugs = page.locator("input[type=checkbox][name=category][value=mugs]")
    mugs.focus()
    page.keyboard.press("Space")
    page.wait_for_url("**category=mugs**")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 2")
    assert focused(page) == "INPUT:category:mugs" and mugs.is_checked()
    page.keyboard.press("Tab")
    assert focused(page).startswith("INPUT:category:") and focused(page) != "INPUT:category:mugs"

    # the sort moves with the arrow keys without searching, and searches on Enter, keeping focus
    sort = page.locator("select[name=sort]")
    sort.focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(700)
    assert "sort=" not in page.url and focused(page) == "SELECT:sort:"
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=**")
    page.wait_for_function("document.querySelector('#search-status').textContent.length > 0")
    page.wait_for_timeout(200)
    assert focused(page) == "SELECT:sort:"
    page.close()


def test_a_phone_filters_in_a_drawer_that_stays_where_the_shopper_is(browser, live_server, shop, screenshot):
    page = browser.new_page(viewport={"width": 375, "height": 640})
    page.goto(live_server.url + "/?q=red")
    page.evaluate("window.scrollTo(0, 120)")
    page_y = page.evaluate("window.scrollY")
    page.locator("label.filters-button").click()
    drawer = page.locator("#filters")
    # the drawer covers the screen, its way out at the bottom with the count it will show
    assert drawer.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 640}
    show = page.get_by_role("button", name="Show 4 results")
    assert show.is_visible() and show.bounding_box()["y"] + show.bounding_box()["height"] <= 640
    assert show.bounding_box()["height"] >= 44  # a thumb's target
    assert axe_violations(page) == []
    assert focused(page) == "BUTTON::✕"  # focus moved into the drawer (its Close button)
    # Tab stays inside the open drawer: from its last control back to its first
    page.get_by_role("button", name="Show 4 results").focus()
    page.keyboard.press("Tab")
    assert focused(page) == "BUTTON::✕"
    box = page.locator("input[type=checkbox][name=brand][value=Lumen]")
    box.scroll_into_view_if_needed()
    drawer.evaluate("d => d.scrollBy(0, 40)")
    scrolled = drawer.evaluate("d => d.scrollTop")
    box.check()
    page.wait_for_url("**brand=Lumen**")
    show = page.get_by_role("button", name="Show 1 result")
    show.wait_for()
    screenshot(page, "drawer-after-filter")
    # the drawer is still open where it was, the box keeps focus, the page behind has not moved
    assert abs(drawer.evaluate("d => d.scrollTop") - scrolled) < 40
    assert 0 <= box.bounding_box()["y"] <= 640 and focused(page) == "INPUT:brand:Lumen"
    # Show 1 result: the drawer closes on the page where it was, the filter as a chip
    show.click()
    most = page.evaluate("document.documentElement.scrollHeight - window.innerHeight")  # fewer results: shorter
    assert drawer.is_hidden() and abs(page.evaluate("window.scrollY") - min(page_y, most)) < 5
    assert page.get_by_role("link", name="Remove filter Brand: Lumen").count() == 1
    screenshot(page, "drawer-closed")
    # Escape closes it too, Enter on the switch opens it, and Clear all takes every filter back
    page.locator("label.filters-button").click()
    page.keyboard.press("Escape")
    assert drawer.is_hidden() and page.evaluate("document.activeElement.id") == "show-filters"
    page.keyboard.press("Enter")
    assert drawer.is_visible()
    page.keyboard.press("Escape")
    page.locator("label.filters-button").click()
    page.get_by_role("link", name="Clear all").click()
    page.get_by_role("button", name="Show 4 results").wait_for()
    assert "brand=" not in page.url
    page.close()


def red_mug_then_blue_vase(browser, live_server):
    """A page that searched "red mug", then "blue vase" from its box; and the box."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(live_server.url + "/?q=red+mug")
    box = page.locator("#q")
    box.fill("blue vase")
    box.press("Enter")
    page.wait_for_url("**q=blue+vase**")
    return page, box


def test_back_restores_the_box_and_closes_the_suggestions(browser, live_server, shop):
    page, box = red_mug_then_blue_vase(browser, live_server)
    box.fill("")
    box.press_sequentially("gr", delay=60)  # the suggestions open over the page
    page.wait_for_function("!document.getElementById('q-suggestions').hidden")

    page.go_back()
    page.wait_for_url("**q=red+mug**")
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('red mug')")
    assert box.input_value() == "red mug" and page.locator("#q-suggestions").is_hidden()
    # and the box still suggests
    box.fill("")
    box.press_sequentially("gr", delay=60)
    page.wait_for_function("!document.getElementById('q-suggestions').hidden")
    page.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_the_small_things_a_shopper_sees(browser, live_server, shop, screenshot, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    # the icon is there, where a browser first asks for it
    assert page.goto(live_server.url + "/favicon.ico").ok
    # browsing has no query to be a best match for
    page.goto(live_server.url + "/")
    assert page.locator("select[name=sort] option:checked").inner_text() == "Featured"
    # the summary and the sort do not run into each other
    page.goto(live_server.url + "/?q=no-desc")
    summary, sort = page.locator(".summary").bounding_box(), page.locator("select[name=sort]").bounding_box()
    assert summary["x"] + summary["width"] <= sort["x"] or summary["y"] + summary["height"] <= sort["y"]
    assert page.locator(".price").first.inner_text().startswith("$")
    # a page with no results offers no filters to open
    page.goto(live_server.url + "/?q=xqzvvplk")
    screenshot(page, "zero")
    assert not page.locator("label.filters-button").is_visible()
    # the words that matched stand out in the titles
    page.goto(live_server.url + "/?q=red+mug")
    assert page.locator("#results .card h2").first.locator("mark").all_inner_texts() == ["Red", "mug"]
    # the product page keeps the query it was opened from in its box
    page.locator("#results .card a").first.click()
    page.wait_for_url("**/products/*/**")
    assert page.locator("input[name=q]").input_value() == "red mug"
    page.close()


def test_a_phones_header_leaves_the_screen_to_the_results(browser, live_server, shop, screenshot):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(live_server.url + "/?q=red+mug")
    screenshot(page, "header")
    header = page.locator(".site-header").bounding_box()
    photo, find = page.locator("input[name=image]").bounding_box(), page.get_by_role("button", name="Find similar")
    assert header["height"] <= 130  # was 171 px: a label, a native file input and its button on three lines
    assert (
        abs(photo["y"] - find.bounding_box()["y"]) < 12
        and find.bounding_box()["x"] + find.bounding_box()["width"] <= 375
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.close()


def test_after_back_the_filters_the_sort_and_the_suggestions_still_search(browser, live_server, shop):
    page, box = red_mug_then_blue_vase(browser, live_server)
    page.go_back()
    page.wait_for_url("**q=red+mug**")
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('red mug')")

    # a filter searches: the category the words named, taken back
    page.locator("input[type=checkbox][name=category][value=mugs]").uncheck()
    page.wait_for_url("**understood=red+mug**")
    page.wait_for_function("document.querySelectorAll('#results .card').length === 5")
    page.wait_for_function("document.activeElement.name === 'category'")  # the swap settled, focus kept
    sort = page.locator("select[name=sort]")  # so does the sort, committed with Enter
    sort.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=**")
    box.fill("")
    box.press_sequentially("soc", delay=60)  # and a completion chosen by keyboard
    page.wait_for_function("!document.getElementById('q-suggestions').hidden")
    page.keyboard.press("ArrowDown")
    chosen = page.locator("#q-suggestions [aria-selected=true]").get_attribute("data-value")
    page.keyboard.press("Enter")
    page.wait_for_function("(v) => document.querySelector('#results .summary')?.textContent.includes(v)", arg=chosen)
    page.close()


def test_keyboard_focus_survives_leaving_the_sort_and_choosing_a_price_bucket(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(live_server.url + "/?q=red")
    page.locator("select[name=sort]").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")  # leaving the sort commits it; focus is where Tab took it
    page.wait_for_url("**sort=**")
    page.wait_for_timeout(300)
    assert page.evaluate("document.activeElement.closest('#results') !== null")
    bucket = page.locator("a.bucket").first
    label = bucket.inner_text().split("\n")[0]
    bucket.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**price_max=**")
    page.wait_for_timeout(300)
    assert page.evaluate("document.activeElement.classList.contains('bucket')")
    assert page.evaluate("document.activeElement.textContent").startswith(label)
    page.close()


def test_typing_does_not_flash_a_page_of_nothing_nor_reopen_suggestions_after_enter(browser, live_server, shop):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(live_server.url + "/")
    box = page.locator("#q")
    box.press_sequentially("g", delay=50)
    page.wait_for_timeout(700)  # a single letter is not searched: the catalog stays
    assert page.get_by_text("No products match").count() == 0 and len(card_titles(page)) == 10
    box.press_sequentially("reen mug", delay=60)
    box.press("Enter")  # at once: the suggestions on their way are not shown
    page.wait_for_function("document.querySelector('#results .summary')?.textContent.includes('green mug')")
    page.wait_for_timeout(600)
    assert page.locator("#q-suggestions").is_hidden()
    page.close()
