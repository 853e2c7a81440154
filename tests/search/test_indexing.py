"""The write path end to end: service -> on_commit -> task (eager) -> encoder -> vector engine."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.db import transaction

from catalog.models import IndexStatus, Product
from catalog.services import product_delete, product_update, products_reindex
from search.retrieval.vector_store import IndexSchemaError, average_vector
from search.services import products_index
from tests.conftest import png_bytes

# every test here runs on both engines (tests/conftest.py: vector_engine)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_engine")]


def vectors_of(index, product_id):
    record = index.retrieve([product_id])[product_id]
    return {name: np.asarray(v, dtype=np.float32) for name, v in record.vector.items()}, record.payload


def test_saved_product_gets_text_image_and_average_vectors(make_product, index, encoder):
    product = make_product("Red ceramic mug", image="red", brand="Acme", description="A mug.")

    product.refresh_from_db()
    vectors, payload = vectors_of(index, product.pk)
    assert product.index_status == IndexStatus.INDEXED
    assert product.indexed_model == encoder.model_id and product.indexed_at is not None
    assert set(vectors) == {"text", "image", "avg"}
    expected_text = encoder.encode_texts([product.search_text])[0]
    np.testing.assert_allclose(vectors["text"], expected_text, atol=1e-5)
    np.testing.assert_allclose(vectors["avg"], average_vector(vectors["text"], vectors["image"]), atol=1e-5)
    assert payload["has_text"] and payload["has_image"]
    # category and brand as filters compare them: case and spaces folded (the product keeps "Acme")
    assert payload["category"] == "mugs" and payload["brand"] == "acme" and payload["price"] == 10.0
    assert payload["model_id"] == encoder.model_id


def test_product_without_image_has_no_image_vector(make_product, index):
    product = make_product("Blue linen scarf", image=None)

    vectors, payload = vectors_of(index, product.pk)
    assert set(vectors) == {"text", "avg"}  # absent, never a zero vector
    np.testing.assert_allclose(vectors["avg"], vectors["text"], atol=1e-6)
    assert payload["has_image"] is False


def test_product_without_usable_text_has_no_text_vector(index, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    product = Product(sku="IMG-ONLY", title="   ", price=Decimal("1"))
    product.image.save("x.png", ContentFile(png_bytes("green")), save=False)
    with django_capture_on_commit_callbacks(execute=True):
        product.save()  # bypasses form validation on purpose: rows can come from anywhere

    vectors, payload = vectors_of(index, product.pk)
    assert set(vectors) == {"image", "avg"}
    np.testing.assert_allclose(vectors["avg"], vectors["image"], atol=1e-6)
    assert payload["has_text"] is False


def test_product_with_neither_text_nor_image_fails_with_a_reason(index, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        product = Product.objects.create(sku="EMPTY", title="", price=Decimal("1"))
    product.refresh_from_db()
    assert product.index_status == IndexStatus.FAILED
    assert "title or an image" in product.index_error
    assert index.existing_ids([product.pk]) == set()


def test_update_re_embeds_the_changed_text(make_product, index, django_capture_on_commit_callbacks):
    product = make_product("Red ceramic mug")
    before, _ = vectors_of(index, product.pk)
    old_hash = Product.objects.get(pk=product.pk).content_hash

    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=product, title="Green wool sock")

    after, _ = vectors_of(index, product.pk)
    product.refresh_from_db()
    assert not np.allclose(before["text"], after["text"])
    np.testing.assert_allclose(before["image"], after["image"], atol=1e-6)
    assert product.content_hash != old_hash and product.index_status == IndexStatus.INDEXED


def test_unchanged_content_is_skipped_and_price_only_updates_the_payload(make_product, index, encoder):
    product = make_product("Red ceramic mug")
    first, _ = vectors_of(index, product.pk)

    again = products_index(product_ids=[product.pk])
    assert (again.indexed, again.skipped) == (0, 1)

    Product.objects.filter(pk=product.pk).update(price=Decimal("99.50"))
    report = products_index(product_ids=[product.pk])
    vectors, payload = vectors_of(index, product.pk)
    assert (report.indexed, report.payload_updated) == (0, 1)
    assert payload["price"] == 99.5
    np.testing.assert_array_equal(first["text"], vectors["text"])


def test_running_the_task_twice_changes_nothing(make_product, index):
    from search.tasks import embed_products_task

    product = make_product("Red ceramic mug")
    state = vectors_of(index, product.pk)
    row = Product.objects.values().get(pk=product.pk)

    embed_products_task.apply(args=[[product.pk]]).get()
    embed_products_task.apply(args=[[product.pk]]).get()

    assert index.count() == 1
    after = vectors_of(index, product.pk)
    for name in state[0]:
        np.testing.assert_array_equal(state[0][name], after[0][name])
    assert Product.objects.values().get(pk=product.pk) == row


def test_delete_removes_the_point(make_product, index, django_capture_on_commit_callbacks):
    keep = make_product("Red ceramic mug")
    gone = make_product("Blue glass vase")
    gone_id = gone.pk

    with django_capture_on_commit_callbacks(execute=True):
        product_delete(product=gone)

    assert index.existing_ids([keep.pk, gone_id]) == {keep.pk}


def test_deactivating_removes_the_point_and_says_so(make_product, index, django_capture_on_commit_callbacks):
    product = make_product("Red ceramic mug")
    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=product, active=False)
    product.refresh_from_db()
    assert index.existing_ids([product.pk]) == set()
    assert product.index_status == IndexStatus.UNLISTED

    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=product, active=True)
    product.refresh_from_db()
    assert index.existing_ids([product.pk]) == {product.pk}
    assert product.index_status == IndexStatus.INDEXED


def test_a_broken_image_marks_the_product_failed_without_losing_it(
    make_product, index, django_capture_on_commit_callbacks
):
    product = make_product("Red ceramic mug")
    indexed_vectors, _ = vectors_of(index, product.pk)
    # The stored file is damaged after upload (disk error, bad sync): truncate it.
    path = product.image.path
    with open(path, "r+b") as handle:
        handle.truncate(40)

    with django_capture_on_commit_callbacks(execute=True):
        product_update(product=product, title="Red ceramic mug, large")

    product.refresh_from_db()
    assert product.index_status == IndexStatus.FAILED
    assert "corrupt" in product.index_error or "not a readable image" in product.index_error
    assert Product.objects.filter(pk=product.pk).exists()
    still, _ = vectors_of(index, product.pk)  # the last good point still serves search
    np.testing.assert_array_equal(still["text"], indexed_vectors["text"])


def test_one_bad_product_does_not_stop_the_batch(make_product, index):
    good = make_product("Red ceramic mug")
    bad = make_product("Blue vase")
    with open(bad.image.path, "wb") as handle:
        handle.write(b"not an image at all")
    products_reindex(product_ids=[good.pk, bad.pk])

    report = products_index(product_ids=[good.pk, bad.pk])

    assert (report.indexed, report.failed) == (1, 1)
    assert Product.objects.get(pk=good.pk).index_status == IndexStatus.INDEXED
    assert Product.objects.get(pk=bad.pk).index_status == IndexStatus.FAILED


def test_a_rolled_back_save_schedules_nothing(index, django_capture_on_commit_callbacks):
    from catalog.services import product_create

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                product_create(sku="ROLLBACK", title="Red mug", price=Decimal("5"))
                raise RuntimeError("merchandiser cancelled")

    assert callbacks == []
    assert not Product.objects.filter(sku="ROLLBACK").exists()
    assert index.count() == 0


def test_index_state_writes_do_not_reschedule_indexing(make_product, django_capture_on_commit_callbacks):
    product = make_product("Red ceramic mug")
    with django_capture_on_commit_callbacks() as callbacks:
        product.index_error = "note"
        product.save(update_fields=["index_error"])
    assert callbacks == []


def test_unavailable_model_marks_products_failed_with_the_fix(settings, make_product, tmp_path):
    from search.retrieval import providers

    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "missing-model")
    providers.get_encoder.cache_clear()
    try:
        product = make_product("Red ceramic mug")
    finally:
        providers.get_encoder.cache_clear()
    product.refresh_from_db()
    assert product.index_status == IndexStatus.FAILED
    assert "SEARCH_EMBEDDING_MODEL" in product.index_error


def test_a_process_without_the_store_leaves_products_pending_whatever_its_model(
    settings, make_product, tmp_path, vector_engine
):
    # A terminal import while the server holds the embedded store: the server indexes the rows.
    # That this process cannot load its model (another setting than the server's) is not theirs
    # to carry: they stay pending, not failed.
    from search.retrieval import providers
    from search.retrieval.vector_store.edge import EdgeIndex

    if vector_engine != "edge":
        pytest.skip("only the embedded store is held by one process")
    product = make_product("Red ceramic mug")
    holder_path = providers.get_product_index().path
    providers.reset(encoder=False)
    holder = EdgeIndex(holder_path)  # the running server
    holder.count()  # opened, as a serving process holds it
    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "missing-model")
    providers.get_encoder.cache_clear()
    try:
        Product.objects.filter(pk=product.pk).update(index_status=IndexStatus.PENDING)
        report = products_index(product_ids=[product.pk])
    finally:
        providers.reset()
        holder.close()
    product.refresh_from_db()
    assert report.deferred == 1 and product.index_status == IndexStatus.PENDING and not product.index_error


def test_collection_of_another_size_asks_for_recreate(make_product, index):
    make_product("Red ceramic mug")
    with pytest.raises(IndexSchemaError, match="--recreate"):
        index.ensure_collection(index.dim() + 1)


def test_a_point_lost_from_the_index_is_embedded_again(make_product, index):
    product = make_product("Red ceramic mug")
    index.delete([product.pk])

    report = products_index(product_ids=[product.pk])

    assert report.indexed == 1 and index.existing_ids([product.pk]) == {product.pk}


def test_sweep_resends_products_left_pending(make_product, index):
    from search.tasks import products_sweep_pending

    product = make_product("Red ceramic mug")
    index.delete([product.pk])
    Product.objects.filter(pk=product.pk).mark_pending()  # a bulk update that sent no signal

    assert products_sweep_pending(grace_seconds=0) == 1
    product.refresh_from_db()
    assert product.index_status == IndexStatus.INDEXED
    assert index.existing_ids([product.pk]) == {product.pk}


def test_a_missing_index_is_rebuilt_from_the_database_by_the_embedded_sweep(make_product, index):
    from search.tasks import products_sweep_embedded

    # given: indexed products, then the vector index is lost (deleted folder, new engine)
    products = [make_product("Red ceramic mug"), make_product("Blue vase", image=None)]
    index.drop()
    assert index.count() == 0

    # when: the embedded server's sweep runs
    swept = products_sweep_embedded()

    # then: every product is embedded again and says so, none left claiming `indexed` falsely
    assert swept == 2
    assert index.existing_ids(p.pk for p in products) == {p.pk for p in products}
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}


def test_a_store_from_before_the_keyword_leg_gains_it_without_encoding_again(make_product, index, encoder, monkeypatch):
    from search.retrieval import providers
    from search.selectors import product_search
    from search.services import products_index as index_products

    # given: two products in a store without the keyword leg (as 0.4 made them)
    old = [make_product("Red striped mug", sku="S7-00046"), make_product("Blue vase", sku="S7-00047")]
    _forget_keywords(index)
    assert not index.has_keywords()
    encoded = []
    original = encoder.encode_texts
    monkeypatch.setattr(encoder, "encode_texts", lambda texts, **kw: encoded.extend(texts) or original(texts, **kw))

    # when: the next product is indexed, then the sweep sends what it flagged
    make_product("Green lamp", sku="S7-00048")
    flagged = list(Product.objects.filter(index_status=IndexStatus.PENDING).values_list("pk", flat=True))
    index_products(product_ids=flagged)

    # then: the store has the keyword leg, the old products were rewritten without being encoded
    assert index.has_keywords() and sorted(flagged) == sorted(p.pk for p in old)
    assert encoded == ["Green lamp. mugs"]
    providers.cutoff_forget()
    assert [h.product.sku for h in product_search(query="s7 00046").hits][:1] == ["S7-00046"]
    assert "S7-00046" in [h.product.sku for h in product_search(query="strped").hits]  # a typo, by keyword


def _forget_keywords(index) -> None:
    """Take the sparse vector away, as a store made before it was added."""
    from search.retrieval.vector_store.edge import EdgeIndex

    if isinstance(index, EdgeIndex):
        import qdrant_edge as qe

        index._open().update(qe.UpdateOperation.delete_vector_name("keywords"))
    else:
        index.client.delete_vector_name(index.collection, "keywords")
        index._keywords = None
    index.schema_forget()  # as a process that opens this older store


class _FlaggedWhileEncoding:
    """The real encoder; while it encodes, another process flags the rows again (an admin
    re-index, a bulk update), as happens when an index run is already reading them."""

    def __init__(self, encoder, flag):
        self._encoder, self._flag = encoder, flag

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_texts(self, texts):
        self._flag()
        return self._encoder.encode_texts(texts)


@pytest.mark.parametrize("flag", ["products_reindex", "mark_pending"])
def test_a_row_flagged_during_an_index_run_stays_pending_for_the_next(make_product, index, encoder, flag):
    # given a product indexed once, whose index run is started again
    product = make_product("Red ceramic mug")
    products_reindex(product_ids=[product.pk])

    def flag_again():
        if flag == "products_reindex":
            products_reindex(product_ids=[product.pk])
        else:
            Product.objects.filter(pk=product.pk).mark_pending(content_hash="")

    # when the rows are flagged again while that run encodes them
    report = products_index(product_ids=[product.pk], encoder=_FlaggedWhileEncoding(encoder, flag_again))

    # then the run does not write "indexed" over the new flag: the sweep still sees it
    assert report.indexed == 1
    assert Product.objects.get(pk=product.pk).index_status == IndexStatus.PENDING
    assert Product.objects.pending().filter(pk=product.pk).exists()
