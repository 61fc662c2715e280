"""The embedded default model: a small ViT trained on the shapes world (``relevance.data.shapes``).

It ships in ``assets/shapes_vit/`` (``config.json`` + ``model.safetensors`` + ``MODEL_CARD.md``) and
is used whenever no hub weights are reachable or cached, so that explanations work offline.
``demos/train_shapes.py`` reproduces the weights (the exact command is in the model card).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EMBEDDED_NAME",
    "SHAPES_DOMAIN",
    "EMBEDDED_DIR",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "build_timm_model",
    "load_config",
    "load_embedded",
    "load_timm_embedded",
]

EMBEDDED_NAME = "shapes-vit"
#: ``model.domain`` of the models trained on the shapes world (see :func:`relevance.models.domain_warning`).
SHAPES_DOMAIN = "the procedural shapes world"
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes_vit"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def load_config(directory: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    """Read ``config.json`` (keys: ``model`` timm kwargs, ``class_names``, ``data_config``, ``training``)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"embedded model config not found: {path}")
    config = json.loads(path.read_text())
    for key in ("model", "class_names", "data_config"):
        if key not in config:
            raise ValueError(f"{path} lacks the key {key!r}")
    return config


def build_timm_model(model_kwargs: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised timm ``VisionTransformer`` with the given constructor kwargs."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**model_kwargs)


def load_timm_embedded(directory: str | Path = EMBEDDED_DIR, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The embedded model as a plain timm ``VisionTransformer`` (eval mode), weights loaded with safetensors."""
    from relevance.models.vit import load_checkpoint

    directory = Path(directory)
    config = load_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"embedded model weights not found: {weights}")
    model = build_timm_model(config["model"])
    load_checkpoint(model, weights)  # the one safe loader: a mismatch names the keys
    return model.to(device).eval()


def _data_config(config: dict[str, Any]):
    from relevance.images import DataConfig

    dc = config["data_config"]
    return DataConfig(
        input_size=tuple(dc["input_size"]),
        mean=tuple(dc["mean"]),
        std=tuple(dc["std"]),
        interpolation=dc.get("interpolation", "bilinear"),
        crop_pct=dc.get("crop_pct", 1.0),
        crop_mode=dc.get("crop_mode", "squash"),
    )


def load_embedded(device: str | torch.device = "cpu", directory: str | Path = EMBEDDED_DIR) -> torch.nn.Module:
    """The embedded shapes ViT as the LRP-aware ``models.vit.VisionTransformer`` (eval mode).

    Its ``data_config`` (squash-resize to 64x64, crop_pct 1.0, mean = std = 0.5) and
    ``class_names`` (``relevance.data.SHAPE_CLASSES``) come from ``config.json``; ``multi_label`` is True
    (one sigmoid per class: a class is predicted when its logit is positive); ``domain`` is
    :data:`SHAPES_DOMAIN` (it knows synthetic shapes scenes only: see :func:`relevance.models.domain_warning`).
    """
    from relevance.adapter import ModelInfo
    from relevance.models.vit import from_timm

    config = load_config(directory)
    model = from_timm(load_timm_embedded(directory, "cpu"))
    from relevance.data import looks_like_shapes_scene

    model.info = ModelInfo(name=EMBEDDED_NAME, output="class_logits", class_names=list(config["class_names"]),
                           multi_label=bool(config.get("multi_label", True)),  # one sigmoid per class
                           data_config=_data_config(config), domain=SHAPES_DOMAIN, in_domain=looks_like_shapes_scene)
    return model.to(device).eval()


def _register() -> None:
    from relevance.models.registry import Embedded, register_embedded

    register_embedded(Embedded(EMBEDDED_NAME, "image", load_embedded,
                               "a small ViT trained on the shapes world, see assets/shapes_vit/MODEL_CARD.md"))


_register()
