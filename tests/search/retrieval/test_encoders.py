from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from search.retrieval.encoders import ModelUnavailableError, load_encoder


def test_tiny_model_loads_through_the_production_loader(tiny_model_dir):
    encoder = load_encoder(str(tiny_model_dir), device="cpu")

    texts = encoder.encode_texts(["red striped mug", "blue cotton t-shirt"])
    images = encoder.encode_images([Image.new("RGB", (120, 80), "red")])

    assert encoder.model_id == str(tiny_model_dir)
    assert texts.shape == (2, encoder.dim) and images.shape == (1, encoder.dim)
    assert texts.dtype == np.float32 and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_batches_give_the_same_vectors_as_single_calls(encoder):
    texts = [f"product number {i}" for i in range(7)]
    together = encoder.encode_texts(texts, batch_size=3)
    alone = np.stack([encoder.encode_texts([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_and_empty_inputs(encoder):
    enormous = "very long description " * 5000
    vectors = encoder.encode_texts([enormous, "", "   "])
    assert vectors.shape == (3, encoder.dim)
    assert np.isfinite(vectors).all()
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_images([]).shape == (0, encoder.dim)


def test_text_beyond_the_token_limit_is_truncated_not_rejected(encoder):
    base = "red mug " * 40  # well past 77 tokens already
    assert np.allclose(encoder.encode_texts([base])[0], encoder.encode_texts([base + " blue lamp" * 50])[0])


def test_unavailable_model_says_which_setting_to_change(tmp_path):
    with pytest.raises(ModelUnavailableError) as excinfo:
        load_encoder(str(tmp_path / "no-such-model"), device="cpu")
    assert "SEARCH_EMBEDDING_MODEL" in str(excinfo.value)
    assert "build_tiny_model" in str(excinfo.value)


def test_a_siglip_checkpoint_loads_through_the_same_code(tmp_path, tiny_model_dir):
    """SigLIP shares the get_*_features interface; texts are padded to a fixed length."""
    from lab.tiny_model import build_tiny_siglip

    build_tiny_siglip(tmp_path, tokenizer_dir=tiny_model_dir, image_size=32, processor="clip")
    encoder = load_encoder(str(tmp_path), device="cpu")

    assert encoder.pad_to_max and encoder.max_length == 64
    texts = encoder.encode_texts(["red mug", "a much longer description of a blue vase"])
    images = encoder.encode_images([Image.new("RGB", (50, 50), "blue")])
    assert texts.shape == (2, 32) and images.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_a_hub_id_fails_at_once_when_the_hub_does_not_answer_and_names_the_offline_path(monkeypatch):
    from search.retrieval import encoders

    encoders.local_only.cache_clear()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    try:
        assert encoders.local_only("someorg/some-clip") is True  # no download attempted, no retries
        with pytest.raises(encoders.ModelUnavailableError) as failed:
            encoders.load_encoder("someorg/some-clip", device="cpu")
        assert "make demo-model" in str(failed.value) and "SEARCH_EMBEDDING_MODEL=var/demo-model" in str(failed.value)
    finally:
        encoders.local_only.cache_clear()
