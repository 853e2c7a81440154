"""The evaluation chain on a tiny catalog, through the search code shoppers hit."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from search.models import Click, FusionCalibration, SearchEvent

pytestmark = pytest.mark.django_db


def test_evaluate_search_indexes_the_catalog_and_writes_reports(tmp_path, capsys):
    call_command(
        "generate_catalog",
        str(tmp_path / "shop"),
        products=40,
        seed=5,
        missing_image=0.25,
        missing_description=0.25,
        queries=12,
    )

    call_command(
        "evaluate_search",
        "--catalog",
        str(tmp_path / "shop"),
        "--strategies",
        "normalized,avg,dbsf",
        "--report",
        str(tmp_path / "report"),
    )

    out = capsys.readouterr().out
    assert "| normalized |" in out and "| dbsf |" in out and "nDCG@10 no image" in out
    assert "| normalized | nonsense | 3 | share with no results |" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["strategies"]) == {"normalized", "avg", "dbsf"}
    for result in report["strategies"].values():
        assert result["queries"] == 12  # the semantic queries; each other kind is reported on its own
        kinds = result["kinds"]
        brands = len(
            {json.loads(line)["brand"] for line in (tmp_path / "shop" / "catalog.jsonl").read_text().splitlines()}
        )
        assert {k: v["queries"] for k, v in kinds.items()} == {
            "semantic": 12,
            "sku": 6,
            "brand": brands,
            "typo": 12,
            "nonsense": 3,
            "kept": 12,
        }
        assert kinds["sku"]["value"] == 1.0  # whatever the model: the SKU, typed any way, finds its product first
        assert all(v["value"] is None or 0.0 <= v["value"] for v in kinds.values())
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
    queries.write_text(
        "\n".join(
            json.dumps(q)
            for q in [
                {"query": "red mug", "relevance": {"no-image": 3, "no-desc": 3, "green-mug": 1}},
                {"query": "blue vase", "relevance": {"blue-vase": 3, "vase-text-only": 3}},
            ]
        )
        + "\n"
    )

    call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "150", "--seed", "3")

    assert "150 sessions" in capsys.readouterr().out
    assert SearchEvent.objects.filter(channel="simulated").count() == 150
    clicks = list(Click.objects.all())
    relevant = {"no-image", "no-desc", "blue-vase", "vase-text-only"}
    assert len(clicks) > 60
    assert sum(c.product_sku in relevant for c in clicks) / len(clicks) > 0.8  # driven by relevance
    assert sum(c.position <= 2 for c in clicks) / len(clicks) > 0.6  # and by position


def test_simulated_shoppers_while_the_server_holds_the_embedded_store_say_what_to_do(tmp_path, embedded_store_held):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "red mug", "relevance": {"no-image": 3}}) + "\n")

    with pytest.raises(CommandError, match="open in another process.*Stop the server, simulate, and start it again"):
        call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "5")
    assert not SearchEvent.objects.exists()


def test_pushdown_pairs_compare_missing_and_complete_products_within_a_query():
    from lab.evaluation import pushdown_pairs

    # given: ranks 1..5; relevant: a (complete, rank 1), c (complete, rank 3), b (no image, rank 2),
    # e (no image, rank 5); d is not relevant and nothing lacks a description
    slices = {"a": "complete", "b": "no_image", "c": "complete", "e": "no_image", "d": "complete"}
    pairs = pushdown_pairs(["a", "b", "c", "d", "e"], {"a", "b", "c", "e"}, slices)

    # then: mean RR without image (1/2 + 1/5) / 2 against complete (1 + 1/3) / 2; no other pair
    assert pairs == {"no_image": (pytest.approx(0.35), pytest.approx(2 / 3))}


def test_targets_are_ticked_only_when_met():
    from lab.evaluation import targets_check

    def entry(overall, no_image, no_description, loss_image, loss_description):
        return {
            "overall": {"ndcg@10": overall},
            "slices": {"no_image": {"ndcg@10": no_image}, "no_description": {"ndcg@10": no_description}},
            "pushdown": {"loss_no_image": loss_image, "loss_no_description": loss_description},
        }

    report = {"normalized": entry(0.9, 0.8, 0.7, 0.02, 0.15), "text": entry(0.85, 0.82, 0.6, -0.1, 0.0)}
    baseline = {"normalized": entry(0.95, 0, 0, 0, 0)}
    met = {name: ok for name, ok, _ in targets_check(report, baseline)}
    assert met == {
        "normalized >= every baseline on nDCG@10 (overall)": True,
        "normalized >= every baseline on nDCG@10 (no image)": False,
        "normalized >= every baseline on nDCG@10 (no description)": True,
        "products with no image within +-10% of the MRR of complete ones": True,
        "products with no description within +-10% of the MRR of complete ones": False,
        "nDCG@10 (normalized) higher than the baseline report": False,
    }
    # products missing a field that float up are no fairer than those pushed down
    report["normalized"]["pushdown"]["loss_no_image"] = -0.2
    assert not dict((n, ok) for n, ok, _ in targets_check(report))[
        "products with no image within +-10% of the MRR of complete ones"
    ]


def test_cross_fitting_ranks_each_query_with_a_calibration_fitted_without_it(tmp_path, settings, capsys):
    settings.SEARCH_CUTOFF_QUANTILE = 0.05  # the tiny model's cosines say little: let irrelevant products match too
    call_command(
        "generate_catalog",
        str(tmp_path / "shop"),
        products=60,
        seed=5,
        missing_image=0.3,
        missing_description=0.3,
        queries=48,
    )

    call_command(
        "evaluate_search",
        "--catalog",
        str(tmp_path / "shop"),
        "--strategies",
        "normalized,text",
        "--cross-fit",
        "2",
        "--report",
        str(tmp_path / "report"),
    )

    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["strategies"]) == ["normalized", "normalized-uncalibrated", "text"]
    assert report["cross_fit"] == 2
    against = report["comparisons"]["against"]
    assert set(against) == {"normalized-uncalibrated", "text"}
    for scope in ("overall", "no_image", "no_description"):
        c = against["text"][scope]
        assert c["low"] <= c["difference"] <= c["high"] and 0 <= c["p_value"] <= 1
        assert c["verdict"] == ("beats" if c["low"] > 0 else "loses" if c["high"] < 0 else "ties")
    assert "| normalized against | nDCG@10 overall | no image | no description |" in out
    assert "calibration cross-fitted over 2 folds" in out
    assert not FusionCalibration.objects.exists()  # the folds' calibrations are not kept
