"""The contrastive loss weighs rows by their clicks' inverse propensities."""

from __future__ import annotations

import pytest
import torch

from lab.training.data import click_weight
from lab.training.losses import contrastive_loss


def batch():
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    images = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    same = torch.zeros(3, 3, dtype=torch.bool)
    return queries, texts, images, same, [(0, None), (2, None)]


def test_equal_weights_are_the_plain_mean_and_a_zero_weight_leaves_a_row_out():
    queries, texts, images, same, with_image = batch()
    plain = contrastive_loss(queries, texts, images, same, with_image, scale=10.0)
    assert contrastive_loss(queries, texts, images, same, with_image, scale=10.0, weights=[2, 2, 2]) == pytest.approx(
        float(plain)
    )
    # row 1 weighs nothing: the text loss is that of rows 0 and 2 alone
    logits = 10.0 * queries @ texts.T
    rows = torch.nn.functional.cross_entropy(logits, torch.arange(3), reduction="none")
    text_only = contrastive_loss(queries, texts, None, same, with_image, scale=10.0, weights=[1, 0, 1])
    assert float(text_only) == pytest.approx(float((rows[0] + rows[2]) / 2), rel=1e-5)


def test_a_click_weighs_its_inverse_propensity_clipped():
    assert click_weight(0.5) == 2.0 and click_weight(0.01) == 10.0
    assert click_weight(None) == click_weight("") == click_weight(0) == 1.0
