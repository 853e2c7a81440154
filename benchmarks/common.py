"""Shared set-up for benchmarks: a throwaway embedded instance with a generated catalog."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


ENGINE_LABELS = {"local": "qdrant-client local mode", "edge": "Qdrant Edge"}


def setup_instance(*, model: str | None, preset: str, engine: str = "edge") -> Path:
    """Point settings at a temp SQLite + vector store dir of that embedded engine (and a random
    CLIP if no model), then start Django. Returns the temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="shop-bench-"))
    os.environ.update(
        {
            "SHOP_SEARCH_VAR_DIR": str(tmp),
            "QDRANT_PATH": str(tmp / "qdrant"),
            "SEARCH_VECTOR_ENGINE": engine,
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
        }
    )
    for name in ("CELERY_BROKER_URL", "DATABASE_URL", "QDRANT_URL"):
        os.environ.pop(name, None)
    if model:
        os.environ["SEARCH_EMBEDDING_MODEL"] = model
    else:
        from lab.tiny_model import build_tiny_clip

        os.environ["SEARCH_EMBEDDING_MODEL"] = str(build_tiny_clip(tmp / f"clip-{preset}", preset=preset))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return tmp


def photos_swap(folder: Path, *, seed: int) -> int:
    """Give every product of a generated catalog with an image an 800-1200 px photo-like JPEG
    instead of its small drawing (lab/photos.py); returns how many."""
    import json

    from tqdm import tqdm

    from lab.photos import photo_jpeg, photo_sizes

    catalog = folder / "catalog.jsonl"
    rows = [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines()]
    with_image = [row for row in rows if row["image"]]
    for n, (row, (width, height)) in enumerate(
        tqdm(
            list(zip(with_image, photo_sizes(len(with_image), seed=seed))), desc="photos", unit="photo", file=sys.stderr
        )
    ):
        name = row["image"].rsplit(".", 1)[0] + ".jpg"
        (folder / name).write_bytes(photo_jpeg(width, height, seed=seed * 100_000 + n))
        row["image"] = name
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return len(with_image)


def import_catalog(
    tmp: Path, *, products: int, seed: int, index: bool, photos: bool = False, queries: int = 0
) -> list[int]:
    """Generate and import a sample catalog (with photo-like JPEGs if asked, and `queries`
    labelled queries in its folder's queries.jsonl); index it (with a progress bar) if asked.
    Returns the new products' ids."""
    from catalog.models import Product
    from catalog.services import catalog_import
    from catalog.signals import products_changed
    from lab.sample import generate_catalog
    from search.receivers import products_changed_enqueue

    folder = tmp / f"shop-{seed}"
    generate_catalog(folder, products=products, seed=seed, missing_image=0.1, missing_description=0.1, queries=queries)
    if photos:
        photos_swap(folder, seed=seed)
    before = set(Product.objects.values_list("pk", flat=True))
    # import only: indexing is timed apart, so the serving app does not hear of the import
    uid = "search.products_changed_enqueue"
    products_changed.disconnect(dispatch_uid=uid)
    try:
        catalog_import(source=folder / "catalog.jsonl")
    finally:
        products_changed.connect(products_changed_enqueue, dispatch_uid=uid)
    ids = [pk for pk in Product.objects.order_by("pk").values_list("pk", flat=True) if pk not in before]
    if index:
        from django.core.management import call_command

        call_command("index_products", "--all", "--batch-size", "128")
    return ids


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
