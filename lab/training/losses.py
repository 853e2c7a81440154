"""The loss: InfoNCE with in-batch negatives. The query must score its own positive above every
other product of the batch (and the hard negatives in it), on the product's text (text tower)
and, where the product has one, its image (image tower), which is what the search fuses."""

from __future__ import annotations

from collections.abc import Sequence


def contrastive_loss(queries, texts, images, same, with_image: Sequence[tuple[int, object]], *, scale):
    """InfoNCE of each row's query against every product of the batch: on their texts (when
    the text side learns) and on their images (rows whose positive has one)."""
    import torch

    device, size = queries.device, queries.shape[0]
    loss = torch.zeros((), device=device)
    if texts is not None:
        text_logits = scale * queries.float() @ texts.float().T
        labels = torch.arange(size, device=device)
        loss = torch.nn.functional.cross_entropy(text_logits.masked_fill(same, -1e4), labels)
    columns = [j for j, _ in with_image]
    pictured = set(columns)
    rows = [i for i in range(size) if i in pictured]
    if rows and images is not None:
        image_logits = scale * queries[rows].float() @ images.float().T
        target = torch.tensor([columns.index(i) for i in rows], device=device)
        loss = loss + torch.nn.functional.cross_entropy(image_logits.masked_fill(same[rows][:, columns], -1e4), target)
    return loss
