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
import sys
import time

from common import ENGINE_LABELS, import_catalog, setup_instance, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", help="model id or dir (default: build one from --preset)")
    parser.add_argument("--preset", choices=["tiny", "vit-b-32"], default="tiny",
                        help="random-weight CLIP to build when no --model: tiny, or ViT-B/32's shape")
    parser.add_argument("--engine", choices=sorted(ENGINE_LABELS), default="edge", help="the embedded vector engine")
    args = parser.parse_args()

    tmp = setup_instance(model=args.model, preset=args.preset, engine=args.engine)
    from tqdm import tqdm

    from catalog.images import image_load
    from catalog.models import Product
    from search.retrieval.providers import get_encoder, get_product_index
    from search.services import product_source, products_index

    ids = import_catalog(tmp, products=args.products, seed=11, index=False)
    encoder, index = get_encoder(), get_product_index()
    index.ensure_collection(encoder.dim)

    prepared = [product_source(p, encoder.model_id) for p in Product.objects.filter(pk__in=ids)]
    texts = [p.text for p in prepared if p.text]
    # the floor embeds already-decoded images: decoding is part of the pipeline's cost
    images = [image_load(p.image_bytes).image for p in prepared if p.image_bytes is not None]
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
    print(f"\nengine: {ENGINE_LABELS[args.engine]}  model: {encoder.model_id}  dim {encoder.dim}  device {getattr(encoder, 'device', '?')}  "
          f"products {n} ({len(images)} with image)  batch {args.batch_size}\n")
    print(table(["path", "seconds", "products/s", "x floor time"],
                [[label, f"{seconds:.2f}", f"{n / seconds:.1f}", f"{seconds / floor_s:.2f}"]
                 for label, seconds in rows]))


if __name__ == "__main__":
    main()
