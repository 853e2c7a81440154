"""The loss: InfoNCE with in-batch negatives. The query must score its own positive above every
other product of the batch (and the hard negatives in it), on the product's text (text tower)
and, where the product has one, its image (image tower), which is what the search fuses."""

from __future__ import annotations

from collections.abc import Sequence


def contrastive_loss(
    queries, texts, images, same, with_image: Sequence[tuple[int, object]], *, scale, weights: Sequence[float] = ()
):
    """InfoNCE of each row's query against every product of the batch: on their texts (when
    the text side learns) and on their images (rows whose positive has one). `weights`: each
    row's weight in the mean (inverse propensities of the clicks, Example.weight); none: equal."""
    import torch

    device, size = queries.device, queries.shape[0]
    weight = torch.tensor(list(weights) or [1.0] * size, device=device, dtype=torch.float32)

    def weighted(logits, target, rows):
        per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        return (per_row * weight[rows]).sum() / weight[rows].sum()

    loss = torch.zeros((), device=device)
    if texts is not None:
        text_logits = scale * queries.float() @ texts.float().T
        labels = torch.arange(size, device=device)
        loss = weighted(text_logits.masked_fill(same, -1e4), labels, labels)
    columns = [j for j, _ in with_image]
    pictured = set(columns)
    rows = [i for i in range(size) if i in pictured]
    if rows and images is not None:
        image_logits = scale * queries[rows].float() @ images.float().T
        target = torch.tensor([columns.index(i) for i in rows], device=device)
        loss = loss + weighted(image_logits.masked_fill(same[rows][:, columns], -1e4), target, rows)
    return loss
