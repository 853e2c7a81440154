"""Photo-like JPEGs for benchmarks and tests: what a catalog's product photos cost to decode.

A drawn sample image (lab/sample.py) is small and flat; a shop's photos are 800-1200 px JPEGs
with smooth shading, edges and sensor noise, and decoding them is most of the work an indexer
does on a CPU. These have that size, that texture and that file size (about 100-250 KB).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_jpeg(width: int, height: int, *, seed: int, quality: int = 90) -> bytes:
    """A width x height JPEG: a shaded backdrop, a lit object with soft edges, a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    backdrop = rng.uniform(150, 235, 3)
    shade = 1.0 - 0.35 * ((x / width - rng.uniform(0.2, 0.8)) ** 2 + (y / height - 0.3) ** 2)
    pixels = backdrop[None, None, :] * shade[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(20, 220, 3))
    left, top = int(width * rng.uniform(0.15, 0.35)), int(height * rng.uniform(0.15, 0.35))
    right, bottom = int(width * rng.uniform(0.65, 0.85)), int(height * rng.uniform(0.65, 0.9))
    if seed % 2:
        draw.ellipse((left, top, right, bottom), fill=colour)
    else:
        draw.rounded_rectangle((left, top, right, bottom), radius=min(width, height) // 12, fill=colour)
    highlight = tuple(min(255, c + 60) for c in colour)
    draw.ellipse(
        (left + (right - left) // 5, top + (bottom - top) // 6, left + (right - left) // 3, top + (bottom - top) // 3),
        fill=highlight,
    )
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, min(width, height) // 300)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def photo_sizes(count: int, *, seed: int) -> list[tuple[int, int]]:
    """Sizes a catalog's photos come in: 800-1200 px each side, some square, some not."""
    rng = np.random.default_rng(seed)
    sizes = []
    for _ in range(count):
        side = int(rng.integers(800, 1201))
        sizes.append((side, side) if rng.random() < 0.5 else (side, int(rng.integers(800, 1201))))
    return sizes
