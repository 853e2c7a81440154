"""The indexer as a pipeline (issue 15): images decoded in threads a few chunks ahead of the
model, points written by a writer thread, row states written a batch at a time. What a
merchandiser sees must not change: the same vectors, one bad photo failing only its product,
an edit made meanwhile never marked indexed, a store that fails leaving the rows pending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from catalog.images import image_load
from catalog.models import IndexStatus, Product
from lab.photos import photo_jpeg
from search.retrieval.encoders import image_central
from search.services import products_index

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["cpu", "gpu"])
def small_chunks(request, encoder, monkeypatch, settings):
    """Chunks of 2 products, so ten products run through the pipeline five chunks deep; decoded
    just before each chunk as on a CPU, or two chunks ahead as on a GPU (no GPU here: the
    schedule is what differs, and it must not change a result)."""
    monkeypatch.setattr(encoder, "batch_size", 2)
    settings.SEARCH_DECODE_AHEAD = 0 if request.param == "cpu" else 2
    return encoder


@pytest.fixture
def photographed(make_product, settings):
    settings.SEARCH_INDEX_BATCH_SIZE = 100  # the on-commit task must not index them in chunks
    return [make_product(f"Product {n}", image=photo_jpeg(800 + 40 * n, 900, seed=n), sku=f"P{n}") for n in range(10)]


def _pending(products):
    Product.objects.filter(pk__in=[p.pk for p in products]).update(index_status=IndexStatus.PENDING, content_hash="")


def test_photos_indexed_through_the_pipeline_get_the_processors_embeddings(small_chunks, photographed, index):
    encoder = small_chunks
    _pending(photographed)
    report = products_index(product_ids=[p.pk for p in photographed])
    assert report.indexed == 10 and not report.errors
    stored = index.retrieve([p.pk for p in photographed])
    for product in photographed:
        with product.image.open("rb") as handle:
            image = image_central(image_load(handle.read()).image)
        pixels = encoder.parts.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            expected = encoder.model.get_image_features(pixel_values=pixels).numpy()[0]
        expected /= np.linalg.norm(expected)
        got = np.asarray(stored[product.pk].vector["image"], dtype=np.float32)
        assert float(expected @ got) >= 0.999, product.sku
        text = encoder.encode_texts([product.search_text])[0]
        np.testing.assert_allclose(np.asarray(stored[product.pk].vector["text"]), text, atol=1e-5)


def test_a_corrupt_photo_deep_in_the_batch_fails_only_its_product(small_chunks, photographed, index):
    broken = photographed[7]
    with broken.image.open("rb") as handle:
        data = handle.read()
    with broken.image.storage.open(broken.image.name, "wb") as handle:
        handle.write(data[: len(data) // 3])  # truncated on disk after it was accepted
    _pending(photographed)
    report = products_index(product_ids=[p.pk for p in photographed])
    statuses = dict(Product.objects.values_list("sku", "index_status"))
    assert statuses.pop("P7") == IndexStatus.FAILED
    assert set(statuses.values()) == {IndexStatus.INDEXED}
    assert "corrupt or truncated" in Product.objects.get(sku="P7").index_error
    assert report.indexed == 9 and report.failed == 1


def test_a_product_edited_while_its_batch_is_encoded_is_not_marked_indexed(small_chunks, photographed, monkeypatch):
    from django.utils import timezone

    encoder = small_chunks
    real = encoder.encode_texts
    edited = photographed[4]

    def edit_meanwhile(texts, **kwargs):  # the merchandiser saves while the model works
        Product.objects.filter(pk=edited.pk).update(
            title="Renamed", updated_at=timezone.now(), index_status=IndexStatus.PENDING
        )
        return real(texts, **kwargs)

    _pending(photographed)
    monkeypatch.setattr(encoder, "encode_texts", edit_meanwhile)
    products_index(product_ids=[p.pk for p in photographed])
    statuses = dict(Product.objects.values_list("sku", "index_status"))
    assert statuses.pop("P4") == IndexStatus.PENDING  # its own task indexes the new title
    assert set(statuses.values()) == {IndexStatus.INDEXED}
    hashes = set(Product.objects.exclude(pk=edited.pk).values_list("content_hash", flat=True))
    assert len(hashes) == 9  # each row got its own hash, not its neighbour's


def test_a_store_that_fails_mid_batch_leaves_every_row_pending_for_the_retry(
    small_chunks, photographed, index, monkeypatch
):
    calls = {"n": 0}
    real = index.upsert

    def flaky(points):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("qdrant went away")
        return real(points)

    _pending(photographed)
    monkeypatch.setattr(index, "upsert", flaky)
    with pytest.raises(ConnectionError):
        products_index(product_ids=[p.pk for p in photographed], index=index)
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.PENDING}
    monkeypatch.setattr(index, "upsert", real)
    assert products_index(product_ids=[p.pk for p in photographed], index=index).indexed == 10


def test_a_forked_worker_process_decodes_with_threads_of_its_own(small_chunks, photographed):
    """A Celery prefork child inherits the parent's pool object but not its threads: without a
    pool of its own, its first batch of photos would wait forever."""
    import multiprocessing

    from search.services import indexing

    indexing.decode_threads().submit(int).result()  # the parent's pool exists and has threads
    blobs = []
    for product in photographed[:3]:
        with product.image.open("rb") as handle:
            blobs.append(handle.read())
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        shapes = pool.apply_async(_decode_in_child, (blobs,)).get(timeout=60)
    assert [len(shape) for shape in shapes] == [3, 3, 3]


def _decode_in_child(blobs):
    from search.services import indexing

    return [
        indexing.decode_threads().submit(lambda d: image_load(d, draft=(32, 32)).image.size + (3,), data).result(10)
        for data in blobs
    ]
