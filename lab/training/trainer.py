"""The trainer: one CLIP-family model (CLIP, SigLIP or the offline two-tower model) fine-tuned
contrastively on examples, with the towers that learn chosen, gradient caching over chunks,
warm-up and checkpoints to resume from."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..metrics import mean
from .data import Example, ImageReader, Product, batches_without_duplicates
from .losses import contrastive_loss

logger = logging.getLogger(__name__)
TRAINABLE = ("text", "image", "projection", "all")
# parameter-name prefixes of each tower, shared by CLIP, SigLIP and the offline two-tower model
TEXT_TOWER = ("text_model", "text_projection")
IMAGE_TOWER = ("vision_model", "visual_projection")


@dataclass
class TrainConfig:
    train: str = "text"  # text | image | projection | all
    epochs: int = 3
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    precision: str = "auto"  # auto (half precision on CUDA) | fp32 | fp16 | bf16 (on any device)
    gradient_checkpointing: bool = False
    seed: int = 0
    # share of the optimiser steps over which the learning rate climbs linearly from 0 (then it
    # falls linearly to 0 at the end): a pretrained model is not shaken by the first steps
    warmup: float = 0.1
    # after each epoch the run is saved here (model, optimiser, schedule, random state), and a
    # run started again with the same folder goes on from the last saved epoch
    checkpoint_dir: str | None = None


class ClipTrainer:
    """Owns the model, tokenizer and image processor for one fine-tuning run."""

    def __init__(self, base: str, *, device: str = "auto"):
        import torch

        from search.retrieval.encoders import load_clip_parts, resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        # the serving loader, in fp32 (master weights; autocast does half precision)
        self.parts = load_clip_parts(base)
        self.model = self.parts.model.to(self.device)
        self.images = ImageReader()
        self.text_loss = True
        # query -> the keys of every product clicked for it (set by train)
        self.positives: dict[str, set[str]] = {}
        self.learns = {"text": False, "image": False}  # which tower has parameters that learn (set by _freeze)

    # --- embeddings -----------------------------------------------------------------
    def texts_embed(self, texts: Sequence[str]):
        batch = self.parts.tokenize(texts).to(self.device)
        return self.torch.nn.functional.normalize(self.model.get_text_features(**batch).float(), dim=-1)

    def images_embed(self, images: Sequence[Image.Image]):
        pixels = self.parts.pixels(images, device=self.device)
        return self.torch.nn.functional.normalize(self.model.get_image_features(pixel_values=pixels).float(), dim=-1)

    # --- training -------------------------------------------------------------------
    def _freeze(self, mode: str) -> list:
        if mode not in TRAINABLE:
            raise ValueError(f"--train must be one of {', '.join(TRAINABLE)}")
        for name, param in self.model.named_parameters():
            if mode == "all":
                param.requires_grad = True
            elif mode == "projection":
                param.requires_grad = name.startswith(("text_projection", "visual_projection"))
            else:
                param.requires_grad = name.startswith(TEXT_TOWER if mode == "text" else IMAGE_TOWER)
        # the text loss only moves the model when something on the text side can learn
        self.text_loss = any(p.requires_grad for n, p in self.model.named_parameters() if n.startswith(TEXT_TOWER))
        self.learns = {
            "text": self.text_loss,
            "image": any(p.requires_grad for n, p in self.model.named_parameters() if n.startswith(IMAGE_TOWER)),
        }
        return [p for p in self.model.parameters() if p.requires_grad]

    def _train_mode(self) -> None:
        """Train mode for what learns; a frozen tower stays in eval mode, so its dropout and
        batch-norm statistics do not turn fixed targets into noisy ones."""
        self.model.train()
        for child in self.model.children():
            if not any(p.requires_grad for p in child.parameters()):
                child.eval()

    def _columns(self, batch: Sequence[Example], negatives: Sequence[Product | None]):
        """The batch's products (each row's positive, then the hard negatives drawn) and the mask
        of what is no negative of a row: another copy of its own positive, and any other product
        clicked for the same query (`self.positives`), which is a right answer too."""
        products = [e.positive for e in batch] + [n for n in negatives if n is not None]
        keys = [p.key for p in products]
        mask = self.torch.tensor(
            [
                [
                    j != i and (keys[j] == e.positive.key or keys[j] in self.positives.get(e.query, ()))
                    for j in range(len(products))
                ]
                for i, e in enumerate(batch)
            ],
            device=self.device,
        )
        return products, mask

    def _inputs(self, batch: Sequence[Example], rng: random.Random):
        """The batch's products and mask (_columns) and its images, read now (ImageReader)."""
        # hard negatives: what the shopper skipped above the click, never a product clicked for the query
        negatives = [
            rng.choice(pool)
            if (pool := [n for n in e.negatives if n.key not in self.positives.get(e.query, ())])
            else None
            for e in batch
        ]
        products, same = self._columns(batch, negatives)
        with_image = [(j, img) for j, p in enumerate(products) if (img := self.images(p.image))]
        return products, same, with_image

    def _rng_state(self):
        cuda = self.device.type == "cuda"
        return self.torch.get_rng_state(), self.torch.cuda.get_rng_state(self.device) if cuda else None

    def _rng_restore(self, state) -> None:
        self.torch.set_rng_state(state[0])
        if state[1] is not None:
            self.torch.cuda.set_rng_state(state[1], self.device)

    def _embed(self, encode: Callable, items: Sequence, chunk: int, cached: bool):
        """Embeddings of `items`. Cached (a window larger than a micro-batch): computed in chunks
        without a graph, so memory holds one chunk's activations, each chunk's random state kept
        to compute it again identically in _backward_chunks (gradient caching)."""
        if not items:
            return None, None
        if not cached:
            return encode(items), None
        parts, states = [], []
        with self.torch.no_grad():
            for start in range(0, len(items), chunk):
                states.append(self._rng_state())
                parts.append(encode(items[start : start + chunk]))
        return self.torch.cat(parts).requires_grad_(), states

    def _backward_chunks(self, encode: Callable, items: Sequence, grad, states, chunk: int, autocast) -> None:
        """Each chunk computed again with its graph (and its random state: the same dropout) and
        back-propagated with the loss's gradient for its embeddings."""
        after = self._rng_state()
        for n, start in enumerate(range(0, len(items), chunk)):
            self._rng_restore(states[n])
            with autocast():
                out = encode(items[start : start + chunk])
            if out.requires_grad:
                out.backward(grad[start : start + chunk])
        self._rng_restore(after)

    def _step(self, window: Sequence[Example], rng: random.Random, *, chunk: int, autocast, scaler) -> float:
        """Gradients of one optimiser step's window: every row's negatives are the whole window's
        products, whatever the micro-batch size (a window over `chunk` is gradient-cached)."""
        cached = len(window) > chunk
        products, same, with_image = self._inputs(window, rng)
        sides = [
            (self.texts_embed, [e.query for e in window], self.learns["text"]),
            (self.texts_embed, [p.text for p in products] if self.text_loss else [], self.learns["text"]),
            (self.images_embed, [img for _, img in with_image], self.learns["image"]),
        ]
        with autocast():
            embedded = [self._embed(encode, items, chunk, cached) for encode, items, _ in sides]
            loss = contrastive_loss(
                embedded[0][0],
                embedded[1][0],
                embedded[2][0],
                same,
                with_image,
                scale=self.model.logit_scale.exp().clamp(max=100),
                weights=[e.weight for e in window],
            )
        if loss.requires_grad:
            scaler.scale(loss).backward()
            if cached:
                for (encode, items, learns), (vectors, states) in zip(sides, embedded):
                    if learns and vectors is not None and vectors.grad is not None:
                        self._backward_chunks(encode, items, vectors.grad, states, chunk, autocast)
        return float(loss.detach())

    def _schedule(self, optimizer, total: int, warmup: float):
        """Linear warm-up over `warmup` of the steps, then linear decay to 0."""
        warm = max(1, round(total * warmup)) if warmup > 0 else 0

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        return self.torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def train(
        self, examples: Sequence[Example], config: TrainConfig, progress: Callable[[int], None] | None = None
    ) -> list[float]:
        """Run the epochs; returns the mean loss of each epoch. `progress` is told the examples done.

        Each optimiser step sees a window of batch_size x grad_accum examples (no product twice,
        batches_without_duplicates) as one contrastive batch, computed batch_size at a time."""
        torch = self.torch
        rng = random.Random(config.seed)
        torch.manual_seed(config.seed)
        self.positives = {}
        for example in examples:
            self.positives.setdefault(example.query, set()).add(example.positive.key)
        params = self._freeze(config.train)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        cuda = self.device.type == "cuda"
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.precision)
        if config.precision == "auto" and cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # asked for by name, half precision runs on any device (autocast); "auto" only on CUDA
        use_amp = dtype is not None
        scaler = torch.amp.GradScaler(self.device.type, enabled=use_amp and dtype == torch.float16)

        def autocast():
            return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=use_amp)

        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        window = config.batch_size * config.grad_accum
        plan = [batches_without_duplicates(examples, window, rng) for _ in range(config.epochs)]
        scheduler = self._schedule(optimizer, sum(len(epoch) for epoch in plan), config.warmup)
        losses: list[float] = []
        checkpoint = Path(config.checkpoint_dir) / "checkpoint.pt" if config.checkpoint_dir else None
        if checkpoint is not None and checkpoint.exists():
            losses = self._resume(checkpoint, optimizer, scheduler, scaler)
            logger.info("Resumed from %s after epoch %d", checkpoint, len(losses))
            if progress:
                progress(len(examples) * len(losses))
        self._train_mode()
        for number in range(len(losses), config.epochs):
            epoch = []
            for batch in plan[number]:
                epoch.append(self._step(batch, rng, chunk=config.batch_size, autocast=autocast, scaler=scaler))
                # a window with nothing to learn from (--train image, no image in it) has no
                # gradient: a scaler step then raises ("_scale is None"), so none is taken
                if any(p.grad is not None for p in params):
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if progress:
                    progress(len(batch))
            losses.append(mean(epoch))
            if checkpoint is not None:
                self._checkpoint(checkpoint, optimizer, scheduler, scaler, losses)
        self.model.eval()
        return losses

    def _checkpoint(self, path: Path, optimizer, scheduler, scaler, losses: list[float]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        self.torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "losses": losses,
                "torch_rng": self._rng_state(),
            },
            partial,
        )
        partial.replace(path)  # a run killed while saving leaves the previous epoch's checkpoint whole

    def _resume(self, path: Path, optimizer, scheduler, scaler) -> list[float]:
        state = self.torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        self._rng_restore(state["torch_rng"])
        return list(state["losses"])

    def save(self, out_dir: str | Path, *, report: dict) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.parts.tokenizer.save_pretrained(out)
        self.parts.image_processor.save_pretrained(out)
        (out / "training.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        return out
