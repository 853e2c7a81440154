"""Reading a query's price phrase and facet words (retrieval.understanding), on plain data."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.retrieval.understanding import FacetWords, query_read

LABELS = {
    "category": {"mugs": "Mugs", "t-shirts": "T-shirts", "table lamps": "Table lamps", "glasses": "Glasses"},
    "brand": {"kestrel": "Kestrel"},
    "attr_colour": {"red": "Red", "light blue": "light blue", "orange": "orange"},
    "attr_flavour": {"orange": "Orange"},
    "attr_size": {"s": "S", "38": "38"},
    "attr_pattern": {"striped": "striped"},
}
FACETS = FacetWords.of(LABELS, LABELS)


def read(query: str, currency: str = "USD", **options) -> list[tuple]:
    return [
        (u.field, u.value or None, u.price_min, u.price_max)
        for u in query_read(query, FACETS, currency, **options).understood
    ]


D = Decimal


@pytest.mark.parametrize(
    "query, low, high",
    [
        ("mugs under $20", None, D("19.99")),  # "under": below it, as a price bucket's top
        ("below 20", None, D("19.99")),
        ("mugs up to 20 dollars", None, D("20")),
        ("less than USD 20", None, D("19.99")),
        ("over 100", D("100.01"), None),
        ("at least $100", D("100"), None),
        ("20-50", D("20"), D("50")),
        ("$20 – $50 mugs", D("20"), D("50")),
        ("between 50 and 20", D("20"), D("50")),  # the ends the other way round are still a range
        ("from 10 to 25.50", D("10"), D("25.50")),
        ("lamps under 1k", None, D("999.99")),
        ("sofa under 1,500", None, D("1499.99")),
    ],
)
def test_price_phrases_become_a_range(query, low, high):
    assert [r for r in read(query) if r[0] == "price"] == [("price", None, low, high)]


@pytest.mark.parametrize(
    "query",
    [
        "cheap mugs",  # not a price
        "under $-5",
        "mugs under $0",
        "under $99999999999999",
        "mugs under €20",  # another currency's symbol: left as words
        "mugs under 20 euros",
        "S7-00046",  # a SKU is not a range
        "mug 20",
        "under",
        "$",
    ],
)
def test_what_is_not_a_price_in_this_shop_is_left_as_words(query):
    reading = query_read(query, FACETS, "USD")
    assert reading.price() is None and reading.ranked_query == query


def test_a_price_in_the_shops_own_currency_is_read_in_it():
    assert read("vases under 20 €", "EUR") == [("price", None, None, D("19.99"))]
    assert read("vases under $20", "EUR") == []
    assert read("vases under £20", "GBP") == [("price", None, None, D("19.99"))]


def test_the_query_is_ranked_without_its_price_phrase():
    reading = query_read("red mugs under $20 for tea", FACETS, "USD")
    assert reading.ranked_query == "red mugs for tea"
    assert query_read("under $20", FACETS, "USD").ranked_query == ""


def test_words_that_name_one_facet_value_become_filters():
    assert read("red striped mug") == [
        ("attr_colour", "red", None, None),
        ("attr_pattern", "striped", None, None),
        ("category", "mugs", None, None),
    ]
    assert read("light blue t-shirts") == [
        ("attr_colour", "light blue", None, None),
        ("category", "t-shirts", None, None),
    ]
    assert read("Kestrel table lamp") == [("category", "table lamps", None, None), ("brand", "kestrel", None, None)]
    assert read("glass") == [("category", "glasses", None, None)]  # a plural read either way


def test_words_two_fields_share_short_values_and_numbers_are_left_to_the_ranking():
    assert read("orange cap") == []  # a colour and a flavour
    assert read("size s shirt") == []  # one letter
    assert read("38") == []  # a number
    assert read("blue") == []  # part of "light blue" only


def test_a_word_still_being_typed_is_not_read():
    assert read("red", prefix=True) == [] and read("red") == [("attr_colour", "red", None, None)]
    assert read("mugs under $2", prefix=True) == [("category", "mugs", None, None)]
    assert read("mugs under $2")[0] == ("price", None, None, D("1.99"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_no_text_breaks_the_reading(text):
    reading = query_read(text, FACETS, "USD")
    for u in reading.understood:
        if u.field == "price":
            assert u.price_min is None or u.price_max is None or u.price_min <= u.price_max
            assert all(v is None or v >= 0 for v in (u.price_min, u.price_max))
