"""Facets a merchandiser's data cannot split: values folded for matching and shown as most
products spell them (the database keeps them as typed), and the attributes chosen as filters
(issue 12). On each engine, and through the database while products are still indexing."""

from __future__ import annotations

import pytest

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.facets import facet_payload
from search.retrieval.vector_store.types import PAYLOAD_SCHEMA
from search.selectors import SearchFilters, product_search
from tests.shop_fixtures import png

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_engine")]

# sku: (title, category as typed, brand as typed, attributes)
UNTIDY = {
    "m1": ("Red mug", "Mugs ", "acme", {"Colour": "Red", "material": ["Stoneware", "Glaze"]}),
    "m2": ("Blue mug", "mugs", "Acme", {"colour": "blue ", "material": "stoneware"}),
    "m3": ("Green mug", "  mugs", "Acme", {"colour": "Green", "size": 12}),
    "v1": ("Blue vase", "Vases", "ACME  ", {"colour": "Blue", "material": "glass"}),
    "s1": ("Red sock", "socks", "Lumen", {"colour": "red", "waterproof": False, "care": {"wash": 30}}),
}


@pytest.fixture
def untidy(concept, settings, django_capture_on_commit_callbacks):
    from catalog.services import product_create

    settings.SEARCH_FACET_ATTRIBUTES = "colour, material"
    with django_capture_on_commit_callbacks(execute=True):
        for sku, (title, category, brand, attributes) in UNTIDY.items():
            colour, noun = title.lower().split()
            product_create(
                sku=sku,
                title=title,
                description=f"A {colour} {noun}.",
                category=category,
                brand=brand,
                price="10",
                attributes=attributes,
                image_bytes=png(concept.picture(colour, noun)),
                image_name="p.png",
            )
    assert not Product.objects.exclude(index_status=IndexStatus.INDEXED).exists()


def facet(result, name: str) -> dict[str, tuple[str, int]]:
    return {f.value: (f.label, f.count) for f in result.facets[name]}


def browse(**filters):
    return product_search(filters=SearchFilters(**filters))


def test_values_that_differ_in_case_or_spaces_are_one_facet_value_shown_as_most_spell_it(untidy):
    result = browse()
    assert facet(result, "category") == {"mugs": ("mugs", 3), "vases": ("Vases", 1), "socks": ("socks", 1)}
    assert facet(result, "brand") == {"acme": ("Acme", 4), "lumen": ("Lumen", 1)}
    # choosing it, spelt any way, finds every spelling; the database keeps each as typed
    assert browse(categories=("MUGS",)).count == 3 and browse(brands=(" acme",)).count == 4
    assert sorted(Product.objects.filter(sku__startswith="m").values_list("category", flat=True)) == [
        "  mugs",
        "Mugs ",
        "mugs",
    ]
    # a search too, with the brand leg: "acme" as the whole query puts all four first
    assert {h.product.sku for h in product_search(query="ACME").hits[:4]} == {"m1", "m2", "m3", "v1"}


def test_the_attributes_chosen_as_filters_are_facets_and_filter(untidy):
    result = browse()
    assert facet(result, "attr_colour") == {
        "red": ("Red", 2),
        "blue": ("Blue", 2),
        "green": ("Green", 1),
    }  # a tie: the first in order
    assert facet(result, "attr_material") == {
        "stoneware": ("Stoneware", 2),
        "glaze": ("Glaze", 1),
        "glass": ("glass", 1),
    }
    assert "attr_size" not in result.facets  # not chosen

    red = browse(attributes=(("attr_colour", ("Red",)),))
    assert sorted(h.product.sku for h in red.hits) == ["m1", "s1"]
    # disjunctive: the colour facet still offers the other colours, the others count within red
    assert facet(red, "attr_colour")["blue"] == ("Blue", 2) and facet(red, "category") == {
        "mugs": ("mugs", 1),
        "socks": ("socks", 1),
    }
    stoneware_mugs = product_search(
        query="mug", filters=SearchFilters(categories=("mugs",), attributes=(("attr_material", ("stoneware",)),))
    )
    assert sorted(h.product.sku for h in stoneware_mugs.hits) == ["m1", "m2"]


def test_choosing_another_attribute_needs_no_reindexing(untidy, settings):
    settings.SEARCH_FACET_ATTRIBUTES = "size,colour"
    result = browse()
    assert facet(result, "attr_size") == {"12": ("12", 1)}
    assert list(result.facets)[:4] == ["category", "brand", "attr_size", "attr_colour"]
    assert browse(attributes=(("attr_size", ("12",)),)).count == 1


def test_the_database_counts_the_same_while_a_product_is_indexing(untidy):
    engine = browse(attributes=(("attr_colour", ("red",)),), brands=("ACME",))
    Product.objects.filter(sku="s1").update(index_status=IndexStatus.PENDING)  # the database answers now
    database = browse(attributes=(("attr_colour", ("red",)),), brands=("ACME",))
    assert [h.product.sku for h in database.hits] == [h.product.sku for h in engine.hits] == ["m1"]
    for name in ("category", "brand", "attr_colour", "attr_material"):
        assert facet(database, name) == facet(engine, name), name
    assert browse(categories=(" MUGS ",)).count == 3
    # an element of a list of values, and a value typed with other spaces and case
    assert [h.product.sku for h in browse(attributes=(("attr_material", ("GLAZE",)),)).hits] == ["m1"]
    assert browse(attributes=(("attr_colour", ("blue",)),)).count == 2


def test_a_store_written_before_folding_is_written_again_without_encoding(untidy, encoder):
    from search.services import products_index, products_reindex_if_index_missing

    index = providers.get_product_index()
    products = list(Product.objects.all())
    for product in products:  # as the previous version wrote it: values as typed, no attributes
        index.set_payload(product.pk, {"category": product.category, "brand": product.brand})
    index._payload_schema_set(1)
    assert browse(categories=("mugs",)).count == 1  # only "mugs" as typed matches

    calls = []
    real = encoder.encode_texts
    encoder.encode_texts = lambda texts: calls.append(texts) or real(texts)
    assert products_reindex_if_index_missing() == len(products)
    products_index(product_ids=[p.pk for p in products])
    assert not any(calls)  # payloads only: nothing encoded again
    assert browse(categories=("mugs",)).count == 3 and index._payload_schema() == PAYLOAD_SCHEMA
    assert products_reindex_if_index_missing() == 0


def test_a_payload_holds_each_attribute_folded():
    assert facet_payload(
        category=" Mugs",
        brand="ACME ",
        attributes={
            "Colour": " Deep  Red",
            "colour": "blue",
            "Size (EU)": [38, "39"],
            "tags": [],
            "on sale": True,
            "care": {"wash": 30},
        },
    ) == {
        "category": "mugs",
        "brand": "acme",
        "attr_colour": ["blue", "deep red"],
        "attr_size_eu": ["38", "39"],
        "attr_on_sale": ["yes"],
    }
