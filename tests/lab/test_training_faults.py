"""Fine-tuning done right (issue 14, first part): other positives of a query are never its
negatives, and a half-precision window with nothing to learn from does not crash."""
from __future__ import annotations

import pytest

from lab.training import ClipTrainer, Example, Product, TrainConfig


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


def test_a_half_precision_window_without_a_backward_pass_does_not_crash(tiny_model_dir):
    # --train image and batches whose products have no image: nothing to learn from in the window
    trainer = ClipTrainer(str(tiny_model_dir), device="cpu")
    examples = [Example(f"query {n}", product(f"p{n}"), []) for n in range(6)]
    losses = trainer.train(examples, TrainConfig(train="image", epochs=1, batch_size=2, grad_accum=2,
                                                 precision="fp16"))
    assert len(losses) == 1
