"""One training run as the commands make it: measure, train with progress, measure, save."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from .data import Example, Product
from .evaluation import held_out_evaluate
from .trainer import ClipTrainer, TrainConfig


@dataclass
class TrainingRun:
    """What one run measured: held-out metrics before and after training, the loss per epoch,
    and where the trained model was saved."""

    before: dict[str, float]
    after: dict[str, float]
    losses: list[float]
    out: Path

    def markdown(self, heading: str, labels: tuple[str, str] = ("before", "after")) -> str:
        lines = [f"| {heading} | Recall@1 | Recall@10 | MRR |", "|---|---|---|---|"]
        for label, m in zip(labels, (self.before, self.after)):
            lines.append(f"| {label} | {m['recall@1']:.3f} | {m['recall@10']:.3f} | {m['mrr']:.3f} |")
        return "\n".join(lines + ["", f"Loss per epoch: {', '.join(f'{x:.3f}' for x in self.losses)}"])


def training_run(
    trainer: ClipTrainer,
    *,
    train: Sequence[Example],
    held: Sequence[Example],
    pool: Sequence[Product],
    config: TrainConfig,
    weights: dict[str, float],
    out_dir: str | Path,
    report: dict,
    report_keys: tuple[str, str] = ("before", "after"),
    desc: str = "train",
    quiet: bool = False,
) -> TrainingRun:
    """Measure the held-out examples, train (with a progress bar), measure again, and save the
    model with training.json: `report` plus the configuration, the losses and both measurements
    (under `report_keys`). Shared by finetune_model and train_demo_model.

    Args:
        trainer: holds the model being trained.
        train, held: the training examples and the held-out ones it never sees.
        pool: the products each held-out query is ranked over.
        config: epochs, batch size, learning rate, which towers learn.
        weights: the fusion weights the held-out ranking uses (as the search does).
        out_dir: the model directory to write.
        report: what the caller records about the run (data, base model, counts).
    Returns:
        The measurements, the losses and the saved directory.
    """
    before = held_out_evaluate(trainer, held, pool, weights=weights)
    with tqdm(total=config.epochs * len(train), desc=desc, unit="example", disable=quiet) as bar:
        losses = trainer.train(train, config, progress=bar.update)
    after = held_out_evaluate(trainer, held, pool, weights=weights)
    out = trainer.save(
        out_dir,
        report={**report, "config": asdict(config), "losses": losses, report_keys[0]: before, report_keys[1]: after},
    )
    return TrainingRun(before=before, after=after, losses=losses, out=out)
