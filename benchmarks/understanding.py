"""Words that are filters, on generated shops: price phrases and facet words read from queries.

For each shop (seeds, products), queries a shopper types with a price phrase ("mugs under $20",
"red t-shirt between 15 and 30", "lamps over 100", "socks 5-10", "blue vase below 40 dollars")
are drawn from the catalog's own categories, colours and prices, and searched through
`product_search(understand=True)`, as the storefront and the API search. Measured:
- every result of a price-phrase query priced in its range (must be all), and how many of the
  shop's products the words name (category, colour, price) the search found;
- the share of results in the category a query names, and of the colour it names (products
  that say no colour pass, as designed);
- what reading a query costs (`SearchRequest.read`), against the whole search, p50 and p95;
- odd phrases ("under $-5", "under $99999999999999", "between 50 and 20", "under €20") never
  error.

    .venv/bin/python benchmarks/understanding.py --products 2000 --seeds 41,42,43 [--queries 150]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from decimal import Decimal

from common import import_catalog, setup_instance, table

PHRASES = (
    ("under", "{noun} under ${high}"),
    ("below", "{colour} {noun} below {high} dollars"),
    ("between", "{colour} {noun} between {low} and {high}"),
    ("range", "{noun} {low}-{high}"),
    ("over", "{noun} over {low}"),
    ("up to", "{noun} up to ${high}"),
)
ODD = ("mugs under $-5", "under $99999999999999", "between 50 and 20", "mugs under €20", "cheap mugs", "$", "under")


def p(values: list[float], q: float) -> float:
    return sorted(values)[max(0, int(len(values) * q) - 1)]


def shop_queries(rows: list[dict], count: int, seed: int) -> list[tuple[str, str, dict]]:
    """(shape, query, what it names) from the catalog's own categories, colours and prices."""
    from lab.sample import KIND_BY_NAME

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        row = rng.choice(rows)
        kind = KIND_BY_NAME[row["category"]]
        shape, pattern = rng.choice(PHRASES)
        low, high = sorted(rng.sample(range(int(kind.price[0]), int(kind.price[1]) + 1), 2))
        text = pattern.format(noun=kind.noun, colour=row["attributes"]["colour"], low=low, high=high)
        named = {"category": row["category"], "colour": row["attributes"]["colour"] if "{colour}" in pattern else None}
        named["low"] = Decimal(low) if "{low}" in pattern else None
        named["high"] = Decimal(high) if "{high}" in pattern else None
        out.append((shape, text, named))
    return out


def in_range(price: Decimal, named: dict, shape: str) -> bool:
    low, high = named["low"], named["high"]
    if shape in ("under", "below"):
        return price < high
    if shape == "over":
        return price > low
    return (low is None or price >= low) and (high is None or price <= high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--seeds", default="41,42,43")
    parser.add_argument("--queries", type=int, default=150, help="price-phrase queries per shop")
    parser.add_argument("--model")
    args = parser.parse_args()

    tmp = setup_instance(model=args.model, preset="tiny")
    import json

    from catalog.models import Product
    from search.selectors import product_search
    from search.selectors.lexicon import lexicon
    from search.selectors.searching.request import SearchRequest

    rows_out, costs, searches, errors = [], [], [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        Product.objects.all().delete()
        import_catalog(tmp, products=args.products, seed=seed, index=True)
        lexicon()  # built once per catalog, as a serving process does
        catalog = [json.loads(line) for line in (tmp / f"shop-{seed}" / "catalog.jsonl").open()]
        by_shape: dict[str, list[tuple[float, float, float, int]]] = {}
        for n, (shape, text, named) in enumerate(shop_queries(catalog, args.queries, seed)):
            start = time.perf_counter()
            request = SearchRequest.of(query=text, filters=None, strategy=None, sort="relevance", page=1, page_size=100)
            request.read(None)
            costs.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            result = product_search(query=text, understand=True, page_size=100)
            searches.append((time.perf_counter() - start) * 1000)
            prices = [h.product.price for h in result.hits]
            ok = sum(in_range(price, named, shape) for price in prices)
            category = sum(h.product.category == named["category"] for h in result.hits)
            colour = [(h.product.attributes or {}).get("colour") for h in result.hits] if named["colour"] else []
            coloured = sum(c in (None, named["colour"]) for c in colour)
            # every product of the shop the words name: found, or lost to the cutoff?
            expected = sum(
                row["category"] == named["category"]
                and named["colour"] in (None, row["attributes"]["colour"])
                and in_range(Decimal(row["price"]), named, shape)
                for row in catalog
            )
            by_shape.setdefault(shape, []).append(
                (ok / len(prices) if prices else 1.0, category / len(prices) if prices else 1.0,
                 coloured / len(colour) if colour else 1.0, len(prices),
                 min(result.count / expected, 1.0) if expected else 1.0)
            )  # fmt: skip
            print(f"\rshop {seed}: {n + 1}/{args.queries} queries", end="", file=sys.stderr)
        print(file=sys.stderr)
        for shape, values in sorted(by_shape.items()):
            rows_out.append(
                [
                    str(seed),
                    shape,
                    str(len(values)),
                    f"{min(v[0] for v in values):.3f}",
                    f"{statistics.mean(v[1] for v in values):.3f}",
                    f"{statistics.mean(v[2] for v in values):.3f}",
                    f"{statistics.median(v[3] for v in values):.0f}",
                    f"{statistics.mean(v[4] for v in values):.3f}",
                ]
            )
        for text in ODD:
            try:
                product_search(query=text, understand=True)
            except Exception as exc:  # reported, not hidden
                errors.append(f"{text!r}: {exc!r}")

    print(f"\n{args.products} products per shop; {args.queries} price-phrase queries each\n")
    header = [
        "shop",
        "phrase",
        "queries",
        "in range (worst query)",
        "in category",
        "colour named",
        "shown p50",
        "of those named, found",
    ]
    print(table(header, rows_out))
    cost, whole = statistics.median(costs), statistics.median(searches)
    print(
        f"\nreading a query: p50 {cost:.3f} ms, p95 {p(costs, 0.95):.3f} ms "
        f"(whole search p50 {whole:.1f} ms: {cost / whole:.1%})"
    )
    print(f"odd phrases: {len(ODD) * len(args.seeds.split(','))} searched, {len(errors)} errors")
    for line in errors:
        print("  ", line)


if __name__ == "__main__":
    main()
