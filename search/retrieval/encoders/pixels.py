"""Pixels for the image tower: an image's middle as RGB arrays, and a CLIP or SigLIP image
processor's resize, crop and normalise as tensor ops on the model's device (PixelRecipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


def image_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    return Image.fromarray(image) if isinstance(image, np.ndarray) else image.convert("RGB")


def image_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """RGB uint8 pixels (height, width, 3) of the image's middle (see `image_central`): what a decoding
    thread hands the encoder."""
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(image_central(image.convert("RGB")))


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


def image_central(image: Image.Image) -> Image.Image:
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
