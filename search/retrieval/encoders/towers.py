"""The encoders: a model's two towers behind one protocol (Encoder), for native transformers
CLIP and SigLIP checkpoints and Jina CLIP's remote code. Every backend returns float32 arrays of
shape (n, dim), L2-normalised, so that a dot product is a cosine everywhere downstream."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from .loading import REMOTE_CODE_MODELS, load_clip_parts, local_only, model_unavailable, resolve_device
from .pixels import image_rgb

logger = logging.getLogger(__name__)


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
                model_id, trust_remote_code=True, local_files_only=local_only(model_id)
            )
        except (OSError, ValueError, ImportError) as exc:
            raise model_unavailable(model_id, exc) from exc
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
            vectors = self.model.encode_image(
                [image_rgb(im) for im in images], batch_size=batch_size or self.batch_size
            )
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
