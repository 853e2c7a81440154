"""The evaluation chain on a tiny catalog, through the search code shoppers hit."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

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
