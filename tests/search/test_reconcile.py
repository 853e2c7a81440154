"""reconcile_index: the database is the source of truth. Each fault is injected behind the
pipeline's back, found by the command without --fix (exit 1, nothing changed), and repaired
with --fix so that search shows the catalog again. On both engines."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.core.management import call_command

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.retrieval.vector_store import ProductPoint
from search.selectors import SearchFilters, product_search

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_engine")]


def reconcile(capsys, *args) -> tuple[int, str]:
    try:
        call_command("reconcile_index", *args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code)
    return code, capsys.readouterr().out


def found(query: str, **kwargs) -> list[str]:
    return [h.product.sku for h in product_search(query=query, page_size=20, **kwargs).hits if h.score is not None]


def test_a_clean_index_reports_nothing_to_do(shop, capsys):
    code, out = reconcile(capsys)
    assert code == 0 and "10 points in the vector index; 10 products say they are indexed" in out
    assert "The index matches the catalog." in out


def test_a_point_lost_behind_the_databases_back_is_found_and_restored(shop, capsys):
    # given: the red mug's point is gone, its row still says indexed
    providers.get_product_index().delete([shop["no-desc"]])
    assert "no-desc" not in found("red mug")

    # when / then: reported, nothing changed...
    code, out = reconcile(capsys)
    assert code == 1 and f"1 product(s) indexed but missing from the index: {shop['no-desc']}" in out
    assert "reconcile_index --fix" in out
    assert Product.objects.get(sku="no-desc").index_status == IndexStatus.INDEXED
    # ...then repaired: search finds it again
    code, out = reconcile(capsys, "--fix")
    assert code == 0 and "Fixed: indexed 1" in out
    assert found("red mug")[:2] in (["no-image", "no-desc"], ["no-desc", "no-image"])
    assert reconcile(capsys)[0] == 0


def test_orphan_points_of_gone_products_are_removed(shop, capsys, concept):
    # given: a point for a product the catalog does not have, and an unlisted product's point
    index = providers.get_product_index()
    vector = concept.encode_texts(["red mug"])[0]
    index.upsert([ProductPoint(9999, vector, None, {"category": "mugs", "brand": "Acme", "price": 1.0})])
    Product.objects.filter(sku="green-mug").update(active=False)  # bulk update: no signal
    mugs = SearchFilters(categories=("mugs",))
    assert product_search(query="red mug", filters=mugs).count == 4  # the orphans are counted

    code, out = reconcile(capsys)
    assert code == 1 and "2 product(s) in the index but deleted or unlisted in the catalog (orphans)" in out

    code, out = reconcile(capsys, "--fix")
    assert "orphans removed 2" in out
    assert product_search(query="red mug", filters=mugs).count == 2
    assert reconcile(capsys)[0] == 0


def test_rows_of_another_model_and_unflagged_changes_are_embedded_again(shop, capsys):
    # given: a bulk update that changed a title and a price without mark_pending(), and a row
    # that was indexed by a model this shop no longer uses
    assert "blue-vase" not in found("red mug")
    Product.objects.filter(sku="blue-vase").update(title="Red mug", description="A red mug.")
    Product.objects.filter(sku="red-lamp").update(price=Decimal("5.00"))
    Product.objects.filter(sku="blue-sock").update(indexed_model="openai/clip-vit-base-patch16")

    code, out = reconcile(capsys)
    assert code == 1
    assert "2 product(s) changed since they were indexed (text, image or price)" in out
    assert "1 product(s) indexed by another model" in out

    code, out = reconcile(capsys, "--fix")
    assert "Fixed: indexed 2, payload updated 1" in out
    assert "blue-vase" in found("red mug")[:3]  # its new title is searched
    assert "red-lamp" in found("red mug", filters=SearchFilters(price_max=Decimal("6")))
    assert Product.objects.get(sku="blue-sock").indexed_model == providers.get_encoder().model_id
    assert reconcile(capsys)[0] == 0


def test_a_collection_of_another_size_is_rebuilt(shop, capsys, concept):
    # given: the index was built by a model of another size
    index = providers.get_product_index()
    index.drop()
    index.ensure_collection(concept.dim + 3)
    index.upsert([ProductPoint(1, np.ones(concept.dim + 3, dtype=np.float32) / np.sqrt(concept.dim + 3), None, {})])

    code, out = reconcile(capsys)
    assert code == 1 and f"holds {concept.dim + 3}-d vectors, the model gives {concept.dim}-d" in out

    code, out = reconcile(capsys, "--fix")
    assert "Fixed: indexed 10" in out
    assert index.dim() == concept.dim and found("red mug")[0] in ("no-image", "no-desc")
