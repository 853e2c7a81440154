"""The evaluation chain on a tiny catalog, through the search code shoppers hit."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from search.models import Click, SearchEvent

pytestmark = pytest.mark.django_db


def test_evaluate_search_indexes_the_catalog_and_writes_reports(tmp_path, capsys):
    call_command("generate_catalog", str(tmp_path / "shop"), products=40, seed=5, missing_image=0.25,
                 missing_description=0.25, queries=12)

    call_command("evaluate_search", "--catalog", str(tmp_path / "shop"), "--strategies", "normalized,avg,dbsf",
                 "--report", str(tmp_path / "report"))

    out = capsys.readouterr().out
    assert "| normalized |" in out and "| dbsf |" in out and "nDCG@10 no image" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["queries"] == 12 and set(report["strategies"]) == {"normalized", "avg", "dbsf"}
    for result in report["strategies"].values():
        assert all(0.0 <= v <= 1.0 for v in result["overall"].values())
        assert result["overall"]["recall@50"] > 0  # 40 products: the relevant ones are retrieved
        assert result["slices"]["no_image"]["queries"] > 0
    assert (tmp_path / "report" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report" / "report.md").read_text().count("|") > 20


def test_evaluate_search_refuses_unknown_strategies(tmp_path):
    call_command("generate_catalog", str(tmp_path / "shop"), products=5, seed=1, queries=2)
    with pytest.raises(CommandError, match="Unknown strategy"):
        call_command("evaluate_search", "--catalog", str(tmp_path / "shop"), "--strategies", "best")


def test_simulated_shoppers_fill_the_real_click_log_with_position_bias(tmp_path, shop, capsys):
    # given: the concept-encoder shop (its search ranks sensibly) and labelled queries for it
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"query": "red mug", "relevance": {"no-image": 3, "no-desc": 3, "green-mug": 1}},
        {"query": "blue vase", "relevance": {"blue-vase": 3, "vase-text-only": 3}},
    ]) + "\n")

    call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "150", "--seed", "3")

    assert "150 sessions" in capsys.readouterr().out
    assert SearchEvent.objects.filter(channel="simulated").count() == 150
    clicks = list(Click.objects.all())
    relevant = {"no-image", "no-desc", "blue-vase", "vase-text-only"}
    assert len(clicks) > 60
    assert sum(c.product_sku in relevant for c in clicks) / len(clicks) > 0.8  # driven by relevance
    assert sum(c.position <= 2 for c in clicks) / len(clicks) > 0.6  # and by position
