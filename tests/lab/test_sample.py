from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from lab.sample import COLOURS, generate_catalog


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    generate_catalog(tmp_path / "a", products=30, seed=5)
    generate_catalog(tmp_path / "b", products=30, seed=5)
    generate_catalog(tmp_path / "c", products=30, seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_missing_fields_and_images_match_their_titles(tmp_path):
    path = generate_catalog(tmp_path, products=200, seed=1, missing_image=0.3, missing_description=0.2)
    rows = [json.loads(line) for line in path.read_text().splitlines()]

    without_image = sum(1 for r in rows if not r["image"])
    without_description = sum(1 for r in rows if not r["description"])
    assert 40 <= without_image <= 80 and 20 <= without_description <= 60
    for r in rows[:40]:
        colour = r["attributes"]["colour"]
        assert colour in r["title"]
        if r["image"]:
            # the product's own colour covers a visible share of its picture
            image = Image.open(tmp_path / r["image"]).convert("RGB")
            counts = {rgb: n for n, rgb in image.getcolors(224 * 224)}
            assert counts.get(COLOURS[colour], 0) > 0.03 * 224 * 224, r["title"]


def test_fractions_are_checked(tmp_path):
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate_catalog(tmp_path, products=1, seed=0, missing_image=1.5)


def test_labelled_queries_are_deterministic_and_graded_from_hidden_attributes(tmp_path):
    from lab.sample import grade

    generate_catalog(tmp_path / "a", products=150, seed=9, missing_image=0.2, queries=40)
    generate_catalog(tmp_path / "b", products=150, seed=9, missing_image=0.2, queries=40)
    assert (tmp_path / "a" / "queries.jsonl").read_bytes() == (tmp_path / "b" / "queries.jsonl").read_bytes()
    generate_catalog(tmp_path / "c", products=150, seed=9, missing_image=0.2, queries=0)
    assert (tmp_path / "c" / "catalog.jsonl").read_bytes() == (tmp_path / "a" / "catalog.jsonl").read_bytes()

    products = {r["sku"]: r for r in map(json.loads, (tmp_path / "a" / "catalog.jsonl").read_text().splitlines())}
    every = [json.loads(line) for line in (tmp_path / "a" / "queries.jsonl").read_text().splitlines()]
    queries = [q for q in every if q["kind"] == "semantic"]
    assert len(queries) == 40 and len({q["query"] for q in queries}) == 40
    assert {"colour+category", "material+category", "brand+category", "long"} <= {q["shape"] for q in queries}
    assert any(word in q["query"] for q in queries for word in ("sneakers", "tee", "rucksack", "shawl", "cup", "hat"))
    for q in queries:
        assert 3 in q["relevance"].values()  # every query has a full match
        for sku, g in q["relevance"].items():
            assert g == grade(products[sku], q["asked"])
        # a product of another category is never relevant
        assert all(products[sku]["category"] == q["asked"]["category"] for sku in q["relevance"])
    # some fully relevant products lack an image: the missing-field slice is populated
    assert any(not products[sku]["image"] for q in queries for sku, g in q["relevance"].items() if g == 3)


def test_other_query_kinds_are_what_shoppers_type_and_keep_the_semantic_queries(tmp_path):
    from lab.sample import NEIGHBOURS

    generate_catalog(tmp_path / "a", products=150, seed=9, queries=40)
    every = [json.loads(line) for line in (tmp_path / "a" / "queries.jsonl").read_text().splitlines()]
    products = {r["sku"]: r for r in map(json.loads, (tmp_path / "a" / "catalog.jsonl").read_text().splitlines())}
    by_kind = {
        kind: [q for q in every if q["kind"] == kind] for kind in ("semantic", "sku", "brand", "typo", "nonsense")
    }
    assert {k: len(v) for k, v in by_kind.items()} == {
        "semantic": 40,
        "sku": 20,
        "brand": 8,
        "typo": 40,
        "nonsense": 10,
    }
    assert len({q["id"] for q in every}) == len(every)

    # a SKU typed in any case, with or without separators, names one product
    squash = lambda text: "".join(ch for ch in text.lower() if ch.isalnum())  # noqa: E731
    for q in by_kind["sku"]:
        assert q["relevance"] == {q["sku"]: 3} and squash(q["query"]) == squash(q["sku"])
    assert any(q["query"] != q["sku"] for q in by_kind["sku"])
    # a brand on its own: every product of that brand is fully relevant
    for q in by_kind["brand"]:
        assert set(q["relevance"]) == {s for s, p in products.items() if p["brand"].lower() == q["query"].lower()}
    # a typo variant keeps its clean query's relevance and is one or two keyboard slips away
    clean = {q["id"]: q for q in by_kind["semantic"]}
    for q in by_kind["typo"]:
        source = clean[q["clean"]]
        assert q["query"] != source["query"] and q["relevance"] == source["relevance"]
        assert 1 <= len(q["slips"]) <= 2 and abs(len(q["query"]) - len(source["query"])) <= len(q["slips"])
        if q["slips"] == ["neighbour"]:
            ((wrong, right),) = [(a, b) for a, b in zip(q["query"], source["query"]) if a != b]
            assert wrong in NEIGHBOURS[right.lower()]
    assert {"deletion", "transposition", "neighbour", "missing space"} <= {
        s for q in by_kind["typo"] for s in q["slips"]
    }
    # nonsense: no word of it is in any product's text, and nothing is relevant
    words = {w.lower() for p in products.values() for w in f"{p['title']} {p['description']}".split()}
    assert all(q["relevance"] == {} and not set(q["query"].split()) & words for q in by_kind["nonsense"])


def test_grades():
    from lab.sample import grade

    product = {
        "category": "mugs",
        "brand": "Acme",
        "attributes": {"colour": "red", "pattern": "striped", "material": "ceramic"},
    }
    assert grade(product, {"category": "mugs", "colour": "red", "pattern": "striped"}) == 3
    assert grade(product, {"category": "mugs", "colour": "red", "pattern": "dotted"}) == 2
    assert grade(product, {"category": "mugs", "colour": "blue"}) == 1
    assert grade(product, {"category": "vases", "colour": "red"}) == 0
