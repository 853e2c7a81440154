from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.models import Product

pytestmark = pytest.mark.django_db


def test_search_page_lists_ranked_products_with_cards(client, make_product):
    make_product("Red ceramic mug", brand="Acme")
    make_product("Blue linen scarf", image=None)

    html = client.get(reverse("search:search"), {"q": "red mug"}).content.decode()

    assert "<html" in html and 'name="q"' in html and 'value="red mug"' in html
    assert "Red ceramic mug" in html and "Blue linen scarf" in html
    assert "Acme" in html and "10.00 USD" in html
    assert 'class="placeholder"' in html  # the product without an image


def test_htmx_requests_get_only_the_results_partial(client, make_product):
    make_product("Red ceramic mug")
    html = client.get(reverse("search:search"), {"q": "mug"}, HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html and "Red ceramic mug" in html


def test_empty_query_browses_newest_first(client, make_product):
    make_product("Older mug")
    make_product("Newer mug")
    html = client.get(reverse("search:search")).content.decode()
    assert html.index("Newer mug") < html.index("Older mug")


def test_inactive_products_never_show(client, make_product, django_capture_on_commit_callbacks):
    from catalog.services import product_update

    hidden = make_product("Hidden red mug")
    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=hidden, active=False)
    assert "Hidden red mug" not in client.get(reverse("search:search"), {"q": "red mug"}).content.decode()
    assert "Hidden red mug" not in client.get(reverse("search:search")).content.decode()
    assert client.get(reverse("search:product", args=[hidden.pk])).status_code == 404


def test_empty_catalog_and_hostile_queries_are_handled(client):
    html = client.get(reverse("search:search"), {"q": "<script>alert(1)</script>" * 100}).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "No products match" in html


def test_pagination(client, make_product):
    for i in range(25):
        Product.objects.create(sku=f"P{i}", title=f"Item {i}", price=1)
    first = client.get(reverse("search:search")).content.decode()
    second = client.get(reverse("search:search"), {"page": 2}).content.decode()
    assert first.count('class="card"') == 20 and second.count('class="card"') == 5
    assert "Next" in first and "Previous" in second


def test_product_page(client, make_product):
    product = make_product("Red ceramic mug", description="Holds 300 ml.")
    html = client.get(reverse("search:product", args=[product.pk])).content.decode()
    assert "Red ceramic mug" in html and "Holds 300 ml." in html
