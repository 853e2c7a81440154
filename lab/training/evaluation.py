"""How well a model finds held-out queries' products, ranked over the whole pool the way the
search ranks (per-modality normalisation, fused over the fields each product has)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from search.retrieval import fusion

from ..metrics import mean, recall_at_k, reciprocal_rank
from .data import Example, Product
from .trainer import ClipTrainer


def held_out_evaluate(
    trainer: ClipTrainer, examples: Sequence[Example], pool: Sequence[Product], *, weights: dict[str, float]
) -> dict[str, float]:
    """Rank the whole product pool for each held-out query the way the search does (per-modality
    normalisation, fused over the fields each product has); Recall@1/@10 and MRR."""
    if not examples:
        return {"recall@1": 0.0, "recall@10": 0.0, "mrr": 0.0, "queries": 0}
    with trainer.torch.inference_mode():
        keys = [p.key for p in pool]
        texts = trainer.texts_embed([p.text for p in pool]).cpu().numpy()
        with_image = [(k, img) for k, p in enumerate(pool) if (img := trainer.images(p.image))]
        images = trainer.images_embed([img for _, img in with_image]).cpu().numpy() if with_image else np.zeros((0, 1))
        image_row = {k: r for r, (k, _) in enumerate(with_image)}
        relevant: dict[str, set[str]] = defaultdict(set)
        for e in examples:
            relevant[e.query].add(e.positive.key)
        queries = sorted(relevant)
        query_vectors = trainer.texts_embed(queries).cpu().numpy()
    r1, r10, mrr = [], [], []
    for query, q in zip(queries, query_vectors):
        text_scores = texts @ q
        image_scores = images @ q if len(with_image) else np.zeros(0)
        candidates = [
            fusion.Candidate(
                k,
                {
                    "text": float(text_scores[k]),
                    **({"image": float(image_scores[image_row[k]])} if k in image_row else {}),
                },
            )
            for k in range(len(pool))
        ]
        ranked = [keys[r.id] for r in fusion.fuse_normalized(candidates, weights)]
        r1.append(recall_at_k(ranked, relevant[query], 1))
        r10.append(recall_at_k(ranked, relevant[query], 10))
        mrr.append(reciprocal_rank(ranked, relevant[query]))
    return {"recall@1": mean(r1), "recall@10": mean(r10), "mrr": mean(mrr), "queries": len(queries)}
