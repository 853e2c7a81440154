"""A transparent encoder with CLIP's geometry, for ranking tests.

Real CLIP weights cannot be downloaded here and the tiny random model ranks at random, so
ranking behaviour is tested with vectors we can reason about. Every vector is
normalise(BIAS * tower direction + concepts): the shared tower direction makes text-text
cosines high and bunched (~0.9) and text-image cosines low and narrow (~0.1), as CLIP's are.
Images are recognised by their pixels, registered by the test that draws them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

CONCEPTS = ["red", "blue", "green", "mug", "vase", "scarf", "ceramic", "glass", "wool", "lamp", "sock"]
DIM = len(CONCEPTS) + 2
TEXT_AXIS, IMAGE_AXIS = len(CONCEPTS), len(CONCEPTS) + 1
BIAS = 3.0


def _concepts(words: Sequence[str]) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    for word in words:
        word = word.lower().rstrip("s") if word.lower() not in CONCEPTS else word.lower()
        if word in CONCEPTS:
            vector[CONCEPTS.index(word)] += 1.0
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class ConceptEncoder:
    model_id = "test/concept-encoder"
    dim = DIM

    def __init__(self) -> None:
        self.images: dict[str, list[str]] = {}

    def picture(self, *concepts: str, size: int = 48) -> Image.Image:
        """Draw a distinct image and remember what it shows."""
        seed = int(hashlib.sha256(" ".join(concepts).encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        self.images[self._key(image)] = list(concepts)
        return image

    @staticmethod
    def _key(image: Image.Image | np.ndarray) -> str:
        # the indexer hands over RGB arrays (decoded in its threads), a photo search a PIL image
        pixels = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"))
        return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        rows = []
        for text in texts:
            base = np.zeros(DIM, dtype=np.float32)
            base[TEXT_AXIS] = BIAS
            rows.append(_unit(base + _concepts(re.findall(r"[a-zA-Z]+", text))))
        return np.stack(rows) if rows else np.zeros((0, DIM), np.float32)

    def encode_images(self, images: Sequence[Image.Image], *, batch_size: int | None = None) -> np.ndarray:
        rows = []
        for image in images:
            base = np.zeros(DIM, dtype=np.float32)
            base[IMAGE_AXIS] = BIAS
            rows.append(_unit(base + _concepts(self.images.get(self._key(image), []))))
        return np.stack(rows) if rows else np.zeros((0, DIM), np.float32)
