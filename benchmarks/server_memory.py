"""The memory a serving process holds for a catalog: a fresh process opens an instance that
search_latency.py built (its SQLite and vector store), loads the model, answers searches like a
server, and reports its resident memory at each step. The floor is the same process before it
opens the vector store.

    .venv/bin/python benchmarks/server_memory.py --instance /tmp/shop-bench-XXXX --model DIR [--engine edge|local]
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from pathlib import Path

from common import ENGINE_LABELS, table

QUERIES = ["red mug", "blue striped t-shirt", "running shoes", "wool socks", "green ceramic vase", "table lamp"]


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", required=True, help="a directory made by search_latency.py")
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", choices=sorted(ENGINE_LABELS), default="edge")
    parser.add_argument("--searches", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(args.instance)
    if not (tmp / "db.sqlite3").is_file():
        sys.exit(f"{tmp} has no db.sqlite3: pass the directory search_latency.py built")
    os.environ.update(
        {
            "SHOP_SEARCH_VAR_DIR": str(tmp),
            "QDRANT_PATH": str(tmp / "qdrant"),
            "SEARCH_VECTOR_ENGINE": args.engine,
            "SEARCH_EMBEDDING_MODEL": args.model,
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
        }
    )
    rows = [("python, before Django", rss_mb())]
    import django

    django.setup()
    from catalog.models import Product
    from search.retrieval.providers import get_encoder, get_product_index
    from search.selectors import SearchFilters, product_search

    get_encoder()
    rows.append(("Django + the model loaded (floor)", rss_mb()))
    index = get_product_index()
    points = index.count()
    rows.append(("+ vector store opened", rss_mb()))
    filters = SearchFilters(categories=("mugs", "vases"), price_max=Decimal("50"))
    for i in range(args.searches):
        product_search(
            query=QUERIES[i % len(QUERIES)] + f" {i % 50}", filters=filters if i % 2 else None, page=1 + i % 3
        )
    rows.append((f"+ {args.searches} searches (half filtered, 50 distinct queries each)", rss_mb()))
    floor = rows[1][1]
    print(f"\n{Product.objects.count()} products, {points} points; {ENGINE_LABELS[args.engine]}; model {args.model}\n")
    print(
        table(
            ["step", "resident MB", "over the floor MB"],
            [[label, f"{mb:.0f}", f"{mb - floor:+.0f}"] for label, mb in rows],
        )
    )


if __name__ == "__main__":
    main()
