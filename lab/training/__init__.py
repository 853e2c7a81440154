"""Contrastive fine-tuning of a CLIP-family model, split as sentence-transformers splits it:
`data` (triplets, splits, batches, images), `losses` (InfoNCE), `trainer` (ClipTrainer),
`evaluation` (held-out retrieval) and `run` (one measured run, as the commands make it)."""

from .data import Example, ImageReader, Product, batches_without_duplicates, product_pool, split_by_query, triplets_load
from .evaluation import held_out_evaluate
from .losses import contrastive_loss
from .run import TrainingRun, training_run
from .trainer import IMAGE_TOWER, TEXT_TOWER, TRAINABLE, ClipTrainer, TrainConfig

__all__ = [
    "IMAGE_TOWER",
    "TEXT_TOWER",
    "TRAINABLE",
    "ClipTrainer",
    "Example",
    "ImageReader",
    "Product",
    "TrainConfig",
    "TrainingRun",
    "batches_without_duplicates",
    "contrastive_loss",
    "held_out_evaluate",
    "product_pool",
    "split_by_query",
    "training_run",
    "triplets_load",
]
