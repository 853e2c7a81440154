"""Fitting the fusion calibration on a shop's labelled queries and clicks, keeping it with the
model, and the search using it (or, without one or with a broken one, the weights)."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Product
from search.models import Click, FusionCalibration, SearchEvent, SearchImpression
from search.selectors import product_search
from search.selectors.calibrations import calibration_forget
from search.services.calibrating import MIN_QUERIES, evidence_from_clicks, evidence_from_labels, evidence_merge

pytestmark = pytest.mark.django_db


@pytest.fixture
def generated(tmp_path, settings):
    """A generated shop with its queries; the tiny model's cosines say little, so its cutoff is
    lowered until queries match irrelevant products too (there is something to order), and the
    relevance model is off: the calibration is fitted on, and orders, every match."""
    settings.SEARCH_CUTOFF_QUANTILE = 0.05
    settings.SEARCH_RELEVANCE_THRESHOLD = 0
    call_command(
        "generate_catalog",
        str(tmp_path / "shop"),
        products=60,
        seed=5,
        missing_image=0.3,
        missing_description=0.3,
        queries=MIN_QUERIES + 4,
    )
    return tmp_path / "shop"


def test_calibrate_fusion_fits_keeps_and_the_word_search_uses_it(generated, settings, capsys):
    call_command("evaluate_search", "--catalog", str(generated), "--strategies", "normalized", "--verbosity", "0")
    assert not product_search(query="wool sock").calibrated  # no calibration yet: the weights fuse

    call_command("calibrate_fusion", "--queries", str(generated / "queries.jsonl"))

    out = capsys.readouterr().out
    saved = FusionCalibration.objects.get(model_id=settings.SEARCH_EMBEDDING_MODEL).coefficients
    assert f"Fitted on {MIN_QUERIES + 4} queries ({MIN_QUERIES + 4} labelled, 0 from the search log;" in out
    assert "| no_image_z_text |" in out and "use it now, in every process." in out
    assert saved["fitted"]["model"] == settings.SEARCH_EMBEDDING_MODEL
    result = product_search(query="wool sock")
    assert result.calibrated and result.count > 0
    # every match is ranked on the one scale, a product without an image too
    assert any("image" not in r.raw for r in result.ranked) and any("image" in r.raw for r in result.ranked)

    # the evaluation says which fusion ranked
    call_command("evaluate_search", "--catalog", str(generated), "--strategies", "normalized")
    assert "normalized: the model's fitted calibration (the database)" in capsys.readouterr().out

    settings.SEARCH_FUSION_CALIBRATION = "off"
    assert not product_search(query="wool sock").calibrated


def test_a_calibration_fitted_into_a_file_says_which_processes_read_it(generated, settings, capsys, tmp_path):
    call_command("evaluate_search", "--catalog", str(generated), "--strategies", "normalized", "--verbosity", "0")
    settings.SEARCH_FUSION_CALIBRATION = path = str(tmp_path / "candidate.json")

    call_command("calibrate_fusion", "--queries", str(generated / "queries.jsonl"))

    # a server started without that setting reads the database's, not this file: not "every process"
    assert f"use it now, in every process with SEARCH_FUSION_CALIBRATION={path}." in capsys.readouterr().out
    assert json.loads((tmp_path / "candidate.json").read_text())["coefficients"]
    assert not FusionCalibration.objects.exists()


@pytest.mark.parametrize("kept", ["database", "file"])
def test_a_broken_calibration_falls_back_to_the_weights(generated, settings, caplog, tmp_path, kept):
    call_command("evaluate_search", "--catalog", str(generated), "--strategies", "normalized", "--verbosity", "0")
    broken = {"version": 1, "coefficients": {"z_text": "high"}}
    if kept == "file":
        settings.SEARCH_FUSION_CALIBRATION = str(tmp_path / "calibration.json")
        (tmp_path / "calibration.json").write_text(json.dumps(broken))
    else:
        FusionCalibration.objects.create(model_id=settings.SEARCH_EMBEDDING_MODEL, coefficients=broken)
        calibration_forget()  # as the process that saved it does

    result = product_search(query="wool sock")

    assert not result.calibrated and result.count > 0
    assert "is not used (the coefficients must be numbers" in caplog.text


def test_too_little_evidence_is_refused_and_says_what_to_do(generated, settings):
    rows = [json.loads(line) for line in (generated / "queries.jsonl").read_text().splitlines()][:5]
    few = generated / "few.jsonl"
    few.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    call_command(
        "evaluate_search",
        "--catalog",
        str(generated),
        "--queries",
        str(few),
        "--strategies",
        "normalized",
        "--verbosity",
        "0",
    )

    with pytest.raises(
        CommandError,
        match=f"5 queries with a click or a relevant label; a calibration needs at "
        f"least {MIN_QUERIES}. Until then the search fuses with SEARCH_FUSION_WEIGHTS",
    ):
        call_command("calibrate_fusion", "--queries", str(few), "--no-clicks")
    with pytest.raises(CommandError, match="every line needs"):
        (generated / "bad.jsonl").write_text('{"query": "mug"}\n')
        call_command("calibrate_fusion", "--queries", str(generated / "bad.jsonl"))
    with pytest.raises(CommandError, match="Nothing to fit on"):
        call_command("calibrate_fusion", "--no-clicks")
    assert not FusionCalibration.objects.exists()  # nothing written


def test_clicks_say_relevant_skips_above_and_next_say_not_and_further_down_says_nothing():
    products = [Product.objects.create(sku=f"P{i}", title=f"Product {i}") for i in range(5)]
    for clicked in (2, 2, 1):  # three searches for the same query; positions 1..5
        event = SearchEvent.objects.create(
            channel="page",
            mode="text",
            query="Red Mug",
            query_normalized="red mug",
            sort="relevance",
            strategy="normalized",
        )
        for position, product in enumerate(products, start=1):
            SearchImpression.objects.create(search=event, product=product, product_sku=product.sku, position=position)
        Click.objects.create(
            search=event, product=products[clicked - 1], product_sku=products[clicked - 1].sku, position=clicked
        )

    evidence = evidence_from_clicks(days=30)

    labels = evidence.labels["red mug"]
    ids = [p.pk for p in products]
    # P1: skipped twice above a click, clicked once; P2: clicked twice, and the one just below
    # the last click once; P3: just below the last click twice; P4 and P5 further down: nothing
    assert labels == {ids[0]: (pytest.approx(1 / 3), 3.0), ids[1]: (pytest.approx(2 / 3), 3.0), ids[2]: (0.0, 2.0)}
    assert evidence.click_queries == 1 and not evidence.complete


def test_labels_and_clicks_merge_and_only_labelled_queries_are_complete():
    Product.objects.create(sku="A", title="A")
    labelled = evidence_from_labels([{"query": "red mug", "relevance": {"A": 3, "unknown-sku": 2}}])
    pid = Product.objects.get(sku="A").pk
    assert labelled.labels == {"red mug": {pid: (1.0, 1.0)}} and labelled.complete == {"red mug"}

    clicked = type(labelled)(labels={"red mug": {pid: (0.0, 3.0)}, "vase": {pid: (1.0, 1.0)}}, click_queries=2)
    merged = evidence_merge(labelled, clicked)
    assert merged.labels["red mug"][pid] == (pytest.approx(0.25), 4.0)  # weighted by what each saw
    assert merged.complete == {"red mug"} and merged.labelled_queries == 1 and merged.click_queries == 2


def test_a_calibration_fitted_by_another_process_reaches_this_one(generated, settings, monkeypatch, capsys):
    from search.selectors import calibrations

    # given a web process that has searched without a calibration
    call_command("evaluate_search", "--catalog", str(generated), "--strategies", "normalized", "--verbosity", "0")
    monkeypatch.setattr(calibrations, "LOOK_SECONDS", 0.2)
    assert not product_search(query="wool sock").calibrated
    # when another process (the command on another host) fits one: it is in the shared database
    call_command("calibrate_fusion", "--queries", str(generated / "queries.jsonl"))
    assert "Saved in the database" in capsys.readouterr().out
    calibrations._seen[settings.SEARCH_EMBEDDING_MODEL] = (time.monotonic(), None, None)  # as this process saw it
    assert not product_search(query="wool sock").calibrated  # looked a moment ago
    # then this process uses it once it looks again
    time.sleep(0.3)
    assert product_search(query="wool sock").calibrated
    # and --remove takes it away for every process
    call_command("calibrate_fusion", "--remove")
    assert not FusionCalibration.objects.exists() and not product_search(query="wool sock").calibrated
    assert "Removed from the database" in capsys.readouterr().out
    call_command("calibrate_fusion", "--remove")  # nothing left: it says so, not "removed"
    assert "There is no calibration in the database" in capsys.readouterr().out


def test_a_query_clicked_many_times_makes_one_list_weighted_by_its_clicks(shop):
    from search.services.calibrating import Evidence, calibration_rows

    # five clicks on one product, three skips of another: the list orders them (it used to be
    # dropped when the clicks outnumbered the products)
    evidence = Evidence(
        labels={"red mug": {shop["no-image"]: (1.0, 5.0), shop["green-mug"]: (0.0, 3.0)}}, click_queries=1
    )

    features, targets, groups, weights, tops = calibration_rows(evidence)

    assert len(targets) == 2 and sorted(targets) == [0.0, 5.0]  # a click share times the times seen
    assert list(groups) == [0, 0] and list(weights) == [1.0] and list(tops) == [True]


def test_calibrating_while_the_server_holds_the_embedded_store_says_what_to_do(generated, embedded_store_held):
    with pytest.raises(CommandError, match="open in another process.*Stop the server, fit, and start it again"):
        call_command("calibrate_fusion", "--queries", str(generated / "queries.jsonl"), "--no-clicks")
    assert not FusionCalibration.objects.exists()
