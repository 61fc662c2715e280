"""LRP-aware re-implementations of transformer models, loading the weights of timm (and, later, Hugging Face
transformers and open_clip). Models are built from :mod:`relevance.layers`; methods live in :mod:`relevance`.

``create(name)`` and ``list_models()`` (:mod:`relevance.models.registry`) cover embedded models and hub names of
every family; converters live beside their model (``vit.from_timm``). ``load_model`` is ``create`` with hub
weights, for the CLI and the demos.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

from relevance.models.registry import UnknownModelError, create, list_models

#: The paper's model: Google's JAX ViT-B/16 (ImageNet-21k pre-trained, 1k fine-tuned), as ported by timm.
DEFAULT_HUB_MODEL = "vit_base_patch16_224.orig_in21k_ft_in1k"

#: Hub models the demos offer (when their weights are cached or the hub answers).
HUB_MODELS = {"ViT-B/16 (ImageNet)": DEFAULT_HUB_MODEL, "DeiT-B/16 (ImageNet)": "deit_base_patch16_224.fb_in1k"}


def load_model(name: str | None = None, *, checkpoint: str | Path | None = None, device: str = "cpu",
               quiet: bool = False, **kwargs) -> nn.Module:
    """An LRP-aware model by name, in evaluation mode on ``device``: :func:`relevance.models.create` with hub
    weights (``pretrained=True``). ``None``: the ImageNet ViT-B/16 when its weights are cached or the hub answers
    within seconds, else the embedded shapes model, saying so in one line on stderr."""
    return create(name, pretrained=True, checkpoint=checkpoint, device=device, quiet=quiet, **kwargs)
