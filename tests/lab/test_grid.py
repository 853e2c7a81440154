"""The quality grid: a shop per seed and missing-field rate, each measured in its own process with
the default settings, read back into one table with its paired tests."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command


def test_the_grid_measures_each_cell_in_its_own_shop_and_reuses_what_does_not_change(tmp_path, monkeypatch, capsys):
    # the tiny model's cosines say little: its cutoff is lowered so queries match something to order
    monkeypatch.setenv("SEARCH_CUTOFF_QUANTILE", "0.05")
    args = [
        "--out",
        str(tmp_path / "grid"),
        "--seeds",
        "7",
        "--rates",
        "0.1,0.4",
        "--products",
        "50",
        "--queries",
        "44",
        "--strategies",
        "normalized,text",
    ]

    call_command("evaluate_grid", *args)

    out = capsys.readouterr().out
    assert "[2/2]" in out and "Grid written to" in out
    summary = json.loads((tmp_path / "grid" / "grid.json").read_text())
    cells = summary["cells"]
    assert [(c["seed"], c["missing_image"], c["missing_description"]) for c in cells] == [(7, 0.1, 0.1), (7, 0.4, 0.4)]
    for cell in cells:
        assert cell["queries"] == 44
        for scope in cell["scopes"].values():
            test = scope["test"]
            assert scope["best"] == "text" and test["low"] <= test["difference"] <= test["high"]
            assert 0 <= test["p_value"] <= test["p_holm"] <= 1
            assert scope["met"] == (scope["normalized"] >= scope["best_value"])
    table = (tmp_path / "grid" / "grid.md").read_text()
    # a row per cell in the ranking table and in what each word query matches
    assert table.count("\n| 7 | ") == 4 and "Targets over 2 cells" in table
    assert "What each word query matches" in table and "in the category asked >= 0.95 in" in table
    assert (tmp_path / "grid" / "grid.png").read_bytes()[:4] == b"\x89PNG"

    # a second run generates no catalog again and keeps each cell's store of this model
    cell = tmp_path / "grid" / "seed7-image0.1-description0.1"
    made = (cell / "params.json").stat().st_mtime_ns
    stores = sorted(p.name for p in cell.glob("var-*"))
    call_command("evaluate_grid", *args)
    assert (cell / "params.json").stat().st_mtime_ns == made
    assert sorted(p.name for p in cell.glob("var-*")) == stores and len(stores) == 1


def test_the_grid_refuses_what_it_cannot_measure(tmp_path):
    with pytest.raises(CommandError, match="--rates must be between 0 and 1"):
        call_command("evaluate_grid", "--out", str(tmp_path), "--rates", "0.1,1.5")
    with pytest.raises(CommandError, match="--strategies must include normalized"):
        call_command("evaluate_grid", "--out", str(tmp_path), "--strategies", "text,avg")
    with pytest.raises(CommandError, match="comma-separated numbers"):
        call_command("evaluate_grid", "--out", str(tmp_path), "--seeds", "one,two")


def test_mixes_name_each_shop_by_its_missing_image_and_description_rates():
    from lab.management.commands.evaluate_grid import _mixes

    cells = _mixes("7,8", "0.3/0.3,0.5/0.05")
    assert [(c.seed, c.missing_image, c.missing_description) for c in cells] == [
        (7, 0.5, 0.05),
        (7, 0.3, 0.3),
        (8, 0.5, 0.05),
        (8, 0.3, 0.3),
    ]
    with pytest.raises(CommandError, match="image/description rate pairs"):
        _mixes("7", "0.3")
