"""LRP-aware re-implementations of transformer models, loading the weights of timm (and, later, Hugging Face
transformers and open_clip). Models are built from :mod:`relevance.layers`; methods live in :mod:`relevance`.

``create(name)`` and ``list_models()`` (:mod:`relevance.models.registry`) cover embedded models and hub names of
every family; converters live beside their model (``vit.from_timm``). ``load_model`` is ``create`` with hub
weights, for the CLI and the demos; ``domain_warning(model, image)`` says when an input lies outside what a model
knows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


def domain_warning(model: nn.Module, image: Any) -> str | None:
    """A one-line warning when ``image`` (uint8 RGB (H, W, 3), or a text) lies outside what ``model`` knows, else
    ``None``.

    A model trained on a narrow domain declares it in its :class:`relevance.adapter.ModelInfo` (``domain`` and an
    ``in_domain`` check): the embedded shapes model, given a photo, still predicts its classes with confidence,
    but its predictions and relevance maps mean nothing there. Models of broad domains (ImageNet) get ``None``.
    """
    from relevance.adapter import adapter_for

    info = adapter_for(model).info
    if info.in_domain is None or info.in_domain(image):
        return None
    name = f"the embedded model {info.name!r}" if info.name else "this model"
    return (f"not from {info.domain or 'its training domain'}, the only kind of input {name} knows: its "
            "predictions and relevance maps mean nothing here")
