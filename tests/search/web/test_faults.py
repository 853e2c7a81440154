"""A vector store that cannot be used never turns a page into a 500: the storefront says search
is unavailable and browses the catalog from the database, the API answers 503, product pages
show no similar products. Each fault is injected into a real Qdrant Edge store."""

from __future__ import annotations

import pytest

from search.retrieval import providers
from search.retrieval.vector_store.edge import EdgeIndex
from tests.search.web.test_views import cards

pytestmark = pytest.mark.django_db

NOTICE = "Search is unavailable right now"


@pytest.fixture
def edge_shop(settings, tmp_path, shop):
    """The concept shop, indexed into a Qdrant Edge store; the test then breaks the store."""
    settings.SEARCH_VECTOR_ENGINE = "edge"
    settings.QDRANT_PATH = str(tmp_path / "vectors")
    providers.reset(encoder=False)
    from search.tasks import products_enqueue

    products_enqueue(product_ids=list(shop.values()))  # eager: indexed here, into Edge
    path = tmp_path / "vectors" / settings.SEARCH_COLLECTION
    assert EdgeIndex(path).dim() is not None
    yield path
    providers.reset(encoder=False)


def locked(path, holder: list) -> None:
    """Another process (here: another opener) holds the store."""
    providers.reset(encoder=False)  # the app lets go...
    other = EdgeIndex(path)
    other.count()  # ...and someone else takes it
    holder.append(other)


def corrupt(path, holder: list) -> None:
    providers.reset(encoder=False)
    (path / "edge_config.json").write_text("{ not json", encoding="utf-8")


def wrong_dimension(path, holder: list) -> None:
    """The store was built by a model of another size (SEARCH_EMBEDDING_MODEL changed)."""
    index = providers.get_product_index()
    index.drop()
    index.ensure_collection(7)


FAULTS = {"locked": locked, "corrupt": corrupt, "wrong dimension": wrong_dimension}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_store_never_makes_a_500(client, edge_shop, shop, fault):
    holder: list = []
    FAULTS[fault](edge_shop, holder)
    try:
        # the storefront: a clear notice, and the catalog browsed from the database
        page = client.get("/", {"q": "red mug"})
        assert page.status_code == 200
        html = page.content.decode()
        assert NOTICE in html and cards(html) == len(shop)
        # filters still narrow the browsed catalog
        assert cards(client.get("/", {"q": "red mug", "category": "mugs"}).content.decode()) == 3
        # the API: 503 with a reason, not a traceback
        api = client.get("/api/search", {"q": "red mug"})
        assert api.status_code == 503 and "unavailable" in api.json()["detail"]
        # a product page: the product, without similar products
        product = client.get(f"/products/{shop['no-desc']}/")
        assert product.status_code == 200 and "Red mug" in product.content.decode()
    finally:
        for other in holder:
            other.close()


@pytest.mark.parametrize("fault", ["corrupt", "wrong dimension"])
def test_one_command_named_by_the_message_rebuilds_the_store(client, edge_shop, shop, fault, capsys):
    from django.core.management import call_command

    FAULTS[fault](edge_shop, [])
    assert NOTICE in client.get("/", {"q": "red mug"}).content.decode()

    call_command("index_products", "--all", "--recreate")  # what the server log names

    assert f"Indexed {len(shop)}" in capsys.readouterr().out
    providers.reset(encoder=False)
    page = client.get("/", {"q": "red mug"}).content.decode()
    assert NOTICE not in page and cards(page) == 3  # every product that matches "red mug": the mugs
    assert client.get("/api/search", {"q": "red mug"}).json()["results"][0]["sku"] in ("no-image", "no-desc")


def test_browsing_and_the_sweep_need_no_model(client, settings, tmp_path, tiny_model_dir, make_product):
    import shutil

    from search.tasks import products_sweep_pending

    # given a shop indexed by a model that then cannot be loaded (its files gone, a hub down)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    settings.SEARCH_EMBEDDING_MODEL = str(model)
    providers.reset(encoder=True)
    titles = ["Red mug", "Blue vase", "Green lamp"]
    for title in titles:
        make_product(title)
    shutil.rmtree(model)
    providers.reset(encoder=True)
    try:
        # then the home page shows the catalog, without the notice
        page = client.get("/")
        assert page.status_code == 200
        html = page.content.decode()
        assert NOTICE not in html and cards(html) == len(titles)
        # and the API browses
        api = client.get("/api/search", {"q": ""})
        assert api.status_code == 200 and api.json()["count"] == len(titles)
        # and beat's sweep runs (nothing pending, nothing to load)
        assert products_sweep_pending() == 0
        # while a word search says the model is unavailable
        assert NOTICE in client.get("/", {"q": "mug"}).content.decode()
        assert providers.get_encoder.cache_info().currsize == 0
    finally:
        providers.reset(encoder=True)


@pytest.fixture
def server_down(settings):
    """QDRANT_URL names a Qdrant server that does not answer (restarting: its port refuses)."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.QDRANT_URL = f"http://127.0.0.1:{port}"
    providers.reset(encoder=False)
    yield settings.QDRANT_URL
    providers.reset(encoder=False)


def test_a_server_that_does_not_answer_is_try_again_not_rebuild(client, server_down, caplog):
    import numpy as np
    from qdrant_client import QdrantClient

    from search.retrieval.vector_store import IndexTransientError
    from search.retrieval.vector_store.server import QdrantServerIndex

    # the API: 503, try again, with Retry-After; never the advice to rebuild the store
    api = client.get("/api/search", {"q": "red mug"})
    assert api.status_code == 503 and api["Retry-After"] == "5"
    assert "Try again in 5 seconds" in api.json()["detail"]
    assert "--recreate" not in caplog.text and "did not answer" in caplog.text
    # the storefront: the notice, and the catalog from the database
    assert NOTICE in client.get("/", {"q": "red mug"}).content.decode()
    # the store's own reads say the same, after one more try
    index = QdrantServerIndex(QdrantClient(url=server_down, timeout=2), "products", local=False)
    with pytest.raises(IndexTransientError) as raised:
        index.search(np.ones(8, dtype=np.float32), using="text")
    assert "try again" in str(raised.value) and "--recreate" not in str(raised.value)
    with pytest.raises(IndexTransientError):
        index.count()


def test_a_bug_inside_an_engine_call_is_not_called_a_broken_store(index):
    # a programming error in a read is raised as itself, not as "rebuild the store"
    def bug():
        raise TypeError("unsupported operand")

    with pytest.raises(TypeError):
        index._guarded(bug)


def test_a_start_with_a_model_that_cannot_load_rewrites_no_row(settings, tmp_path, make_product, caplog):
    from catalog.models import IndexStatus, Product
    from search.tasks import products_sweep_embedded

    # given a shop indexed by its model
    make_product("Red mug")
    make_product("Blue vase")
    # when the server starts with a model setting that cannot load (a typo, a hub that is down)
    # and its sweep runs, twice
    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "no-such-model")
    providers.get_encoder.cache_clear()
    try:
        products_sweep_embedded()
        products_sweep_embedded()
    finally:
        providers.get_encoder.cache_clear()
    # then no model switch starts and no row is flagged or failed: the old store keeps serving
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    assert "into a store of its own" not in caplog.text
    # and it says why, once
    assert caplog.text.count("cannot be loaded") == 1


@pytest.mark.django_db(transaction=True)  # the sweep closes its connection after each pass, as in its thread
def test_the_embedded_sweep_says_once_that_the_store_does_not_answer(server_down, caplog):
    from search.tasks import sweep_pass

    failing: list[str] = []
    for _ in range(5):  # ten seconds of a server's sweep
        sweep_pass(2.0, last=failing)
    said = [r for r in caplog.records if r.name == "search.tasks"]
    assert len(said) == 1 and "cannot index" in said[0].getMessage() and said[0].exc_info is None
    assert "did not answer" in said[0].getMessage()
