"""The image tower's preprocessing as tensor ops (issue 15): the embeddings a product gets are the
ones the model's own image processor would give it, within rounding, for CLIP and SigLIP, from
photos decoded only as large as the model needs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from django.core.exceptions import ValidationError
from PIL import Image

from catalog.images import image_load
from lab.photos import photo_jpeg
from lab.tiny_model import build_tiny_siglip
from search.retrieval.encoders import PixelRecipe, image_array, image_central, load_encoder

# 1000 px square, landscape, portrait, a strip past the aspect limit, one just over the model's size
PHOTOS = [(1000, 1000, 1), (1200, 800, 2), (800, 1100, 3), (300, 1400, 4), (40, 36, 5)]


def _drawn_png() -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (64, 64), "white")
    image.paste((200, 30, 30), (10, 10, 50, 54))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _reference(encoder, data: bytes) -> np.ndarray:
    """What the processor itself makes of the whole decoded image, through the model."""
    image = image_central(image_load(data).image)
    pixels = encoder.parts.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        vector = encoder.model.get_image_features(pixel_values=pixels).numpy()[0]
    return vector / np.linalg.norm(vector)


def _indexed(encoder, data: bytes) -> np.ndarray:
    """What the indexer makes of it: decoded in a thread at the draft size, then the recipe."""
    return encoder.encode_images([image_array(image_load(data, draft=encoder.image_draft_size()).image)])[0]


def _cosines(encoder) -> list[float]:
    samples = [photo_jpeg(w, h, seed=seed) for w, h, seed in PHOTOS] + [_drawn_png()]
    return [float(_reference(encoder, data) @ _indexed(encoder, data)) for data in samples]


@pytest.fixture
def siglip_dir(tmp_path, tiny_model_dir):
    # SigLIP's own processor: squeezed to an exact square, no crop, mean and std 0.5
    return build_tiny_siglip(tmp_path, tokenizer_dir=tiny_model_dir, image_size=48, vision_layers=2)


def test_clip_embeddings_from_the_tensor_path_match_the_processor(tiny_model_dir):
    encoder = load_encoder(str(tiny_model_dir), device="cpu")
    assert encoder.parts.recipe is not None, "the tiny CLIP's processor should have a tensor recipe"
    cosines = _cosines(encoder)
    assert min(cosines) >= 0.999, cosines


def test_siglip_embeddings_from_the_tensor_path_match_the_processor(siglip_dir):
    encoder = load_encoder(str(siglip_dir), device="cpu")
    assert encoder.parts.recipe is not None and encoder.parts.recipe.exact == (48, 48)
    cosines = _cosines(encoder)
    assert min(cosines) >= 0.999, cosines


def test_recipe_pixels_are_the_processors_within_one_level(tiny_model_dir, siglip_dir):
    """Without the draft, the tensors differ from the processor's by at most one 8-bit level
    (rounding), for both processors, on a photo and on a drawn image."""
    for folder in (tiny_model_dir, siglip_dir):
        encoder = load_encoder(str(folder), device="cpu")
        processor = encoder.parts.image_processor
        one_level = max(processor.rescale_factor / s for s in processor.image_std) + 1e-4
        for data in (photo_jpeg(900, 700, seed=9), _drawn_png()):
            image = image_central(image_load(data).image)
            expected = processor(images=[image], return_tensors="pt")["pixel_values"]
            got = encoder.parts.recipe.pixels([image_array(image)])
            assert got.shape == expected.shape
            assert float((got - expected).abs().max()) <= one_level


def test_a_photo_is_decoded_only_as_large_as_the_model_needs_and_a_truncated_one_still_fails():
    data = photo_jpeg(1000, 1000, seed=1)
    drafted = image_load(data, draft=(224, 224)).image
    assert drafted.size == (250, 250)  # libjpeg's 1/4 scale: the least size still >= 224
    assert image_load(data, draft=(600, 600)).image.size == (1000, 1000)  # 1/2 would be too small
    assert image_load(data).image.size == (1000, 1000)
    # never below a quarter: at 1/8 libjpeg keeps block averages only (a tiny model's photo moved 0.2%)
    assert image_load(data, draft=(32, 32)).image.size == (250, 250)
    with pytest.raises(ValidationError, match="corrupt or truncated"):
        image_load(data[: len(data) // 2], draft=(224, 224))


def test_a_processor_with_steps_the_recipe_lacks_runs_itself(tiny_model_dir, tmp_path):
    """A nearest-neighbour resize has no antialiased torch twin: the processor itself runs."""
    import shutil

    from transformers import CLIPImageProcessor

    folder = tmp_path / "nearest"
    shutil.copytree(tiny_model_dir, folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, resample=Image.Resampling.NEAREST
    ).save_pretrained(folder)
    encoder = load_encoder(str(folder), device="cpu")
    assert encoder.parts.recipe is None and encoder.image_draft_size() is None
    data = photo_jpeg(400, 300, seed=7)
    assert float(_reference(encoder, data) @ _indexed(encoder, data)) == pytest.approx(1.0, abs=1e-5)


def test_recipe_of_unknown_processor_is_none():
    class Padder:  # some other model family's processor
        size = {"shortest_edge": 224}

    assert PixelRecipe.of(Padder()) is None
