"""The storefront: full pages without JavaScript, partials for htmx, URL holds the state."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Product
from tests.conftest import png_bytes
from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db
URL = "/"


def cards(html: str) -> int:
    return html.count('class="card"')


def shown(response) -> str:
    """The page's HTML as text reads: the marks on the words that matched left out."""
    return re.sub(r"</?mark>", "", response.content.decode())


def test_search_page_shows_ranked_cards_facets_and_sort(client, shop):
    html = shown(client.get(URL, {"q": "red mug"}))

    assert "<html" in html and 'value="red mug"' in html
    # "mug" names the shop's category "mugs": the results are its mugs, and the chip says why
    assert "3 results for “red mug”" in html and "Remove filter Category: mugs" in html
    assert html.index("Red mug") < html.index("Green ceramic mug")
    assert "Red wool scarf" not in html and "Blue glass vase" not in html
    assert 'name="category" value="mugs" checked' in html and 'name="brand" value="Acme"' in html
    assert '<option value="price_asc"' in html
    assert 'class="placeholder"' in html  # products without an image get a clean placeholder


def test_filters_and_sort_come_from_the_url(client, shop):
    html = shown(client.get(URL, {"q": "red mug", "category": ["mugs", "lamps"], "sort": "price_asc"}))
    assert cards(html) == 4
    assert (
        html.index("Green ceramic mug") < html.index("Red ceramic mug") < html.index("Red mug") < html.index("Red lamp")
    )
    assert 'value="mugs" checked' in html and 'value="lamps" checked' in html
    assert '<option value="price_asc" selected' in html


def test_price_bucket_links_keep_the_rest_of_the_search(client, shop):
    html = client.get(URL, {"q": "red", "category": "mugs"}).content.decode()
    # the shop's prices run from 8.00 to 120.00: its buckets are under $10, $10-$15, ...
    assert 'href="?q=red&amp;category=mugs&amp;price_min=10&amp;price_max=14.99"' in html
    # a bucket with nothing in it is no link to a page of nothing
    assert '<span class="bucket empty">Under $10 <span class="count">0</span></span>' in html
    chosen = client.get(URL, {"q": "red", "category": "mugs", "price_min": "10", "price_max": "14.99"})
    chosen = chosen.content.decode()
    assert 'class="bucket selected" href="?q=red&amp;category=mugs"' in chosen  # click again to clear


def test_htmx_gets_only_the_results_partial_and_caches_vary(client, shop):
    response = client.get(URL, {"q": "mug"}, HTTP_HX_REQUEST="true")
    html = shown(response)
    assert html.lstrip().startswith('<div id="results"')
    assert "<html" not in html and "Red mug" in html
    assert "HX-Request" in response["Vary"]


def test_back_button_history_restore_gets_the_whole_page(client, shop):
    html = client.get(
        URL, {"q": "mug"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    ).content.decode()
    assert "<html" in html


def test_pagination_links_keep_query_and_filters(client, shop):
    html = client.get(URL, {"q": "red", "brand": "Acme", "page_size": 1}).content.decode()
    assert "Page 1 of 3" in html
    assert 'href="?q=red&amp;brand=Acme&amp;page_size=1&amp;page=2"' in html
    last = client.get(URL, {"q": "red", "brand": "Acme", "page_size": 1, "page": 3}).content.decode()
    assert cards(last) == 1 and "← Previous" in last and "Next →" not in last


def test_bad_parameters_are_reported_and_the_page_still_works(client, shop):
    html = client.get(URL, {"q": "mug", "sort": "cheapest", "price_min": "abc", "page": "0"}).content.decode()
    assert "sort:" in html and "price_min:" in html and "page:" in html
    assert cards(html) == 3  # the three mugs


def test_zero_results_say_what_to_do(client, shop):
    html = client.get(URL, {"q": "mug", "price_max": "1"}).content.decode()
    assert "Nothing matches “mug” with these filters" in html and cards(html) == 0


def test_empty_query_browses_and_empty_catalog_explains(client, shop):
    assert cards(client.get(URL).content.decode()) == 10
    Product.objects.all().delete()
    assert "The catalog is empty" in client.get(URL).content.decode()


def test_hostile_queries_are_escaped(client, shop):
    html = client.get(URL, {"q": "<script>alert(1)</script>"}).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def photo_search(client, concept, *concepts: str, **params) -> str:
    """Upload a photo of these concepts; returns the photo search's own URL."""
    photo = SimpleUploadedFile("mine.png", png(concept.picture(*concepts)), content_type="image/png")
    response = client.post(reverse("search:image_search"), {"image": photo, **params})
    assert response.status_code == 303, response.content.decode()[:500]
    return response["Location"]


def test_a_photo_search_has_its_own_url_that_filters_sorts_and_pages_keep(client, shop, concept):
    url = photo_search(client, concept, "red", "mug", q="old words", category="mugs")
    assert url.startswith("/?photo=") and "category=mugs" in url and "q=" not in url
    html = client.get(url).content.decode()
    assert "3 products like your photo" in html  # the filter the shopper had applies
    assert html.index("Red mug") < html.index("Green ceramic mug")
    assert 'value="old words"' not in html  # the words it replaced are not in the box
    assert "look like" in html and "search with words" in html  # what a photo search is good for
    key = url.split("photo=")[1].split("&")[0]
    assert f'name="photo" value="{key}"' in html  # every filter, sort and page change sends it
    assert (
        f"/search/photos/{key}.jpg" in html and client.get(f"/search/photos/{key}.jpg")["Content-Type"] == "image/jpeg"
    )

    # a facet, a sort and a page of the photo search stay photo searches
    unfiltered = client.get("/", {"photo": key}).content.decode()
    assert "10 products like your photo" in unfiltered
    assert unfiltered.index("Red mug") < unfiltered.index("Blue vase")
    by_price = client.get("/", {"photo": key, "sort": "price_asc", "page_size": 4, "page": 2}).content.decode()
    assert "Page 2 of 3" in by_price and f"photo={key}" in by_price.split('rel="next"')[1][:200]
    # the link that removes the photo keeps the filters
    assert 'href="?category=mugs"' in html.split("Remove the photo")[0][-200:]


def test_words_typed_over_a_photo_search_replace_it(client, shop, concept):
    key = photo_search(client, concept, "red", "mug").split("photo=")[1]
    html = client.get("/", {"photo": key, "q": "blue vase"}).content.decode()
    assert "results for “blue vase”" in html and 'name="photo"' not in html


def test_a_photo_search_whose_photo_is_gone_says_so(client, shop, concept):
    from search.models import SearchPhoto

    key = photo_search(client, concept, "red", "mug").split("photo=")[1]
    SearchPhoto.objects.all().delete()
    response = client.get("/", {"photo": key})
    assert response.status_code == 200 and "no longer kept" in response.content.decode()
    assert client.get(f"/search/photos/{key}.jpg").status_code == 404
    forged = client.get("/", {"photo": "../../etc/passwd"}).content.decode()
    assert "Not a photo search of this shop" in forged


def test_search_by_photo_refuses_a_broken_file(client, shop):
    broken = SimpleUploadedFile("x.png", png_bytes("red")[:40], content_type="image/png")
    html = client.post(reverse("search:image_search"), {"image": broken}).content.decode()
    assert "corrupt" in html or "not a readable image" in html
    assert "Choose a photo" in client.post(reverse("search:image_search"), {}).content.decode()


def test_product_page_shows_similar_products(client, shop):
    product = Product.objects.get(sku="no-image")
    html = client.get(reverse("search:product", args=[product.pk])).content.decode()
    assert "Similar products" in html
    assert 'name="q"' in html  # shoppers can search again from any product page
    similar = html.split("Similar products", 1)[1]
    assert "Red mug" in similar and "Red ceramic mug" not in similar


def test_inactive_products_never_show(client, shop, django_capture_on_commit_callbacks):
    from catalog.services import product_update

    hidden = Product.objects.get(sku="no-desc")
    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=hidden, active=False)
    assert "Red mug<" not in client.get(URL, {"q": "red mug"}).content.decode()
    assert client.get(reverse("search:product", args=[hidden.pk])).status_code == 404


def test_unavailable_model_shows_a_message_not_a_crash(client, settings, tmp_path, make_product):
    from search.retrieval import providers

    make_product("Red mug")
    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "gone")
    providers.get_encoder.cache_clear()
    try:
        response = client.get(URL, {"q": "mug"})
    finally:
        providers.get_encoder.cache_clear()
    assert response.status_code == 200 and "Search is unavailable" in response.content.decode()


def test_a_query_that_matches_nothing_gets_a_real_zero_results_page(client, shop):
    html = client.get(URL, {"q": "xqzvvplk fjjwq"}).content.decode()
    assert "0 results for “xqzvvplk fjjwq”" in html and cards(html) == 0
    assert "No products match “xqzvvplk fjjwq”" in html
    assert 'class="browse-all" href="/"' in html  # a way to browse
    assert '<a href="?category=mugs">mugs</a>' in html  # the largest categories
    assert 'class="facets"' not in html  # no filters over nothing
    assert "The catalog is empty" not in html


def test_a_corrected_query_says_what_it_searched(client, shop):
    html = shown(client.get(URL, {"q": "red mgu"}))
    assert "Including results for “<a" in html and ">red mug</a>”" in html
    assert cards(html) > 0 and html.index("Red mug") < html.index("Green ceramic mug")


def test_a_file_that_is_no_image_gets_an_error_that_says_what_to_send(client, shop):
    notes = SimpleUploadedFile("notes.txt", b"shopping list: mugs, socks", content_type="text/plain")
    html = client.post(reverse("search:image_search"), {"image": notes}).content.decode()
    assert "notes.txt: not a readable image; use one of" in html and "JPEG" in html
    # no Python object's repr ("<_io.BytesIO object at 0x7f...>"); a bare "0x" can be in the page's CSRF token
    assert "BytesIO" not in html and not re.search(r"object at 0x[0-9a-f]+", html)


def test_the_storefront_shows_one_facet_value_per_spelling_and_the_chosen_attributes(client, untidy_shop):
    html = client.get(URL).content.decode()
    assert html.count('name="category" value="Mugs"') == 1 and 'value="mugs"' not in html  # a tie: the first in order
    assert html.count('name="brand" value="Acme"') == 1 and 'value="acme"' not in html
    assert "<legend>Colour</legend>" in html and "<legend>Material</legend>" in html
    assert 'name="colour" value="Red"' in html
    # the chosen value, as a URL types it or as the checkbox sends it
    for spelling in ("Red", "red", " RED "):
        page = client.get(URL, {"colour": spelling}).content.decode()
        assert cards(page) == 2 and "Red mug" in page and "Red sock" in page
        assert 'name="colour" value="Red" checked' in page
    assert cards(client.get(URL, {"colour": "red", "category": "MUGS"}).content.decode()) == 1


def test_a_word_being_typed_shows_what_it_begins_and_is_never_corrected(client, shop):
    # given a shopper half-way through typing "Lumen" into the storefront's box
    typing = {"HTTP_HX_REQUEST": "true", "HTTP_X_SEARCH_TYPING": "continue"}
    html = client.get(URL, {"q": "lum"}, **typing).content.decode()
    # then the results are Lumen's products, with no "did you mean" over them
    assert cards(html) > 0 and "Including results for" not in html
    assert set(re.findall(r'<span class="brand-name">([^<]+)<', html)) == {"Lumen"}
    # and "red mu" is red mugs already, the unfinished word read as the start of "mug"
    html = shown(client.get(URL, {"q": "red mu"}, **typing))
    assert "Including results for" not in html and html.index("Red mug") < html.index("Green ceramic mug")


def test_the_words_that_matched_are_marked_in_the_titles(client, shop, make_product):
    html = client.get(URL, {"q": "red mug"}).content.decode()
    assert "<h2><mark>Red</mark> <mark>mug</mark></h2>" in html
    # while typing, the start of a word marks the words it begins; the rest of a title is escaped
    make_product("<b>Red</b> mugshot frame", sku="odd")
    typing = {"HTTP_HX_REQUEST": "true", "HTTP_X_SEARCH_TYPING": "continue"}
    html = client.get(URL, {"q": "red mu"}, **typing).content.decode()
    assert "<mark>Red</mark> <mark>mug</mark>" in html
    assert (
        "&lt;<mark>b</mark>&gt;" not in html
        and "&lt;b&gt;<mark>Red</mark>&lt;/b&gt; <mark>mugshot</mark> frame" in html
    )


def chips(html: str) -> list[str]:
    return re.findall(r'aria-label="Remove filter ([^"]+)"', html)


def chip_link(html: str, label: str) -> str:
    return re.search(rf'href="\?([^"]+)"[^>]*aria-label="Remove filter {re.escape(label)}"', html)[1].replace(
        "&amp;", "&"
    )


def test_words_that_name_a_price_and_a_category_are_filters_with_chips(client, shop):
    html = shown(client.get(URL, {"q": "mugs under $13"}))
    # the mugs at 12.00 and 11.00; the one at 14.00 is over, every other product no mug
    assert cards(html) == 2 and "Red ceramic mug" in html and "Green ceramic mug" in html
    assert chips(html) == ["Category: mugs", "Under $13"]
    assert 'name="price_max" min="0" step="0.01" placeholder="max" value="12.99"' in html
    assert "2 results for “mugs under $13”" in html and 'value="mugs under $13"' in html

    # taking the price back keeps the category, and the words are not read again
    without_price = shown(client.get(f"{URL}?{chip_link(html, 'Under $13')}"))
    assert cards(without_price) == 3 and chips(without_price) == ["Category: mugs"]
    # taking the category back too: every product the words match, the words still not read
    everything = shown(client.get(f"{URL}?{chip_link(without_price, 'Category: mugs')}"))
    assert chips(everything) == [] and cards(everything) == 3
    assert '<input type="hidden" name="understood" value="mugs under $13">' in everything


def test_an_unticked_filter_the_words_named_stays_off_and_new_words_are_read_afresh(client, shop):
    # the form of "red mug"'s page sends the query as read: unticking "mugs" leaves it off
    unticked = shown(client.get(URL, {"q": "red mug", "understood": "red mug"}))
    assert chips(unticked) == [] and "Red wool scarf" in unticked
    # typing other words in the same form: the old words' filters go, the new words' come
    typed = shown(client.get(URL, {"q": "wool socks", "category": "mugs", "understood": "red mug"}))
    assert chips(typed) == ["Category: socks"] and cards(typed) == 2 and "Green wool sock" in typed
    # a filter the shopper chose stays through new words
    kept = shown(client.get(URL, {"q": "sock", "brand": "Lumen", "understood": "red mug"}))
    assert chips(kept) == ["Category: socks", "Brand: Lumen"] and cards(kept) == 1


def test_a_price_phrase_on_its_own_browses_the_range_and_odd_ones_are_words(client, shop):
    html = shown(client.get(URL, {"q": "under $10"}))
    assert chips(html) == ["Under $10"] and cards(html) == 2  # the socks at 8.00 and 9.00
    assert "2 results for “under $10”" in html
    for odd in ("under $-5", "under $99999999999999", "between 50 and 20", "mugs under €20"):
        response = client.get(URL, {"q": odd})
        assert response.status_code == 200
    assert chips(shown(client.get(URL, {"q": "between 50 and 20"}))) == ["$20 – $50"]
    euros = shown(client.get(URL, {"q": "mugs under €20"}))
    assert "Under" not in " ".join(chips(euros))
    assert "Prices here are in US dollars: “under €20” was searched as words, not as a price." in euros


def test_a_product_page_keeps_the_query_and_searches_by_its_own_picture(client, shop, concept):
    import io

    from PIL import Image

    from search.models import SearchPhoto

    page = client.get(f"/products/{shop['red-lamp']}/", {"from": "q=red+lamp&sort=price_asc"}).content.decode()
    assert 'name="q" value="red lamp"' in page and "Find products that look like this" in page
    without_picture = client.get(f"/products/{shop['no-image']}/").content.decode()
    assert "Find products that look like this" not in without_picture

    response = client.post(f"/products/{shop['red-lamp']}/photo-search")
    assert response.status_code == 303 and response["Location"].startswith("/?photo=")
    # the stand-in encoder knows a picture by its pixels: the kept copy (a JPEG) shows the same lamp
    kept = Image.open(io.BytesIO(SearchPhoto.objects.get().image))
    concept.images[concept._key(kept)] = ["red", "lamp", "glass"]
    results = shown(client.get(response["Location"]))
    assert "like your photo" in results and 'alt="Your photo"' in results
    titles = re.findall(r'class="card".*?<h2>([^<]+)</h2>', results, re.S)
    assert titles[0] == "Red lamp"  # its own picture is the nearest
    # a GET (a crawler, a prefetch) keeps nothing and shows the product
    assert client.get(f"/products/{shop['red-lamp']}/photo-search").status_code == 302


def test_a_typing_step_with_no_results_keeps_the_sort_for_the_next_keystroke(client, shop):
    html = client.get(URL, {"q": "xqzv", "sort": "price_asc"}, HTTP_HX_REQUEST="true").content.decode()
    assert "No products match" in html and '<input type="hidden" name="sort" value="price_asc">' in html


def test_words_typed_then_sent_are_read_whole_even_after_a_live_result(client, shop):
    # the live result of "mugs under $13" as it is typed: its last word may still grow ($130)
    live = shown(client.get(URL, {"q": "mugs under $13"}, HTTP_HX_REQUEST="true", HTTP_X_SEARCH_TYPING="continue"))
    assert chips(live) == ["Category: mugs"]
    form = dict(re.findall(r'<input type="hidden" name="(understood)" value="([^"]*)">', live))
    assert form == {"understood": "mugs under"}  # what was read: not the price
    # Enter sends the form as it stands: the whole query is read, the price too
    sent = shown(client.get(URL, {"q": "mugs under $13", "category": "mugs", **form}, HTTP_HX_REQUEST="true"))
    assert chips(sent) == ["Category: mugs", "Under $13"] and cards(sent) == 2
