"""Text and image encoders: the serving code's only package that touches torch and transformers.
`towers` (the Encoder protocol and its backends, load_encoder), `loading` (a model's parts by
hub id or folder, the hub probe, the device) and `pixels` (the image tower's input)."""

from .loading import (
    MODEL_TYPE_MODULES,
    REMOTE_CODE_MODELS,
    ClipParts,
    ModelUnavailableError,
    load_clip_parts,
    local_only,
    model_type_register,
    resolve_device,
)
from .pixels import MAX_ASPECT, PixelRecipe, image_array, image_central
from .towers import Encoder, JinaClipEncoder, TransformersClipEncoder, l2_normalize, load_encoder, tokenizer_words

__all__ = [
    "MAX_ASPECT",
    "MODEL_TYPE_MODULES",
    "REMOTE_CODE_MODELS",
    "ClipParts",
    "Encoder",
    "JinaClipEncoder",
    "ModelUnavailableError",
    "PixelRecipe",
    "TransformersClipEncoder",
    "image_array",
    "image_central",
    "l2_normalize",
    "load_clip_parts",
    "load_encoder",
    "local_only",
    "model_type_register",
    "resolve_device",
    "tokenizer_words",
]
