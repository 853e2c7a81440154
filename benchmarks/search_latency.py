"""Search latency against its floor, measured in the same run.

Floor: the engine's own raw per-modality queries, the least a two-tower search can do: the top
SEARCH_CANDIDATES on "text" and on "image" for the query vector, in one batch, ids and scores
only, under the same filters as the row. Measured: product_search end to end (the legs that
find what matches: each modality above the relevance cutoff, the keyword leg, a SKU or brand
as the whole query; every match scored in each modality; fusion; count, pages and facets over
the matches; DB hydration), per strategy, filtered and not, a query with typos, a SKU, a query
that matches nothing, and `GET /api/search` through Django (view, serializer, search log)
against product_search; and the normalized search again with a busy merchandiser's ranking rules
and synonyms (RULES rules, SYNONYMS synonym groups, read at each search). Browsing counts with
the engine, which remembers counts and facets between writes ("afresh" rows forget them each
time, as for filters not seen before), and with the database while a product is pending. Query
vectors are cached, as for repeated queries in production; the text tower's own cost is a row of
its own. Also printed: the process's memory and the recall of the engine's top candidates against exact numpy search.

    .venv/bin/python benchmarks/search_latency.py --products 10000 [--engine local|edge] [--queries 60] [--model DIR]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from decimal import Decimal

import numpy as np
from common import ENGINE_LABELS, import_catalog, setup_instance, table

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
    "sneakers",
    "white cotton tee",
    "checked blanket",
    "orange bag",
    "purple glass vase",
]


def timed(fn, repeats: int, before=None) -> list[float]:
    """Milliseconds per call of fn; `before` runs ahead of each call, untimed."""
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def paired(fn, repeats: int, rounds: int = 4) -> tuple[list[float], list[float]]:
    """Milliseconds per call of fn without the relevance model and with it, in alternate rounds."""
    from django.test import override_settings

    without, with_model = [], []
    for _ in range(rounds):
        with override_settings(SEARCH_RELEVANCE_THRESHOLD=0):
            without += timed(fn, max(1, repeats // rounds))
        with_model += timed(fn, max(1, repeats // rounds))
    return without, with_model


def rss_mb() -> tuple[float, float]:
    """(resident now, peak) in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        now = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return now / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def experiment_costs(next_query, repeats: int, rounds: int = 4) -> dict[str, list[float]]:
    """Milliseconds of a word search: product_search; experiment_search with no experiment
    running (a shopper outside any); and inside a team-draft interleaving experiment whose
    candidate has a fusion calibration of its own (two rankings, one merge). In alternate
    rounds, each search from another shopper."""
    from search.models import Experiment
    from search.retrieval.fusion import FEATURES, Calibration
    from search.selectors import product_search
    from search.selectors.experiments import experiment_forget, experiment_search

    shopper = iter(range(10**9))
    candidate = {"calibration": Calibration({name: 0.5 for name in FEATURES}).as_dict()}
    out: dict[str, list[float]] = {"plain": [], "outside": [], "interleaved": []}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        # a shopper outside any experiment against product_search: call by call, in turns, the
        # same query for both (rounds of each let the machine's drift pass for a difference)
        for n in range(per_round):
            query = next_query()
            calls = [
                ("plain", lambda q=query: product_search(query=q)),
                ("outside", lambda q=query: experiment_search(session_key=f"shopper-{next(shopper)}", query=q)),
            ]
            for name, call in calls if n % 2 else calls[::-1]:
                out[name] += timed(call, 1)
        Experiment.objects.create(name=f"bench-{_}-{time.time_ns()}", method="interleave", candidate=candidate)
        experiment_forget()
        out["interleaved"] += timed(
            lambda: experiment_search(session_key=f"shopper-{next(shopper)}", query=next_query()), per_round
        )
        Experiment.objects.update(status="stopped")
        experiment_forget()
    return out


RULES, SYNONYMS = 1000, 300


def _merchandise(skus: list[str]) -> None:
    """A busy merchandiser's rules: for each benchmark query a pin, a hide and a brand boost;
    rules for other queries (exact and "contains") up to RULES, 5 for every word search, and
    SYNONYMS synonym groups. Rules are read at each search: this is their cost."""
    from catalog.models import Product
    from search.models import RankingRule, Synonym

    ids = list(Product.objects.filter(sku__in=skus).values_list("pk", flat=True))
    rows = []
    for i, query in enumerate(QUERIES):
        rows += [
            RankingRule(query=query, action="pin", product_id=ids[i % len(ids)], position=2),
            RankingRule(query=query, action="hide", product_id=ids[(i + 1) % len(ids)]),
            RankingRule(query=query, action="boost", field="brand", value="acme", strength=50),
        ]
    rows += [RankingRule(match="any", query="", action="bury", field="category", value=f"cat {n}") for n in range(5)]
    n = 0
    while len(rows) < RULES:
        match = "contains" if n % 3 == 0 else "exact"
        rows.append(
            RankingRule(match=match, query=f"other query {n}", action="pin", product_id=ids[n % len(ids)], position=1)
        )
        n += 1
    RankingRule.objects.bulk_create(rows)
    Synonym.objects.bulk_create(
        [Synonym(words=f"word{n}, other{n}") for n in range(SYNONYMS - 1)] + [Synonym(words="sneakers, trainers")]
    )


def _unmerchandise() -> None:
    from search.models import RankingRule, Synonym

    RankingRule.objects.all().delete()
    Synonym.objects.all().delete()


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
    from django.test import Client

    from catalog.models import Product
    from search.retrieval.fusion import FEATURES, Calibration
    from search.retrieval.providers import embedding_model_id, get_encoder, get_product_index, query_vector
    from search.retrieval.vector_store import Request, plain_vector
    from search.selectors import SearchFilters, index_facets, product_search
    from search.selectors.calibrations import calibration_forget
    from search.services.relevance import relevance_fit_if_due

    settings.ALLOWED_HOSTS = ["*"]
    index = get_product_index()
    # the relevance model, fitted from the catalog as the sweep would (its time is a figure of its own)
    started = time.perf_counter()
    fit = relevance_fit_if_due(force=True)
    fit_seconds = time.perf_counter() - started
    calibration_forget()
    k = settings.SEARCH_CANDIDATES
    queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
    vectors = {q: query_vector(embedding_model_id(), q) for q in QUERIES}
    cycle = iter(range(10**9))

    def next_query() -> str:
        return queries[next(cycle) % len(queries)]

    filters = SearchFilters(categories=("mugs", "vases"), price_max=Decimal("50"))

    def raw_queries(where) -> None:
        vector = plain_vector(vectors[next_query()])
        index.query_batch([Request(limit=k, vector=vector, using=m, where=where) for m in ("text", "image")])

    floor = timed(lambda: raw_queries(None), args.queries)
    floor_filtered = timed(lambda: raw_queries(filters.where()), args.queries)
    encoder = get_encoder()
    tower = timed(lambda: encoder.encode_texts([next_query() + " x"]), max(10, args.queries // 4))
    rows = [
        ("raw per-modality queries (floor)", floor, floor),
        ("raw per-modality queries + filters (floor)", floor_filtered, floor_filtered),
        ("text tower, uncached query", tower, floor),
    ]
    # with the relevance model and without it (SEARCH_RELEVANCE_THRESHOLD=0: every match above
    # the cutoff, fused, as before), in alternate rounds: a drift of the machine weighs on both
    before, searched = paired(lambda: product_search(query=next_query()), args.queries)
    before_filtered, searched_filtered = paired(
        lambda: product_search(query=next_query(), filters=filters), args.queries
    )
    rows += [
        ("product_search normalized, no relevance model (before)", before, floor),
        ("product_search normalized + filters, no relevance model (before)", before_filtered, floor_filtered),
        ("product_search normalized", searched, floor),
    ]
    for strategy in ("avg", "rrf", "dbsf"):
        rows.append(
            (
                f"product_search {strategy}",
                timed(lambda s=strategy: product_search(query=next_query(), strategy=s), args.queries),
                floor,
            )
        )
    # the fused ranking with a fitted calibration (calibrate_fusion): features per match, one dot product
    calibration = Calibration({name: 0.5 for name in FEATURES})
    rows.append(
        (
            "product_search normalized, a fitted calibration",
            timed(lambda: product_search(query=next_query(), calibration=calibration), args.queries),
            floor,
        )
    )
    rows.append(("product_search normalized + filters", searched_filtered, floor_filtered))
    rows.append(
        ("product_search page 3", timed(lambda: product_search(query=next_query(), page=3), args.queries), floor)
    )
    typos = ["red stripd mgu", "bleu tshirt", "runing shoes", "wol socks", "tablelamp"]
    rows.append(
        (
            "product_search, a query with typos",
            timed(lambda: product_search(query=typos[next(cycle) % len(typos)]), args.queries),
            floor,
        )
    )
    sku_list = list(Product.objects.order_by("?").values_list("sku", flat=True)[:50])
    rows.append(
        (
            "product_search, a SKU (any case, separators)",
            timed(
                lambda: product_search(query=sku_list[next(cycle) % len(sku_list)].lower().replace("-", " ")),
                args.queries,
            ),
            floor,
        )
    )
    rows.append(
        (
            "product_search, a query that matches nothing",
            timed(lambda: product_search(query="xqzvvplk fjjwq"), args.queries),
            floor,
        )
    )
    costs = experiment_costs(next_query, args.queries)
    rows += [
        ("experiment_search, no experiment running (a shopper outside)", costs["outside"], floor),
        ("experiment_search, interleaved (candidate: another calibration)", costs["interleaved"], floor),
    ]
    _merchandise(sku_list)
    rows.append(
        (
            f"product_search normalized, {RULES:,} ranking rules and {SYNONYMS} synonyms",
            timed(lambda: product_search(query=next_query()), args.queries),
            floor,
        )
    )
    _unmerchandise()

    some_ids = sorted(index.point_ids())[:: max(1, args.products // 500)]

    def pending() -> None:
        Product.objects.filter(pk=some_ids[0]).update(index_status="pending")

    def indexed() -> None:
        Product.objects.filter(pk=some_ids[0]).update(index_status="indexed")

    rows.append(
        (
            "browse facets + count alone, filtered, afresh",
            timed(
                lambda: index_facets(index, filters, lambda skip: filters.where(skip=skip)),
                args.queries,
                before=index.counts_forget,
            ),
            floor_filtered,
        )
    )
    rows.append(
        ("browse (empty query) + filters", timed(lambda: product_search(filters=filters), args.queries), floor_filtered)
    )
    rows.append(
        (
            "browse (empty query) + filters, a product pending (counts from the DB)",
            timed(lambda: product_search(filters=filters), max(5, args.queries // 6), before=pending),
            floor_filtered,
        )
    )
    indexed()
    client = Client()
    api = timed(lambda: client.get("/api/search", {"q": next_query()}), args.queries)
    searched = next(t for label, t, _ in rows if label == "product_search normalized")
    rows.append(("GET /api/search (view, serializer, search log)", api, floor))

    # recall of the engine's top k against exact search over the stored vectors
    recall = []
    all_ids = sorted(index.point_ids())
    for modality in ("text", "image"):
        ids, rows_ = [], []
        for start in range(0, len(all_ids), 5000):  # in chunks: 100k points as Python lists would not fit
            stored = index.retrieve(all_ids[start : start + 5000])
            having = [pid for pid, p in stored.items() if modality in p.vector]
            ids += having
            rows_.append(np.array([stored[pid].vector[modality] for pid in having], dtype=np.float32))
        ids, matrix = np.array(ids), np.concatenate(rows_)
        for q in QUERIES:
            exact = set(ids[np.argsort(-(matrix @ vectors[q]))[:k]].tolist())
            (found,) = index.query_batch([Request(limit=k, vector=plain_vector(vectors[q]), using=modality)])
            recall.append(len(exact & {f.id for f in found}) / len(exact))
    del matrix

    floor_p50 = statistics.median(floor)
    now, peak = rss_mb()
    print(
        f"\nmodel {encoder.model_id} dim {encoder.dim}; {args.products} products; "
        f"{k} candidates per modality; {args.queries} searches per row; "
        f"{ENGINE_LABELS[args.engine]}, SQLite\n"
    )
    print(
        table(
            ["path", "p50 ms", "p95 ms", "x floor p50"],
            [
                [
                    label,
                    f"{statistics.median(t):.1f}",
                    f"{sorted(t)[int(len(t) * 0.95) - 1]:.1f}",
                    f"{statistics.median(t) / statistics.median(base):.1f}",
                ]
                for label, t, base in rows
            ],
        )
    )
    print(
        f"\nGET /api/search over product_search, p50: {statistics.median(api) / statistics.median(searched):.2f}x "
        f"(unfiltered floor p50 {floor_p50:.1f} ms)"
    )
    print(
        f"recall@{k} of the engine's per-modality top {k} against exact search, {len(recall)} queries: "
        f"mean {statistics.mean(recall):.3f}, min {min(recall):.3f}"
    )
    print(f"process memory: {now:.0f} MB resident after the run, {peak:.0f} MB peak (model, engine, Django)")
    with_model = {label: statistics.median(t) for label, t, _ in rows}
    for label, before_label in (
        ("product_search normalized", "product_search normalized, no relevance model (before)"),
        ("product_search normalized + filters", "product_search normalized + filters, no relevance model (before)"),
    ):
        print(
            f"{label} with the relevance model over without, p50: {with_model[label] / with_model[before_label]:.2f}x"
        )
    plain = statistics.median(costs["plain"])
    print(
        f"experiment_search over product_search, p50 (alternate rounds): outside an experiment "
        f"{statistics.median(costs['outside']) / plain:.2f}x, interleaved "
        f"{statistics.median(costs['interleaved']) / plain:.2f}x (target < 2.2x)"
    )
    state = fit.problem if fit is not None and fit.problem else "fitted"
    print(f"relevance model fitted from the catalog in {fit_seconds:.1f} s ({state})")


if __name__ == "__main__":
    main()
