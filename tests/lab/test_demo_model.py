"""The offline two-tower model: real all-MiniLM-L6-v2 text tower, image tower trained here,
loaded through the production loader, serving the real search; and the quality chain on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from catalog.models import Product
from lab.sample import KIND_BY_NAME
from lab.two_tower import minilm_path
from search.retrieval import providers
from search.retrieval.encoders import load_encoder
from search.selectors import product_search


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-shop")
    call_command(
        "generate_catalog",
        str(folder),
        products=240,
        seed=11,
        missing_image=0.15,
        missing_description=0.15,
        queries=24,
        verbosity=0,
    )
    return folder


@pytest.fixture(scope="session")
def demo_model(demo_shop, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-model")
    call_command(
        "train_demo_model",
        "--catalog",
        str(demo_shop),
        "--out",
        str(out),
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--image-size",
        "32",
        "--device",
        "cpu",
        verbosity=0,
    )
    return out


@pytest.fixture
def with_demo_model(settings, demo_model):
    settings.SEARCH_EMBEDDING_MODEL = str(demo_model)
    providers.reset()
    yield demo_model
    providers.reset()


def test_text_tower_is_all_minilm_l6_v2(demo_model):
    # given: MiniLM as sentence-transformers runs it (mean of token states over real tokens)
    from transformers import AutoTokenizer, BertModel

    texts = ["red striped mug", "Looking for a warm wool scarf for winter"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    bert = BertModel.from_pretrained(minilm_path()).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = bert(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    # when: the demo model is loaded by the serving loader
    encoder = load_encoder(str(demo_model), device="cpu")

    # then: its text vectors are MiniLM's, and they know shoppers' words
    assert encoder.dim == 384
    np.testing.assert_allclose(encoder.encode_texts(texts), reference, atol=1e-5)
    sneakers, running, mug = encoder.encode_texts(["sneakers", "running shoes", "coffee mug"])
    assert sneakers @ running > sneakers @ mug + 0.2


SERVE_ONE_SEARCH = """
import sys
import django
django.setup()
from django.test import Client
assert Client().get("/", {"q": "red striped mug"}).status_code == 200
from search.retrieval import providers
providers.get_encoder()
print(" ".join(sorted(m for m in sys.modules if m == "lab" or m.startswith("lab."))))
"""


def lab_modules_in_a_serving_process(model: Path, var: Path) -> set[str]:
    """Migrate a fresh embedded-default instance, then start a process that answers one storefront
    search with this model, as a web process would, and return the lab modules it imported."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")},
        "DJANGO_SETTINGS_MODULE": "shop_search.settings",
        "SEARCH_EMBEDDING_MODEL": str(model),
        "SEARCH_DEVICE": "cpu",
        "SHOP_SEARCH_VAR_DIR": str(var),
        "QDRANT_PATH": str(var / "qdrant"),
        "LOG_LEVEL": "WARNING",
    }
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True, timeout=300)
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_SEARCH], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(done.stdout.split())


def test_serving_imports_the_demo_model_code_only_when_that_model_is_configured(demo_model, tiny_model_dir, tmp_path):
    # a CLIP checkpoint: of the lab, only its app config (Django loads every installed app's)
    assert lab_modules_in_a_serving_process(tiny_model_dir, tmp_path / "clip") == {"lab", "lab.apps"}
    # the demo model: its modelling code is imported for it, and nothing else of the lab
    assert lab_modules_in_a_serving_process(demo_model, tmp_path / "demo") == {"lab", "lab.apps", "lab.two_tower"}


def test_train_demo_model_puts_images_next_to_their_captions(demo_model):
    report = json.loads((demo_model / "training.json").read_text())
    before, after = report["title_to_image_before"], report["title_to_image_after"]
    assert report["config"]["train"] == "image" and report["held_out"] > 10
    assert report["losses"][-1] < report["losses"][0]
    # held-out products, never trained on: a caption finds its own picture far above chance
    assert after["recall@1"] > 0.5 > before["recall@1"] + 0.3
    assert after["mrr"] > before["mrr"] + 0.3
    # the text tower was frozen while the image tower learned
    assert report["text_tower"].startswith("sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.django_db
def test_demo_model_serves_the_storefront_search(with_demo_model, demo_shop, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_catalog", str(demo_shop / "catalog.jsonl"), verbosity=0)
    assert not Product.objects.exclude(index_status="indexed").exists()

    # given: the colour + pattern + kind most represented among products with a picture
    looks = Counter(
        (p.attributes["colour"], p.attributes["pattern"], p.category)
        for p in Product.objects.exclude(image="").exclude(attributes__pattern="plain")
    )
    (colour, pattern, category), count = looks.most_common(1)[0]
    query = f"{colour} {pattern} {KIND_BY_NAME[category].noun}"  # e.g. "red striped mug"
    assert count >= 2

    # the fused search shows those first
    top = [h.product for h in product_search(query=query, page_size=count).hits]
    assert [(p.attributes["colour"], p.attributes["pattern"], p.category) for p in top] == [
        (colour, pattern, category)
    ] * count
    # and the image tower on its own, from words alone, finds that kind in that colour
    by_image = [h.product for h in product_search(query=query, strategy="image", page_size=5).hits]
    assert sum(p.category == category and p.attributes["colour"] == colour for p in by_image) >= 2


@pytest.mark.django_db
def test_quality_chain_on_a_tiny_shop(with_demo_model, demo_shop, settings, tmp_path, capsys):
    # given: the tiny shop measured with two candidate weight sets
    call_command(
        "evaluate_search",
        "--catalog",
        str(demo_shop),
        "--tune-weights",
        "text=1,image=1;text=1,image=0.5",
        "--report",
        str(tmp_path / "before"),
    )
    out = capsys.readouterr().out
    assert "normalized with each weight set" in out and "| text=1,image=0.5 |" in out
    weights = (tmp_path / "before" / "weights.env").read_text().strip()
    assert weights in ("SEARCH_FUSION_WEIGHTS=text=1,image=1", "SEARCH_FUSION_WEIGHTS=text=1,image=0.5")
    before = json.loads((tmp_path / "before" / "report.json").read_text())
    assert before["strategies"]["normalized"]["overall"]["ndcg@10"] > 0.6  # a real text tower
    assert {t["target"].split(" (")[0] for t in before["targets"]} >= {
        "normalized >= every baseline on nDCG@10",
        "products with no image within +-10% of the MRR of complete ones",
    }

    # when: shoppers click, the clicks are exported, the model is fine-tuned and the shop re-embedded
    call_command("simulate_shoppers", "--queries", str(demo_shop / "queries.jsonl"), "--sessions", "120", "--seed", "1")
    call_command("export_clicks", "--kind", "triplets", "--out", str(tmp_path / "triplets.jsonl"))
    tuned = tmp_path / "tuned"
    call_command(
        "finetune_model",
        "--data",
        str(tmp_path / "triplets.jsonl"),
        "--out",
        str(tuned),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
    )
    settings.SEARCH_EMBEDDING_MODEL = str(tuned)
    providers.reset()
    call_command("index_products", "--all")
    assert set(Product.objects.values_list("indexed_model", flat=True)) == {str(tuned)}
    call_command(
        "evaluate_search",
        "--catalog",
        str(demo_shop),
        "--strategies",
        "normalized,text",
        "--baseline",
        str(tmp_path / "before" / "report.json"),
        "--report",
        str(tmp_path / "after"),
    )

    # then: the after report compares itself with the before report, target included
    after = (tmp_path / "after" / "report.md").read_text()
    assert "Against the baseline report" in after and "| normalized |" in after
    assert "nDCG@10 (normalized) higher than the baseline report" in after


def test_evaluate_search_refuses_bad_weight_sets(tmp_path):
    call_command("generate_catalog", str(tmp_path / "shop"), products=5, seed=1, queries=2, verbosity=0)
    with pytest.raises(CommandError, match="weight sets such as"):
        call_command("evaluate_search", "--catalog", str(tmp_path / "shop"), "--tune-weights", "text:1")
    with pytest.raises(CommandError, match="at least one above 0"):
        call_command("evaluate_search", "--catalog", str(tmp_path / "shop"), "--tune-weights", "text=0,image=0")


def test_train_demo_model_says_what_is_missing(tmp_path):
    with pytest.raises(CommandError, match="No catalog.jsonl"):
        call_command("train_demo_model", "--catalog", str(tmp_path), "--out", str(tmp_path / "m"))
    (tmp_path / "catalog.jsonl").write_text(json.dumps({"sku": "a", "title": "Red mug", "image": ""}) + "\n")
    with pytest.raises(CommandError, match="no products with a local image"):
        call_command("train_demo_model", "--catalog", str(tmp_path), "--out", str(tmp_path / "m"))
    with pytest.raises(CommandError, match="multiple of 16"):
        call_command("train_demo_model", "--catalog", str(tmp_path), "--out", str(tmp_path / "m"), "--image-size", "40")
