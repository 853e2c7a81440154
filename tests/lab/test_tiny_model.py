"""build_tiny_model: the random CLIP that tests and offline machines load like a real one."""

from __future__ import annotations

from django.core.management import call_command

from search.retrieval.encoders import load_encoder


def test_build_tiny_model_writes_a_loadable_model(tmp_path, capsys):
    call_command("build_tiny_model", str(tmp_path / "m"), dim=16)
    assert load_encoder(str(tmp_path / "m"), device="cpu").dim == 16
    assert "random" in capsys.readouterr().out
