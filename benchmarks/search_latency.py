"""Search latency against its floor, measured in the same run.

Floor: one Qdrant query on the averaged vector (the least a vector search can do) with
the same query vector. Measured: product_search end to end, the path shoppers hit
(batched per-modality retrieval with stored vectors, rescoring, fusion, facets, DB
hydration), per strategy, with and without filters. Query vectors are cached, as for
repeated queries in production; the text tower's own cost is reported on its own line.

    .venv/bin/python benchmarks/search_latency.py --products 2000 [--engine local|edge] [--queries 60] [--model DIR]
"""
from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal

from common import ENGINE_LABELS, import_catalog, setup_instance, table

QUERIES = ["red mug", "blue striped t-shirt", "running shoes", "wool socks", "green ceramic vase",
           "black leather backpack", "table lamp", "dotted scarf", "water bottle steel", "pink cap",
           "sneakers", "white cotton tee", "checked blanket", "orange bag", "purple glass vase"]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=60, help="timed searches per row")
    parser.add_argument("--model")
    parser.add_argument("--preset", choices=["tiny", "vit-b-32"], default="tiny")
    parser.add_argument("--engine", choices=sorted(ENGINE_LABELS), default="edge", help="the embedded vector engine")
    args = parser.parse_args()

    tmp = setup_instance(model=args.model, preset=args.preset, engine=args.engine)
    import_catalog(tmp, products=args.products, seed=21, index=True)
    from django.conf import settings

    from search.retrieval.providers import embedding_model_id, get_encoder, get_product_index, query_vector
    from search.selectors import SearchFilters, product_search

    index = get_product_index()
    queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
    vectors = {q: query_vector(embedding_model_id(), q) for q in QUERIES}
    cycle = iter(range(10 ** 9))

    def next_query() -> str:
        return queries[next(cycle) % len(queries)]

    floor = timed(lambda: index.search(vectors[next_query()], using="avg", limit=20), args.queries)
    encoder = get_encoder()
    tower = timed(lambda: encoder.encode_texts([next_query() + " x"]), max(10, args.queries // 4))
    filters = SearchFilters(categories=("mugs", "vases"), price_max=Decimal("50"))
    rows = [("engine avg query (floor)", floor), ("text tower, uncached query", tower)]
    for strategy in ("normalized", "avg", "rrf", "dbsf"):
        rows.append((f"product_search {strategy}",
                     timed(lambda s=strategy: product_search(query=next_query(), strategy=s), args.queries)))
    rows.append(("product_search normalized + filters",
                 timed(lambda: product_search(query=next_query(), filters=filters), args.queries)))
    rows.append(("browse (empty query) + filters", timed(lambda: product_search(filters=filters), args.queries)))

    floor_p50 = statistics.median(floor)
    print(f"\nmodel {encoder.model_id} dim {encoder.dim}; {args.products} products; "
          f"{settings.SEARCH_CANDIDATES} candidates per modality; {args.queries} searches per row; "
          f"{ENGINE_LABELS[args.engine]}, SQLite\n")
    print(table(["path", "p50 ms", "p95 ms", "x floor p50"],
                [[label, f"{statistics.median(t):.1f}", f"{sorted(t)[int(len(t) * 0.95) - 1]:.1f}",
                  f"{statistics.median(t) / floor_p50:.1f}"] for label, t in rows]))


if __name__ == "__main__":
    main()
