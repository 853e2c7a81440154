"""Fine-tuning from clicks on the tiny model: runs, reports, writes a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from catalog.models import Product
from search.retrieval.encoders import load_encoder
from search.selectors import product_search
from search.services import click_log, search_event_log

pytestmark = pytest.mark.django_db


@pytest.fixture
def triplets(tmp_path, django_capture_on_commit_callbacks):
    # given: a generated shop, indexed with the tiny model, and shoppers who search a kind of
    # product and click those of the colour they had in mind, below others
    call_command("generate_catalog", str(tmp_path / "shop"), products=60, seed=4, missing_image=0.2)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_catalog", str(tmp_path / "shop" / "catalog.jsonl"))
    queries = sorted({(p.attributes["colour"], p.category) for p in Product.objects.all()})[:16]
    for colour, category in queries:
        result = product_search(query=category, page_size=30)
        assert search_event_log(result=result, channel="api", session_key="s")
        for hit in result.hits:
            if hit.position > 1 and hit.product.attributes["colour"] == colour and hit.product.category == category:
                click_log(search_id=result.search_id, product_id=hit.product.pk, session_key="s")
    out = tmp_path / "triplets.jsonl"
    call_command("export_clicks", "--kind", "triplets", "--format", "jsonl", "--out", str(out))
    assert out.read_text().count("\n") >= 20
    return out


@pytest.mark.parametrize("train", ["text", "image", "projection", "all"])
def test_finetune_writes_a_model_the_search_can_load(tmp_path, triplets, tiny_model_dir, capsys, train):
    out = tmp_path / f"tuned-{train}"
    call_command(
        "finetune_model",
        "--data",
        str(triplets),
        "--base",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--train",
        train,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--grad-accum",
        "2",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
    )

    text = capsys.readouterr().out
    assert "| before |" in text and "| after |" in text and "Recall@10" in text
    report = json.loads((out / "training.json").read_text())
    assert set(report["before"]) >= {"recall@1", "recall@10", "mrr"} and report["held_out"] > 0
    assert len(report["losses"]) == 2
    tuned = load_encoder(str(out), device="cpu")
    base = load_encoder(str(tiny_model_dir), device="cpu")
    picture = Image.new("RGB", (64, 64), "red")
    text_changed = not np.array_equal(tuned.encode_texts(["red mug"]), base.encode_texts(["red mug"]))
    image_changed = not np.array_equal(tuned.encode_images([picture]), base.encode_images([picture]))
    # each mode trains its side and leaves a frozen tower exactly as it was
    assert (text_changed, image_changed) == {
        "text": (True, False),
        "image": (False, True),
        "projection": (True, True),
        "all": (True, True),
    }[train]


def test_finetune_refuses_bad_input(tmp_path, tiny_model_dir):
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({"query": "x"}) + "\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("finetune_model", "--data", str(bad), "--base", str(tiny_model_dir), "--out", str(tmp_path / "o"))
    with pytest.raises(CommandError, match="batch-size"):
        call_command("finetune_model", "--data", str(bad), "--out", str(tmp_path / "o"), "--batch-size", "1")


def test_index_products_all_re_embeds_with_the_tuned_model(tmp_path, triplets, tiny_model_dir, settings, capsys):
    from search.retrieval import providers

    out = tmp_path / "tuned"
    call_command(
        "finetune_model",
        "--data",
        str(triplets),
        "--base",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        verbosity=0,
    )
    settings.SEARCH_EMBEDDING_MODEL = str(out)
    providers.get_encoder.cache_clear()
    try:
        call_command("index_products", "--all")
    finally:
        providers.get_encoder.cache_clear()
    assert f"Indexed {Product.objects.count()}," in capsys.readouterr().out
    assert set(Product.objects.values_list("indexed_model", flat=True)) == {str(out)}
