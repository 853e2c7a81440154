"""A small, randomly initialised CLIP that loads through the production loader.

Used by the tests and by anyone without access to the Hugging Face hub. Its weights are
random, so its rankings are random too: it proves the plumbing, not the quality.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

# Words the tokenizer learns merges from: enough for product titles to be tokenised into
# word pieces rather than single characters.
CORPUS = """
red blue green yellow black white orange purple pink grey brown navy beige
striped dotted checked plain floral solid pattern cotton leather wool ceramic glass steel
wood linen denim silk canvas plastic bamboo mug cup shirt t-shirt tee sneaker shoe shoes
running sneakers boot bag backpack tote lamp vase cap hat sock socks scarf bottle plate bowl
chair table pillow cushion blanket towel jacket dress skirt watch wallet belt glove
the a an and with for of in on to by from small large medium classic modern soft warm
light dark bright new sale men women kids home kitchen office outdoor sport travel
""".split()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte-to-printable-character table (as in the original tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE over word frequencies, with CLIP's end-of-word marker on the last symbol."""
    vocab = Counter()
    for word in words:
        symbols = list(word)
        symbols[-1] += "</w>"
        vocab[tuple(symbols)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for symbols, freq in vocab.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += freq
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        merged: Counter = Counter()
        for symbols, freq in vocab.items():
            out, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += freq
        vocab = merged
    return merges


# Shapes of the towers. "vit-b-32" has the architecture of openai/clip-vit-base-patch32
# (random weights): the same compute per item, for speed benchmarks without the hub.
PRESETS = {
    "tiny": {
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
        "vision": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": 8,
        },
        "image_size": 32,
        "dim": 32,
    },
    "vit-b-32": {
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 32,
        },
        "image_size": 224,
        "dim": 512,
    },
}


def build_tiny_clip(
    out_dir: str | Path,
    *,
    seed: int = 0,
    dim: int | None = None,
    preset: str = "tiny",
    extra_words: list[str] | None = None,
) -> Path:
    """Write a random CLIPModel, CLIPTokenizer(Fast) and CLIPImageProcessor to out_dir."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_tokenizer(out / "_tokenizer_src", extra_words)
    torch.manual_seed(seed)
    eos = vocab["<|endoftext|>"]
    shape = PRESETS[preset]
    image_size = shape["image_size"]
    config = CLIPConfig(
        text_config={
            **shape["text"],
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={**shape["vision"], "image_size": image_size},
        projection_dim=dim or shape["dim"],
    )
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "README.md").write_text(
        "Tiny randomly initialised CLIP written by `manage.py build_tiny_model`.\n"
        "It loads like any CLIP checkpoint, but its rankings are random.\n",
        encoding="utf-8",
    )
    return out


def _tiny_tokenizer(tok_dir: Path, extra_words: list[str] | None):
    """A byte-level BPE tokenizer learnt from the corpus (and `extra_words`), and its vocabulary;
    its source files are written to `tok_dir` and removed once loaded."""
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    words = [w.lower() for w in CORPUS + list(extra_words or []) if re.fullmatch(r"[a-z\-]+", w.lower())]
    merges = _learn_merges(words * 2, num_merges=400)
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tok_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    slow = CLIPTokenizer(
        vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"), model_max_length=77
    )
    slow.save_pretrained(tok_dir)
    tokenizer = CLIPTokenizerFast.from_pretrained(tok_dir, model_max_length=77)
    for leftover in tok_dir.iterdir():
        leftover.unlink()
    tok_dir.rmdir()
    return tokenizer, vocab


def build_tiny_siglip(
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path,
    image_size: int = 32,
    seed: int = 0,
    vision_layers: int = 1,
    processor: str = "siglip",
) -> Path:
    """Write a random SiglipModel with a tiny CLIP's tokenizer to out_dir, and SigLIP's own image
    processor (squeezed to an exact square, no crop, mean and std 0.5), or CLIP's (`processor="clip"`)."""
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, SiglipConfig, SiglipImageProcessor, SiglipModel

    out = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size + 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
    )
    SiglipModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    if processor == "clip":
        CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ).save_pretrained(out)
    else:
        SiglipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(out)
    return out
