"""The vocabulary behind typo correction and suggestions follows the catalog by itself, built in
the background of a running process (committed data: the build thread has its own connection)."""

from __future__ import annotations

import time

import pytest

from search.selectors.lexicon import lexicon, lexicon_forget, lexicon_warm
from search.selectors.suggesting import query_suggest

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_vocabulary_catches_up_with_a_new_product_in_the_background(settings, make_product):
    settings.SEARCH_VOCABULARY_SECONDS = 0.05
    make_product("Red ceramic mug")
    lexicon_forget()
    lexicon_warm()  # as the web server does at start-up
    assert "ceramic" in lexicon().vocabulary  # the first search waits for the build under way

    make_product("Zebra print tote", category="bags", brand="Okapi")
    deadline = time.monotonic() + 10
    while "zebra" not in lexicon().vocabulary and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "zebra" in lexicon().vocabulary
    assert lexicon().brands.get("okapi") == "Okapi"
    assert ("Zebra print tote", "product") in [(s.text, s.kind) for s in query_suggest(query="zebr")]


def test_a_bulk_edit_flagged_for_the_indexer_reaches_the_vocabulary(settings, make_product):
    from catalog.models import Product

    # given the vocabulary of a shop, exact at each search (as the tests' settings make it)
    settings.SEARCH_VOCABULARY_SECONDS = 0
    product = make_product("Red ceramic mug", brand="Acme")
    assert lexicon().brands.get("acme") == "Acme"
    # when a bulk path renames the brand and flags the row, as bulk paths do (no save, no signal)
    Product.objects.filter(pk=product.pk).update(brand="Zephyrine")
    Product.objects.filter(pk=product.pk).mark_pending()
    # then the vocabulary knows the new brand
    assert lexicon().brands.get("zephyrine") == "Zephyrine"
