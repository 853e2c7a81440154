"""The ProductIndex contract, on every engine: Qdrant Edge in a temp folder, and qdrant-client's
in-memory mode standing in for a Qdrant server. Results are checked against exact numpy search."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qdrant_client import QdrantClient

from search.retrieval.vector_store import IndexSchemaError, ProductIndex, ProductPoint, Where
from search.retrieval.vector_store.edge import EdgeIndex, IndexBusyError
from search.retrieval.vector_store.server import QdrantServerIndex

DIM = 8
CATEGORIES = ("mugs", "vases", "lamps")
BRANDS = ("Acme", "Lumen")


def make_index(engine: str, tmp_path):
    if engine == "edge":
        return EdgeIndex(tmp_path / "edge" / "products")
    return QdrantServerIndex(QdrantClient(location=":memory:"), "products", local=True)


@pytest.fixture(params=["server", "edge"])
def engine(request, tmp_path):
    index = make_index(request.param, tmp_path)
    yield index
    index.close()


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def catalog(seed: int = 0, n: int = 60) -> list[ProductPoint]:
    """Products with random vectors; every third has no image, one in ten (of the others) no text."""
    rng = np.random.default_rng(seed)
    points = []
    for pid in range(1, n + 1):
        text = None if pid % 10 == 0 and pid % 3 else unit(rng)
        image = None if pid % 3 == 0 else unit(rng)
        points.append(
            ProductPoint(
                pid,
                text,
                image,
                {
                    "category": CATEGORIES[pid % 3],
                    "brand": BRANDS[pid % 2],
                    "price": float(pid),
                    "active": True,
                    "sku": f"S{pid}",
                },
            )
        )
    return points


def exact_top(points: list[ProductPoint], query: np.ndarray, modality: str, limit: int, keep=lambda p: True):
    having = [p for p in points if getattr(p, modality) is not None and keep(p)]
    return [p.id for p in sorted(having, key=lambda p: -float(getattr(p, modality) @ query))[:limit]]


def test_schema_is_created_once_and_a_wrong_size_is_refused(engine):
    assert engine.dim() is None and engine.count() == 0
    engine.ensure_collection(DIM)
    engine.ensure_collection(DIM)
    assert engine.dim() == DIM
    with pytest.raises(IndexSchemaError, match="--recreate"):
        engine.ensure_collection(DIM + 1)
    engine.drop()
    assert engine.dim() is None and engine.count() == 0


def test_points_keep_only_the_vectors_they_have(engine):
    engine.ensure_collection(DIM)
    points = catalog(n=12)
    engine.upsert(points)

    stored = engine.retrieve([3, 10, 11])
    assert set(stored[3].vector) == {"text", "avg"}  # no image: no image vector, never a zero one
    np.testing.assert_allclose(stored[3].vector["avg"], points[2].text, atol=1e-5)
    assert set(stored[10].vector) == {"image", "avg"}
    assert set(stored[11].vector) == {"text", "image", "avg"}
    assert stored[11].payload["category"] == CATEGORIES[11 % 3]
    assert engine.count() == 12 and engine.existing_ids([1, 2, 99]) == {1, 2}
    with pytest.raises(ValueError, match="neither a text nor an image"):
        engine.upsert([ProductPoint(99, None, None)])


def test_payload_updates_and_deletes(engine):
    engine.ensure_collection(DIM)
    engine.upsert(catalog(n=6))

    engine.set_payload(2, {"category": "vases", "brand": "Acme", "price": 99.5})
    engine.delete([3, 4, 404])

    assert engine.retrieve([2])[2].payload == {"category": "vases", "brand": "Acme", "price": 99.5}
    assert engine.count() == 4 and engine.existing_ids([3, 4]) == set()


def test_point_ids_lists_every_point_across_pages(engine):
    assert list(engine.point_ids()) == []
    engine.ensure_collection(DIM)
    points = catalog(n=2500)  # more than one page of 1,000
    engine.upsert(points)
    engine.delete([7, 1500])
    assert sorted(engine.point_ids()) == [p.id for p in points if p.id not in (7, 1500)]


@pytest.mark.parametrize(
    "where",
    [None, Where(any_of=(("category", ("mugs",)),), ranges=(("price", None, 40.0),)), Where(not_ids=(1, 2, 4, 5, 7))],
    ids=["all", "mugs-under-40", "not-ids"],
)
def test_candidates_are_the_exact_top_k_per_modality_under_the_filter(engine, where):
    # given: 60 products and a query
    engine.ensure_collection(DIM)
    points = catalog()
    engine.upsert(points)
    query = unit(np.random.default_rng(7))
    keep = {None: lambda p: True}.get(where) or (
        (lambda p: p.id not in where.not_ids)
        if where.not_ids
        else (lambda p: p.payload["category"] == "mugs" and p.payload["price"] <= 40)
    )

    # when
    retrieval = engine.retrieve_candidates({"text": query, "image": query}, limit=5, where=where)

    # then: the pool is the union of the exact top 5 per modality under the filter...
    expected = set(exact_top(points, query, "text", 5, keep)) | set(exact_top(points, query, "image", 5, keep))
    assert {c.id for c in retrieval.pool} == expected
    # ...and every candidate carries its exact cosine in each modality it has, and no other,
    # whichever modality found it
    by_id = {p.id: p for p in points}
    for candidate in retrieval.pool:
        point = by_id[candidate.id]
        assert set(candidate.raw) == {m for m in ("text", "image") if getattr(point, m) is not None}
        for modality, score in candidate.raw.items():
            assert score == pytest.approx(float(getattr(point, modality) @ query), abs=1e-5)
        assert candidate.payload["category"] == point.payload["category"]


def test_counts_and_facets_are_exact_under_a_filter(engine):
    engine.ensure_collection(DIM)
    points = catalog()
    engine.upsert(points)
    cheap = Where(ranges=(("price", None, 30.0),))
    lamps_or_mugs = Where(any_of=(("category", ("lamps", "mugs")),))

    def expected(keep, key=None):
        kept = [p for p in points if keep(p)]
        if key is None:
            return len(kept)
        values = {p.payload[key] for p in kept}
        return {v: sum(p.payload[key] == v for p in kept) for v in values}

    assert engine.count() == 60 and engine.count(cheap) == 30
    assert engine.count(lamps_or_mugs.also(ranges=cheap.ranges)) == expected(
        lambda p: p.payload["category"] in ("lamps", "mugs") and p.payload["price"] <= 30
    )
    assert engine.count(Where(has_vector="image")) == expected(lambda p: p.image is not None)
    assert engine.count(Where(ids=(1, 2, 3, 999))) == 3
    assert engine.facet("category") == expected(lambda p: True, "category")
    assert engine.facet("brand", where=cheap) == expected(lambda p: p.payload["price"] <= 30, "brand")
    assert engine.facet("category", where=Where(has_vector="image")) == {"vases": 20, "lamps": 20}  # mugs: none
    engine.drop()
    assert engine.count(cheap) == 0 and engine.facet("brand") == {}


def test_search_ranks_by_the_averaged_vector_under_a_filter(engine):
    engine.ensure_collection(DIM)
    points = catalog()
    engine.upsert(points)
    query = unit(np.random.default_rng(3))
    where = Where(any_of=(("brand", ("Acme",)),))

    hits = engine.search(query, using="avg", limit=4, where=where)

    stored = engine.retrieve([p.id for p in points])
    expected = sorted(
        (p for p in points if p.payload["brand"] == "Acme"),
        key=lambda p: -float(np.asarray(stored[p.id].vector["avg"]) @ query),
    )[:4]
    assert [h.id for h in hits] == [p.id for p in expected]


@pytest.mark.parametrize("ranking", ["avg", "rrf", "dbsf"])
def test_both_engines_give_the_same_results_for_the_same_catalog(tmp_path, ranking):
    # given: the same products in both engines
    server, edge = make_index("server", tmp_path), make_index("edge", tmp_path)
    points = catalog(seed=5)
    for index in (server, edge):
        index.ensure_collection(DIM)
        index.upsert(points)
    query = unit(np.random.default_rng(11))
    where = Where(any_of=(("category", ("mugs", "lamps")),))

    # when: the same round trip, with the engine's own ranking
    results = [
        index.retrieve_candidates(
            {"text": query, "image": query}, limit=8, where=where, server_ranking=ranking, avg_vector=query
        )
        for index in (server, edge)
    ]

    # then: the same cosines for the candidates both found (each engine's pools are checked
    # against exact search above)...
    (a, b) = results
    pool_a, pool_b = ({c.id: c.raw for c in r.pool} for r in results)
    assert len(pool_a.keys() & pool_b.keys()) >= len(pool_a) - 2
    for pid in pool_a.keys() & pool_b.keys():
        assert pool_a[pid] == pytest.approx(pool_b[pid], abs=1e-5)
    # ...and the same fused scores, best first. Fusions tie (RRF gives 1/(k + rank) sums), and
    # engines order tied points differently, so a tie at the limit may keep different ones;
    # the search breaks ties by id (fusion.sort_ranked).
    assert sorted(a.server_scores.values(), reverse=True) == pytest.approx(
        sorted(b.server_scores.values(), reverse=True), abs=1e-4
    )
    lowest = min(a.server_scores.values())
    above = [{pid for pid, score in r.server_scores.items() if score > lowest + 1e-6} for r in results]
    assert above[0] == above[1]
    for pid in above[0]:
        assert a.server_scores[pid] == pytest.approx(b.server_scores[pid], abs=1e-4)
    server.close()
    edge.close()


def test_edge_index_survives_reopening_and_refuses_a_second_opener(tmp_path):
    path = tmp_path / "products"
    first = EdgeIndex(path)
    first.ensure_collection(DIM)
    first.upsert(catalog(n=5))

    with pytest.raises(IndexBusyError, match="open in another process"):
        EdgeIndex(path).count()

    first.close()
    again = EdgeIndex(path)
    assert again.dim() == DIM and again.count() == 5
    again.close()


def test_threads_racing_for_the_encoder_and_the_index_build_each_once(settings, tmp_path, monkeypatch):
    import threading
    import time

    from search.retrieval import encoders, providers

    # given: the real loader, slowed so that every thread misses the cache at once
    loads = []

    def slow_load(*args, **kwargs):
        loads.append(args)
        time.sleep(0.3)
        return real_load(*args, **kwargs)

    real_load = encoders.load_encoder
    monkeypatch.setattr(providers, "load_encoder", slow_load)
    settings.SEARCH_VECTOR_ENGINE, settings.QDRANT_PATH = "edge", str(tmp_path / "vectors")
    providers.reset()
    got: list = []

    # when: a request thread and the embedded sweep (and a few more) ask at the same moment
    def ask():
        got.append((providers.get_encoder(), providers.get_product_index()))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: one model load and one index handle, shared
    assert len(loads) == 1
    assert len({id(e) for e, _ in got}) == 1 and len({id(i) for _, i in got}) == 1
    providers.reset()


def test_counts_and_facets_follow_every_write_at_once(engine):
    # counts and facets may be remembered between writes (the embedded engines): never past one
    engine.ensure_collection(DIM)
    engine.upsert(catalog(n=6))
    mugs = Where(any_of=(("category", ("mugs",)),))
    assert engine.count(mugs) == 2 and engine.facet("brand", where=mugs) == {"Acme": 1, "Lumen": 1}

    engine.upsert(catalog(n=9)[6:])  # adds 9 (a mug, Lumen)
    assert engine.count(mugs) == 3 and engine.facet("brand", where=mugs) == {"Acme": 1, "Lumen": 2}
    engine.set_payload(3, {"category": "vases", "brand": "Acme", "price": 3.0})
    assert engine.count(mugs) == 2 and engine.facet("brand", where=mugs) == {"Acme": 1, "Lumen": 1}
    engine.delete([6])
    assert engine.count(mugs) == 1 and engine.facet("brand", where=mugs) == {"Lumen": 1}
    engine.drop()
    assert engine.count(mugs) == 0 and engine.facet("brand", where=mugs) == {}


@pytest.mark.parametrize("budget", [ProductIndex.MOVE_BUDGET, 0], ids=["moved", "forgotten"])
def test_remembered_counts_and_facets_stay_exact_through_random_writes(engine, budget):
    # The embedded engines keep counts and facets across writes by moving them with each
    # written point (or forget them, past the budget for that); checked here against counting
    # by hand after every write of a random mix.
    rng = np.random.default_rng(7)
    engine.MOVE_BUDGET = budget
    engine.ensure_collection(DIM)
    truth: dict[int, tuple[dict, set[str]]] = {}

    def upsert(pids):
        points = []
        for pid in pids:
            text = None if rng.random() < 0.1 else unit(rng)
            image = None if rng.random() < 0.3 else unit(rng)
            if text is None and image is None:
                text = unit(rng)
            payload = {
                "category": str(rng.choice(CATEGORIES + ("",))),
                "brand": str(rng.choice(BRANDS)),
                "price": float(rng.integers(1, 60)),
                "active": True,
            }
            points.append(ProductPoint(pid, text, image, payload))
            truth[pid] = (payload, {"avg"} | {m for m, v in (("text", text), ("image", image)) if v is not None})
        engine.upsert(points)

    wheres = [
        None,
        Where(any_of=(("category", ("mugs", "vases")),)),
        Where(ranges=(("price", None, 30.0),)),
        Where(any_of=(("brand", ("Acme",)),), ranges=(("price", 10.0, 40.0),)),
        Where(has_vector="image"),
        Where(has_vector="text", any_of=(("category", ("lamps",)),)),
        Where(not_ids=(1, 2, 3)),
        Where(ids=tuple(range(1, 30))),
    ]

    def by_hand(where, key=None):
        kept = [
            (pid, p)
            for pid, (p, vectors) in truth.items()
            if (
                where is None
                or (not where.ids or pid in where.ids)
                and pid not in where.not_ids
                and all(p.get(k) in values for k, values in where.any_of)
                and all((lo is None or p[k] >= lo) and (hi is None or p[k] <= hi) for k, lo, hi in where.ranges)
                and (not where.has_vector or where.has_vector in vectors)
            )
        ]
        if key is None:
            return len(kept)
        counts: dict[str, int] = {}
        for _, p in kept:
            counts[p[key]] = counts.get(p[key], 0) + 1
        return counts

    def check(step):
        for where in wheres:
            assert engine.count(where) == by_hand(where), (step, where)
            for key in ("category", "brand"):
                assert engine.facet(key, where=where, limit=50) == by_hand(where, key), (step, key, where)

    upsert(range(1, 41))
    check("first import")
    for step in range(25):
        kind = rng.choice(["update", "new", "payload", "delete"])
        if kind == "update":
            upsert(rng.choice(sorted(truth), size=5, replace=False).tolist())
        elif kind == "new":
            upsert([max(truth) + 1, max(truth) + 2])
        elif kind == "payload":
            pid = int(rng.choice(sorted(truth)))
            payload = {"category": str(rng.choice(CATEGORIES)), "brand": "Lumen", "price": 5.0}
            engine.set_payload(pid, payload)
            truth[pid] = (payload, truth[pid][1])
        else:
            gone = rng.choice(sorted(truth), size=3, replace=False).tolist() + [999]  # one that never was
            engine.delete(gone)
            for pid in gone:
                truth.pop(pid, None)
        check(f"step {step}: {kind}")


def test_a_shared_server_collection_made_anew_by_another_process_is_seen(monkeypatch):
    # given two processes' handles on one server's collection (multi-writer: no memo)
    from qdrant_client import QdrantClient

    from search.retrieval.vector_store import server

    monkeypatch.setattr(server, "SCHEMA_LOOK_SECONDS", 0.1)
    client = QdrantClient(location=":memory:")
    this, other = (server.QdrantServerIndex(client, "products", local=False) for _ in range(2))
    this.ensure_collection(8)
    assert this.dim() == 8 and not this.sole_writer
    # when the other process rebuilds it for a model of another size
    other.drop()
    other.ensure_collection(16)
    # then this one sees the new size once it looks again, instead of searching with the old
    time.sleep(0.15)
    assert this.dim() == 16
