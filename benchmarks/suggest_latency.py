"""Search as you type (predictive search), against a floor measured in the same run.

Floor: `GET /api/suggest?q=` with nothing typed, which answers at once: what Django, DRF and
the test client cost around any suggestion. Measured: `query_suggest` (completions) and
`predictive_search` (completions, the products with picture and price read from the database,
categories and brands with counts) alone, and `GET /api/suggest` (which answers the latter), for
what shoppers type keystroke by keystroke (every prefix of the benchmark queries, some with a
typo), and building the lexicon from the database (once per process, again in the background
after catalog changes). The catalog is imported, not indexed: suggestions read the database,
not the vector engine. Target (issue 31): `GET /api/suggest` with products under 10 ms p50 and
50 ms p95 at 100k products.

    .venv/bin/python benchmarks/suggest_latency.py --products 10000 [--queries 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import import_catalog, setup_instance, table

QUERIES = [
    "red mug",
    "blue striped t-shirt",
    "running shoes",
    "wool socks",
    "green ceramic vase",
    "black leather backpack",
    "table lamp",
    "dotted scarf",
    "water bottle steel",
    "pink cap",
    "lumen",
    "white cotton tee",
    "stirped mug",
    "kestrel bakcpack",
    "purple glass vase",
]


def keystrokes(queries: list[str]) -> list[str]:
    """Every prefix a shopper sends while typing each query."""
    return [q[:n] for q in queries for n in range(1, len(q) + 1)]


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return sorted(values)[max(0, int(len(values) * q) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=len(QUERIES), help="queries typed, keystroke by keystroke")
    parser.add_argument("--model")
    args = parser.parse_args()

    tmp = setup_instance(model=args.model, preset="tiny")
    import_catalog(tmp, products=args.products, seed=21, index=False)
    from django.conf import settings
    from django.test import Client

    from search.selectors.lexicon import lexicon_build, lexicon_forget
    from search.selectors.suggesting import predictive_search, query_suggest

    settings.ALLOWED_HOSTS = ["*"]
    builds = []
    for _ in range(3):
        start = time.perf_counter()
        built = lexicon_build()
        builds.append((time.perf_counter() - start) * 1000)
    lexicon_forget()
    typed = keystrokes([QUERIES[i % len(QUERIES)] for i in range(args.queries)])
    query_suggest(query="warm up")  # the first call builds this process's lexicon
    client = Client()
    floor = timed(lambda q: client.get("/api/suggest", {"q": ""}), typed)
    alone = timed(lambda q: query_suggest(query=q), typed)
    predictive = timed(lambda q: predictive_search(query=q), typed)
    api = timed(lambda q: client.get("/api/suggest", {"q": q}), typed)
    empty = sum(1 for q in typed if not query_suggest(query=q))
    with_products = sum(1 for q in typed if predictive_search(query=q).products)

    print(
        f"\n{args.products} products; lexicon: {len(built.vocabulary)} catalog words, "
        f"{len(built.vocabulary.model_words)} model words, {len(built.phrases)} phrases; "
        f"{len(typed)} keystrokes from {args.queries} queries ({empty} without a completion, "
        f"{with_products} with products)\n"
    )
    floor_p50 = statistics.median(floor)
    rows = [
        ["GET /api/suggest?q= (floor)", floor],
        ["query_suggest (completions)", alone],
        ["predictive_search (with products)", predictive],
        ["GET /api/suggest", api],
    ]
    print(
        table(
            ["path", "p50 ms", "p95 ms", "x floor p50"],
            [
                [label, f"{statistics.median(t):.2f}", f"{p(t, 0.95):.2f}", f"{statistics.median(t) / floor_p50:.1f}"]
                for label, t in rows
            ],
        )
    )
    print(f"\nlexicon build from the database: {statistics.median(builds):.0f} ms (median of 3)")


if __name__ == "__main__":
    main()
