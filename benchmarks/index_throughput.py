"""Indexing throughput against its floor, measured in the same run.

Floor: the encoder alone embedding the same texts and decoded images (what the model
costs). Pipeline: products_index end to end (DB read, image read + decode + hash, encode,
Qdrant upsert, state write). Skip path: re-indexing unchanged products.

    .venv/bin/python benchmarks/index_throughput.py --products 500 [--model DIR_OR_HF_ID]

Uses a throwaway SQLite database and Qdrant local storage under a temp dir. With no
--model it builds a random-weight CLIP: `--preset tiny` makes the encoder nearly free and
so shows the pipeline's own overhead at its most visible; `--preset vit-b-32` has the
default model's architecture, so its timings stand for the real model's compute.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", help="model id or dir (default: build one from --preset)")
    parser.add_argument("--preset", choices=["tiny", "vit-b-32"], default="tiny",
                        help="random-weight CLIP to build when no --model: tiny, or ViT-B/32's shape")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-index-"))
    os.environ.update({"SHOP_SEARCH_VAR_DIR": str(tmp), "QDRANT_PATH": str(tmp / "qdrant"),
                       "SEARCH_DEVICE": os.environ.get("SEARCH_DEVICE", "auto"), "LOG_LEVEL": "WARNING",
                       "DJANGO_SETTINGS_MODULE": "shop_search.settings"})
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("DATABASE_URL", None)
    if args.model:
        os.environ["SEARCH_EMBEDDING_MODEL"] = args.model
    else:
        from search.tiny_model import build_tiny_clip

        os.environ["SEARCH_EMBEDDING_MODEL"] = str(build_tiny_clip(tmp / f"clip-{args.preset}",
                                                                   preset=args.preset))

    import django

    django.setup()
    from django.core.management import call_command
    from tqdm import tqdm

    from catalog.models import Product
    from catalog.sample import generate_catalog
    from catalog.services import catalog_import
    from search.providers import get_encoder, get_product_index
    from search.services import _prepare, products_index

    call_command("migrate", verbosity=0)
    generate_catalog(tmp / "shop", products=args.products, seed=11, missing_image=0.1, missing_description=0.1)
    # Import without indexing: on_commit runs eagerly here, so mute the queue for the import.
    from catalog.services import products as product_services

    original = product_services.products_enqueue
    product_services.products_enqueue = lambda **kw: 0
    try:
        catalog_import(source=tmp / "shop" / "catalog.jsonl")
    finally:
        product_services.products_enqueue = original
    ids = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    encoder, index = get_encoder(), get_product_index()
    index.ensure_collection(encoder.dim)

    prepared = [_prepare(p, encoder.model_id) for p in Product.objects.filter(pk__in=ids)]
    texts = [p.text for p in prepared if p.text]
    images = [p.image for p in prepared if p.image is not None]
    encoder.encode_texts(texts[:8])  # warm-up
    start = time.perf_counter()
    encoder.encode_texts(texts)
    encoder.encode_images(images)
    floor_s = time.perf_counter() - start

    def run(label: str) -> float:
        start = time.perf_counter()
        for i in tqdm(range(0, len(ids), args.batch_size), desc=label, unit="batch", file=sys.stderr):
            products_index(product_ids=ids[i:i + args.batch_size], encoder=encoder, index=index)
        return time.perf_counter() - start

    pipeline_s = run("index")
    skip_s = run("re-index unchanged")
    n = len(ids)
    rows = [("encoder only (floor)", floor_s), ("products_index, new", pipeline_s),
            ("products_index, unchanged", skip_s)]
    print(f"\nmodel: {encoder.model_id}  dim {encoder.dim}  device {getattr(encoder, 'device', '?')}  "
          f"products {n} ({len(images)} with image)  batch {args.batch_size}\n")
    print(f"| {'path':<28} | {'seconds':>8} | {'products/s':>10} | {'x floor time':>12} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 12}|{'-' * 14}|")
    for label, seconds in rows:
        print(f"| {label:<28} | {seconds:8.2f} | {n / seconds:10.1f} | {seconds / floor_s:12.2f} |")


if __name__ == "__main__":
    main()
