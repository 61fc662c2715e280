"""The embedded image-text model: a small CLIP trained on the shapes world's scenes and captions.

It ships in ``assets/shapes_clip/`` (``config.json``, ``model.safetensors``, ``MODEL_CARD.md``) and is the
image-text default when no hub CLIP is cached or reachable, so that image-text explanations work offline.
``demos/train_shapes_clip.py`` reproduces the weights (the exact command is in the model card). Its tokenizer is
the captions' closed word vocabulary (:data:`relevance.data.shapes_captions.VOCABULARY`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

EMBEDDED_NAME = "shapes-clip"
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes_clip"


def load_config(directory: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """``config.json``: ``model`` (a :class:`relevance.models.clip.CLIPConfig` as a dict), ``tokenizer``,
    ``data_config``, ``training``, ``metrics``."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"embedded model config not found: {path}")
    config = json.loads(path.read_text())
    for key in ("model", "tokenizer", "data_config"):
        if key not in config:
            raise ValueError(f"{path} lacks the key {key!r}")
    return config


def load_shapes_clip(device: str | torch.device = "cpu", directory: str | Path = EMBEDDED_DIR) -> torch.nn.Module:
    """The shapes CLIP (:class:`relevance.models.clip.CLIP`, evaluation mode), weights loaded with safetensors.

    Like the shapes ViT, it declares its domain: an image that does not look like a shapes scene
    (:func:`relevance.data.looks_like_shapes_scene`, e.g. a photo) gets a warning in ``Explanation.warnings``.
    """
    from relevance.adapter import ModelInfo
    from relevance.data import looks_like_shapes_scene
    from relevance.images import DataConfig
    from relevance.models.clip import CLIP, CLIP_CONVENTIONS, CLIPConfig, load_weights
    from relevance.models.clip_text import WordTokenizer

    directory = Path(directory)
    config = load_config(directory)
    if config["tokenizer"].get("kind") != "words":
        raise ValueError(f"unknown tokenizer {config['tokenizer'].get('kind')!r} in {directory / 'config.json'}")
    model = CLIP(CLIPConfig.from_dict(config["model"]))
    load_weights(model, directory / "model.safetensors")
    data = config["data_config"]
    model.info = ModelInfo(
        name=EMBEDDED_NAME, output="pair_logits", conventions=CLIP_CONVENTIONS,
        data_config=DataConfig(input_size=tuple(data["input_size"]), mean=tuple(data["mean"]), std=tuple(data["std"]),
                               interpolation=data.get("interpolation", "bilinear"), crop_pct=data.get("crop_pct", 1.0),
                               crop_mode=data.get("crop_mode", "squash")),
        tokenizer=WordTokenizer(config["tokenizer"]["words"]), domain="the procedural shapes world",
        in_domain=looks_like_shapes_scene)
    return model.to(device).eval()


def _register() -> None:
    from relevance.models.registry import Embedded, register_embedded

    register_embedded(Embedded(EMBEDDED_NAME, "image-text", load_shapes_clip,
                               "a small CLIP trained on the shapes world's scenes and captions, see "
                               "assets/shapes_clip/MODEL_CARD.md"))


_register()
