"""Fine-tuning done right (issue 14): other positives of a query are never its negatives, a
half-precision window with nothing to learn from does not crash, a window larger than a
micro-batch is one contrastive batch (gradient caching), no product twice in a batch, warm-up,
checkpoints, and images read per batch."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from lab.training import ClipTrainer, Example, ImageReader, Product, TrainConfig, batches_without_duplicates


def product(key: str, image: str | None = None) -> Product:
    return Product(key=key, text=f"product {key}", image=image)


def test_other_clicked_products_of_the_same_query_are_masked_not_negatives(tiny_model_dir):
    trainer = ClipTrainer(str(tiny_model_dir), device="cpu")
    red_a, red_b, blue = product("red-a"), product("red-b"), product("blue")
    batch = [Example("red mug", red_a, [blue]), Example("red mug", red_b, []), Example("blue vase", blue, [])]
    trainer.positives = {"red mug": {"red-a", "red-b"}, "blue vase": {"blue"}}
    products, mask = trainer._columns(batch, [blue, None, None])
    keys = [p.key for p in products]
    # red-b, clicked for "red mug" too, is not a negative of "red mug"; blue (skipped above) is
    assert bool(mask[0][keys.index("red-b")]) and bool(mask[1][keys.index("red-a")])
    assert not mask[0][keys.index("blue")]
    assert not mask[0][keys.index("red-a")] and not mask[1][keys.index("red-b")]  # each row's own answer
    assert not mask[2][keys.index("red-a")]  # another query's positive is a fair negative


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_half_precision_window_without_a_backward_pass_does_not_crash(tiny_model_dir, precision, grad_accum):
    # --train image and batches whose products have no image: nothing to learn from in the window
    trainer = ClipTrainer(str(tiny_model_dir), device="cpu")
    examples = [Example(f"query {n}", product(f"p{n}"), []) for n in range(6)]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    losses = trainer.train(
        examples, TrainConfig(train="image", epochs=1, batch_size=2, grad_accum=grad_accum, precision=precision)
    )
    assert len(losses) == 1
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())  # nothing moved


@pytest.fixture
def pictured(tmp_path):
    """Examples whose products have pictures: 8 queries, each with its own product."""
    colours = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
    examples = []
    for n, colour in enumerate(colours):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", (32, 32), colour).save(path)
        examples.append(Example(f"{colour} mug", Product(key=f"p{n}", text=f"{colour} mug", image=str(path)), []))
    return examples


def window_gradients(trainer, window, chunk):
    trainer.model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = trainer._step(
        window, random.Random(0), chunk=chunk, autocast=lambda: torch.autocast("cpu", enabled=False), scaler=scaler
    )
    return loss, {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_a_window_over_a_micro_batch_is_one_contrastive_batch(tiny_model_dir, pictured):
    # given: both towers learning, dropout off so two passes can be compared
    trainer = ClipTrainer(str(tiny_model_dir), device="cpu")
    trainer._freeze("all")
    trainer.model.eval()

    # when: the window of 8 is computed at once, and 2 at a time with the gradients cached
    whole_loss, whole = window_gradients(trainer, pictured, chunk=8)
    cached_loss, cached = window_gradients(trainer, pictured, chunk=2)

    # then: the same loss over all 8 rows' negatives, and the same gradients
    assert cached_loss == pytest.approx(whole_loss, rel=1e-5)
    assert set(cached) == set(whole) and any(n.startswith("vision_model") for n in whole)
    for name in whole:
        torch.testing.assert_close(cached[name], whole[name], atol=1e-6, rtol=1e-4)
    # and it is not the loss of four separate micro-batches of 2 (fewer negatives: a lower loss)
    separate = sum(window_gradients(trainer, pictured[i : i + 2], chunk=2)[0] for i in range(0, 8, 2)) / 4
    assert separate < whole_loss


def test_batches_never_hold_one_product_twice_and_keep_every_example():
    examples = [Example(f"q{n}", product(f"p{n % 5}"), []) for n in range(23)]  # 5 products, clicked for 23 queries
    batches = batches_without_duplicates(examples, 4, random.Random(0))
    assert sorted(e.query for b in batches for e in b) == sorted(e.query for e in examples)
    assert all(len({e.positive.key for e in b}) == len(b) <= 4 for b in batches)


def test_the_learning_rate_warms_up_then_decays(tiny_model_dir):
    trainer = ClipTrainer(str(tiny_model_dir), device="cpu")
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1.0)
    scheduler = trainer._schedule(optimizer, total=20, warmup=0.2)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and rates[-1] == pytest.approx(1 / 16)
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))


def test_a_run_goes_on_from_its_last_checkpoint(tiny_model_dir, pictured, tmp_path):
    config = dict(train="all", batch_size=4, seed=3, checkpoint_dir=str(tmp_path / "checkpoints"))
    first = ClipTrainer(str(tiny_model_dir), device="cpu")
    two = first.train(pictured, TrainConfig(epochs=2, **config))
    assert (tmp_path / "checkpoints" / "checkpoint.pt").exists()

    # a new process (a new trainer) asked for 3 epochs picks up after epoch 2
    again = ClipTrainer(str(tiny_model_dir), device="cpu")
    steps = []
    step = again._step
    again._step = lambda *args, **kwargs: steps.append(1) or step(*args, **kwargs)
    three = again.train(pictured, TrainConfig(epochs=3, **config))
    assert three[:2] == two and len(three) == 3
    assert len(steps) == 2  # one epoch of 8 examples in windows of 4: epochs 1 and 2 were not run again


def test_images_are_read_per_batch_and_at_most_the_cache_is_kept(tmp_path):
    paths = []
    for n in range(10):
        paths.append(str(tmp_path / f"{n}.png"))
        Image.new("RGB", (8, 8), (n * 20, 0, 0)).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    reader = ImageReader(size=3)
    assert all(reader(p) is not None for p in paths)
    assert len(reader.cache) == 3 and list(reader.cache) == paths[-3:]
    assert reader(str(tmp_path / "broken.png")) is None and reader("https://example.com/a.png") is None
