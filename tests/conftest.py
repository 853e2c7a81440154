"""Shared fixtures: a tiny CLIP built locally and loaded by the production loader, a real
in-memory Qdrant per test, media files in a temporary directory."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache
from PIL import Image

from search.retrieval import providers
from search.selectors.calibrations import calibration_forget
from search.selectors.experiments import experiment_forget
from search.selectors.lexicon import lexicon_forget

# One INFO line per eager task drowns the output of a failing test.
logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

# The concept-encoder shop (tests/shop_fixtures.py) serves the search, API and browser tests.
pytest_plugins = ["tests.shop_fixtures", "tests.search.insights_log", "tests.stack_database", "tests.stack_redis"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from lab.tiny_model import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture(autouse=True)
def search_settings(settings, tiny_model_dir, tmp_path):
    settings.SEARCH_EMBEDDING_MODEL = str(tiny_model_dir)
    settings.SEARCH_DEVICE = "cpu"
    settings.QDRANT_URL = ""
    settings.QDRANT_PATH = ":memory:"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SEARCH_INDEX_BATCH_SIZE = 64
    # Tests run inside a transaction the log writer's own connection cannot see: log in the
    # request (tests/search/test_clicklog.py runs the writer with committed data).
    settings.SEARCH_LOG_DEFERRED = False
    # the vocabulary sees each change at the next search (a server looks every few seconds)
    settings.SEARCH_VOCABULARY_SECONDS = 0
    # production's rate limits, counted afresh for each test: each test is one shopper (one
    # address), and the suite as a whole would be thousands of them
    cache.clear()
    # Fresh Qdrant and query cache per test; the encoder is kept while the model setting holds.
    # The fusion calibration is production's (the database's row), which each test rolls back.
    providers.reset(encoder=False)
    lexicon_forget()
    calibration_forget()
    experiment_forget()
    yield settings
    providers.reset(encoder=False)
    lexicon_forget()
    calibration_forget()
    experiment_forget()


@pytest.fixture(params=["server", "shared-server", "edge"])
def vector_engine(request, settings, tmp_path):
    """Runs a test on each engine: qdrant-client in memory as this process's own store, the same
    as a shared Qdrant server (QDRANT_URL: the real stack's code, with no remembered counts,
    payload indexes and the serving alias looked up again), and Qdrant Edge in a temp folder."""
    if request.param == "shared-server":
        settings.QDRANT_URL = ":memory:"
        providers.reset(encoder=False)
    if request.param == "edge":
        settings.SEARCH_VECTOR_ENGINE = "edge"
        settings.QDRANT_PATH = str(tmp_path / "vectors")
        providers.reset(encoder=False)
    yield request.param
    providers.reset(encoder=False)


@pytest.fixture
def embedded_store_held(settings, tmp_path):
    """The embedded store (Qdrant Edge) held by another process, as a running server holds it:
    the commands must say so instead of failing with a traceback."""
    from search.retrieval.vector_store.edge import EdgeIndex

    settings.SEARCH_VECTOR_ENGINE, settings.QDRANT_PATH = "edge", str(tmp_path / "held")
    providers.reset(encoder=False)
    holder = EdgeIndex(tmp_path / "held" / settings.SEARCH_COLLECTION)  # the running server
    holder.ensure_collection(8)
    yield holder
    holder.close()
    providers.reset(encoder=False)


@pytest.fixture
def index():
    return providers.get_product_index()


@pytest.fixture
def encoder():
    return providers.get_encoder()


def png_bytes(colour: str = "red", size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make_product(django_capture_on_commit_callbacks):
    """Create a product through the service, running its on-commit indexing."""
    from catalog.services import product_create

    counter = {"n": 0}

    def make(title: str = "Red ceramic mug", *, image: bytes | None | str = "red", **fields):
        counter["n"] += 1
        fields.setdefault("price", Decimal("10.00"))
        fields.setdefault("category", "mugs")
        fields.setdefault("sku", f"SKU-{counter['n']}")
        sku = fields.pop("sku")
        image_bytes = png_bytes(image) if isinstance(image, str) else image
        with django_capture_on_commit_callbacks(execute=True):
            return product_create(sku=sku, title=title, image_bytes=image_bytes, image_name="p.png", **fields)

    return make
