"""Switching SEARCH_EMBEDDING_MODEL: the new model fills a store of its own while the old store
keeps answering (queries encoded by the old model), then search switches over and the old store
is deleted. Real tiny CLIPs of two sizes, on Qdrant Edge (a pointer file) and on qdrant-client's
in-memory mode standing in for a server (a collection alias)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.models import IndexStatus, Product
from catalog.services import product_update
from search.models import SearchEvent
from search.retrieval import providers
from search.selectors import product_search
from search.services import model_switch_advance, products_index
from search.tasks import products_sweep_embedded

pytestmark = pytest.mark.django_db

TITLES = ["Red ceramic mug", "Blue glass vase", "Green wool sock", "Red lamp", "Black leather bag", "White tee"]


@pytest.fixture
def model_b(tmp_path_factory) -> Path:
    from lab.tiny_model import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("model-b"), seed=7, dim=24)  # another size than A's


@pytest.fixture(params=["server", "shared-server", "edge"])
def shop_on_a(request, settings, tmp_path, make_product):
    """Six products indexed by model A (the tests' tiny CLIP) into the engine's store (a shared
    server: the alias is looked up again every few seconds, as by each web process)."""
    if request.param == "shared-server":
        settings.QDRANT_URL = ":memory:"
    if request.param == "edge":
        settings.SEARCH_VECTOR_ENGINE, settings.QDRANT_PATH = "edge", str(tmp_path / "vectors")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    providers.reset(encoder=False)
    products = [make_product(title, image="red" if i % 2 else None) for i, title in enumerate(TITLES)]
    model_a = providers.get_encoder().model_id
    yield model_a, products
    providers.reset()  # the next test gets model A again


def store_name() -> str:
    index = providers.get_product_index()
    return index.path.name if hasattr(index, "path") else index.collection


def store_exists(name: str) -> bool:
    index = providers.get_product_index()
    if hasattr(index, "path"):
        return (index.path.parent / name).is_dir()
    return name in {c.name for c in providers.get_qdrant_client().get_collections().collections}  # not aliases


def ranking(query: str) -> list[int]:
    return [h.product.pk for h in product_search(query=query, page_size=20).hits]


def every_product_found(products) -> bool:
    """Each product is in the serving store: its SKU finds it first."""
    return all(ranking(p.sku)[:1] == [p.pk] for p in products)


def switch_to(settings, model: Path) -> None:
    """What a restart with the new setting does (a server keeps its collections)."""
    settings.SEARCH_EMBEDDING_MODEL = str(model)
    if settings.SEARCH_VECTOR_ENGINE == "edge" and settings.QDRANT_PATH != ":memory:":
        providers.reset()
    else:
        providers.get_encoder.cache_clear()
        providers.serving_forget()
        providers.query_vector.cache_clear()


def test_the_old_store_answers_until_the_new_model_has_embedded_everything(
    settings, client, shop_on_a, model_b, django_capture_on_commit_callbacks
):
    model_a, products = shop_on_a
    before = {q: ranking(q) for q in ("red mug", "glass vase")}
    old_store = store_name()

    # when: the shop switches to model B (another vector size) and restarts
    switch_to(settings, model_b)

    # then: search still answers, with model A's ranking (queries are encoded by A), and the page works
    assert {q: ranking(q) for q in before} == before
    page = client.get("/", {"q": "red mug"})
    assert page.status_code == 200 and "Search is unavailable" not in page.content.decode()
    assert SearchEvent.objects.order_by("-created_at").first().model_id == model_a

    # when: half the catalog is embedded by B (the sweep flags everything, then works in batches),
    # and a merchandiser edits a product meanwhile
    assert model_switch_advance() == "filling"
    assert Product.objects.filter(index_status=IndexStatus.PENDING).count() == len(products)
    products_index(product_ids=[p.pk for p in products[:3]])
    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=products[4], title="Red ceramic mug, large")

    # then: still A's store, still A's answers
    assert providers.serving_model_id() == model_a and ranking("glass vase") == before["glass vase"]
    assert store_exists(old_store) and store_name() == old_store

    # when: the embedded server's sweep finishes the rest
    products_sweep_embedded()

    # then: search answers with B from B's store, every product is there, the old store is gone
    assert providers.serving_model_id() == providers.get_encoder().model_id != model_a
    assert providers.get_product_index().dim() == 24 and providers.get_product_index().count() == len(products)
    assert not store_exists(old_store) and store_name() != old_store
    result = product_search(query="red mug", page_size=20)
    assert every_product_found(products) and result.model_id != model_a
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    page = client.get("/", {"q": "red mug"})
    assert page.status_code == 200 and "Search is unavailable" not in page.content.decode()


def test_a_deleted_product_leaves_both_stores_during_a_switch(
    settings, shop_on_a, model_b, django_capture_on_commit_callbacks
):
    _, products = shop_on_a
    switch_to(settings, model_b)
    model_switch_advance()
    gone = products[0].pk
    with django_capture_on_commit_callbacks(execute=True):
        products[0].delete()
    # the old store, still serving, no longer counts it (results are read from the database anyway)
    assert every_product_found(products[1:]) and gone not in ranking(products[0].sku)
    assert providers.get_product_index().existing_ids([gone]) == set()


def test_index_products_from_a_terminal_completes_a_switch(settings, shop_on_a, model_b, capsys):
    _, products = shop_on_a
    switch_to(settings, model_b)

    call_command("index_products", "--all")

    out = capsys.readouterr().out
    assert f"Indexed {len(products)}" in out and "Search now answers with" in out
    assert providers.get_product_index().dim() == 24 and every_product_found(products)


def test_the_celery_sweep_moves_a_switch_on_in_the_real_stack(settings, shop_on_a, model_b):
    # with a broker, beat's sweep sends the flagged products to the workers (eager here), and a
    # later sweep serves the new store once they have filled it
    from search.tasks import products_sweep_pending

    model_a, products = shop_on_a
    switch_to(settings, model_b)
    assert products_sweep_pending(grace_seconds=0) == len(products)
    assert providers.serving_model_id() == model_a  # filled, not yet served
    assert products_sweep_pending(grace_seconds=0) == 0
    assert providers.serving_model_id() != model_a and every_product_found(products)


def test_browsing_counts_a_product_added_during_a_switch(settings, shop_on_a, model_b, make_product):
    # a product added while the new model fills its store is indexed into that store only: the
    # old store, still serving, does not hold it, so browsing must not count with it
    _, products = shop_on_a
    switch_to(settings, model_b)
    assert model_switch_advance() == "filling"
    products_index(product_ids=[p.pk for p in products])
    added = make_product("Yellow mug", sku="ADDED")  # indexed at once (on commit) into B's store
    added.refresh_from_db()
    assert added.index_status == IndexStatus.INDEXED and providers.model_switching()  # filled, not yet served

    browsed = product_search(page_size=20)
    assert browsed.count == len(products) + 1 and "ADDED" in {h.product.sku for h in browsed.hits}
    assert {f.value: f.count for f in browsed.facets["category"]}["mugs"] == len(products) + 1
