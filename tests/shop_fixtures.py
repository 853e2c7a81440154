"""A small shop indexed with the concept encoder (tests/search/concept_encoder.py)."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from search.retrieval import providers
from tests.search.concept_encoder import ConceptEncoder

# sku: (title, description, image concepts or None, category, brand, price)
CATALOG = {
    "no-image": ("Red ceramic mug", "A red ceramic mug.", None, "mugs", "Acme", "12.00"),
    "no-desc": ("Red mug", "", ("red", "mug", "ceramic"), "mugs", "Lumen", "14.00"),
    "vase-text-only": ("Blue glass vase", "A blue glass vase.", None, "vases", "Acme", "30.00"),
    "green-mug": ("Green ceramic mug", "A green ceramic mug.", ("green", "mug", "ceramic"), "mugs", "Lumen", "11.00"),
    "red-scarf": ("Red wool scarf", "A red wool scarf.", ("red", "scarf", "wool"), "scarves", "Acme", "45.00"),
    "blue-vase": ("Blue vase", "A tall blue glass vase.", ("blue", "vase", "glass"), "vases", "Lumen", "60.00"),
    "green-sock": ("Green wool sock", "Warm green wool socks.", ("green", "sock", "wool"), "socks", "Acme", "8.00"),
    "lamp-text-only": ("Blue glass lamp", "A blue glass lamp.", None, "lamps", "Lumen", "80.00"),
    "red-lamp": ("Red lamp", "A red lamp in glass.", ("red", "lamp", "glass"), "lamps", "Acme", "120.00"),
    "blue-sock": ("Blue wool sock", "Soft blue socks.", ("blue", "sock", "wool"), "socks", "Lumen", "9.00"),
}


@pytest.fixture
def concept(monkeypatch, settings):
    encoder = ConceptEncoder()
    # the configured model is the concept encoder (the serving code reads the setting's id)
    settings.SEARCH_EMBEDDING_MODEL = encoder.model_id
    monkeypatch.setattr(providers, "get_encoder", lambda: encoder)
    return encoder


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shop(concept, django_capture_on_commit_callbacks):
    from catalog.services import product_create

    ids = {}
    with django_capture_on_commit_callbacks(execute=True):
        for sku, (title, description, picture, category, brand, price) in CATALOG.items():
            image = png(concept.picture(*picture)) if picture else None
            ids[sku] = product_create(
                sku=sku,
                title=title,
                description=description,
                category=category,
                brand=brand,
                price=Decimal(price),
                image_bytes=image,
                image_name="p.png",
            ).pk
    return ids


@pytest.fixture
def untidy_shop(concept, settings, django_capture_on_commit_callbacks):
    """Mugs whose category, brand and colour were typed three ways."""
    from catalog.services import product_create

    settings.SEARCH_FACET_ATTRIBUTES = "colour,material"
    rows = [
        ("Red mug", "Mugs ", "acme", {"Colour": "Red"}),
        ("Blue mug", "mugs", "Acme", {"colour": "blue "}),
        ("Red sock", "socks", "Acme", {"colour": "red", "material": "wool"}),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        for n, (title, category, brand, attributes) in enumerate(rows):
            colour, noun = title.lower().split()
            product_create(
                sku=f"u{n}",
                title=title,
                category=category,
                brand=brand,
                price="10",
                attributes=attributes,
                image_bytes=png(concept.picture(colour, noun)),
                image_name="p.png",
            )
