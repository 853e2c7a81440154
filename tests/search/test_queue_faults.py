"""The queue and the indexer under faults: one bad item fails alone, errors are recorded on the
rows, the sweep sends nothing twice, a broker outage is said as such (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalog.models import IndexStatus, Product
from search.retrieval import providers
from search.services import products_index
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def pending_again() -> None:
    Product.objects.update(index_status=IndexStatus.PENDING, content_hash="", payload_hash="")


def test_tiny_and_extreme_images_embed_in_bounded_memory(make_product, encoder):
    # a 1x1 image read as channels-first failed its whole batch; a 1x40,000 strip (inside the
    # pixel limit) resized whole for the 224-pixel tower would take gigabytes
    make_product("Dot", image=png_bytes("red", size=(1, 1)), sku="DOT")
    make_product("Strip", image=png_bytes("blue", size=(1, 40_000)), sku="STRIP")
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    # the peak memory of encoding the strips, in a fresh process: this one's high-water mark
    # is whatever an earlier test reached, so a growth here could not show
    code = (
        "import resource, sys; from PIL import Image; from search.retrieval.encoders import load_encoder\n"
        "encoder = load_encoder(sys.argv[1], device='cpu'); encoder.encode_images([Image.new('RGB', (8, 8))])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "strips = [Image.new('RGB', (1, 40_000), 'blue'), Image.new('RGB', (40_000, 1), 'red')]\n"
        "vectors = encoder.encode_images(strips)\n"
        "print(vectors.shape[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, encoder.model_id],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    encoded, grown_kib = map(int, done.stdout.split()[-2:])
    assert encoded == 2 and grown_kib < 200_000


def test_an_image_the_model_fails_on_fails_its_product_only(make_product, encoder, monkeypatch):
    products = [
        make_product(f"Mug {n}", image=colour, sku=f"M{n}") for n, colour in enumerate(["red", "green", "blue"])
    ]
    real = encoder.encode_images

    def fails_on_green(images, **kwargs):  # a fault the model raises on one image of a batch
        # the indexer hands the encoder RGB arrays (decoded in its threads)
        if any(tuple(np.asarray(im)[0, 0]) == (0, 128, 0) for im in images):
            raise RuntimeError("the tower cannot read this image")
        return real(images, **kwargs)

    monkeypatch.setattr(encoder, "encode_images", fails_on_green)
    pending_again()
    report = products_index(product_ids=[p.pk for p in products])
    statuses = dict(Product.objects.values_list("sku", "index_status"))
    assert statuses == {"M0": IndexStatus.INDEXED, "M1": IndexStatus.FAILED, "M2": IndexStatus.INDEXED}, report
    assert (
        Product.objects.get(sku="M1").index_error
        == "image: the model could not embed it (the tower cannot read this image)."
    )


def test_a_store_of_another_vector_size_is_recorded_on_the_rows(make_product, encoder):
    index = providers.get_product_index()
    index.drop()
    index.ensure_collection(encoder.dim + 5)  # built by another model
    product = make_product("Red mug")
    product.refresh_from_db()
    assert product.index_status == IndexStatus.FAILED
    assert "index_products --all --recreate" in product.index_error


SAVES = r"""
import json, time
import django
django.setup()
from catalog.models import Product
from catalog.services import product_create
took = []
for n in range(4):
    started = time.monotonic()
    product_create(sku=f"R-{n}", title=f"Red mug {n}", price=3)
    took.append(time.monotonic() - started)
print(json.dumps({"took": took, "statuses": sorted(set(Product.objects.values_list("index_status", flat=True)))}))
"""


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_only_one_save_waits_for_it_and_every_row_stays_pending(tmp_path, stack_database):
    from tests.stack_redis import free_port

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop_search.settings",
        "DATABASE_URL": stack_database.url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "SEARCH_EMBEDDING_MODEL": "test/none",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True)
    done = subprocess.run([sys.executable, "-c", SAVES], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["statuses"] == ["pending"]
    assert all(seconds < 0.5 for seconds in got["took"][1:]), got  # the first found the broker down
    assert done.stderr.count("Could not queue indexing") == 1, done.stderr
