"""LRP-aware re-implementations of transformer models, loading the weights of timm (and, later, Hugging Face
transformers and open_clip). Models are built from :mod:`relevance.layers`; methods live in :mod:`relevance`.

``load_model(name=None)`` is the one place that picks a model by name for the CLI and the demos;
``domain_warning(model, image)`` says when an image lies outside what a model knows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

#: The paper's model: Google's JAX ViT-B/16 (ImageNet-21k pre-trained, 1k fine-tuned), as ported by timm.
DEFAULT_HUB_MODEL = "vit_base_patch16_224.orig_in21k_ft_in1k"

#: Hub models the demos offer (when their weights are cached or the hub answers).
HUB_MODELS = {"ViT-B/16 (ImageNet)": DEFAULT_HUB_MODEL, "DeiT-B/16 (ImageNet)": "deit_base_patch16_224.fb_in1k"}


def load_model(name: str | None = None, *, checkpoint: str | Path | None = None, device: str = "cpu",
               quiet: bool = False, **timm_kwargs) -> nn.Module:
    """An LRP-aware model by name, in evaluation mode on ``device``.

    ``name``: a timm ViT/DeiT name (hub weights, or ``checkpoint``), ``"shapes-vit"`` (the embedded model
    trained by this project), or ``None``: the ImageNet ViT-B/16 when its weights are cached or the hub answers
    within seconds, else the embedded model, saying so in one line on stderr. ``timm_kwargs`` (e.g.
    ``num_classes``, ``img_size``) go to ``timm.create_model`` for timm names.
    """
    from relevance.models import embedded, hub, vit

    if name is None and checkpoint is None:
        available, reason = hub.weights_available(DEFAULT_HUB_MODEL)
        if available:
            name = DEFAULT_HUB_MODEL
        else:
            if not quiet:
                print(f"relevance: {reason}; using the embedded model {embedded.EMBEDDED_NAME!r} "
                      "(shapes world, see assets/shapes_vit/MODEL_CARD.md)", file=sys.stderr)
            name = embedded.EMBEDDED_NAME
    if name == embedded.EMBEDDED_NAME:
        if checkpoint is not None:
            raise ValueError("--checkpoint cannot be combined with the embedded model")
        return embedded.load_embedded(device=device)
    if name is None:
        raise ValueError("a checkpoint needs the timm model name of its architecture (--model NAME)")
    return vit.create(name, pretrained=True, checkpoint=checkpoint, **timm_kwargs).to(device).eval()


def _knows_only_shapes(model: nn.Module) -> bool:
    """Whether ``model`` was trained on the shapes world only: ``model.domain == "shapes"`` (set by
    :func:`relevance.models.embedded.load_embedded`), or, for a model built otherwise, the shapes world's
    classes with one sigmoid per class."""
    from relevance.data import SHAPE_CLASSES
    from relevance.models.embedded import SHAPES_DOMAIN

    domain = getattr(model, "domain", None)
    if domain is not None:
        return domain == SHAPES_DOMAIN
    names = getattr(model, "class_names", None)
    return bool(getattr(model, "multi_label", False)) and names is not None and tuple(names) == SHAPE_CLASSES


def domain_warning(model: nn.Module, image: Any) -> str | None:
    """A one-line warning when ``image`` (uint8 RGB (H, W, 3)) lies outside what ``model`` knows, else ``None``.

    Today one case: the embedded shapes model (or another model trained on the shapes world) given an image
    that does not look like a shapes scene (:func:`relevance.data.looks_like_shapes_scene`), such as a photo:
    it still predicts its classes with confidence, but its predictions and relevance maps mean nothing there.
    Models of other domains (ImageNet) get ``None``.
    """
    if not _knows_only_shapes(model):
        return None
    from relevance.data import looks_like_shapes_scene
    from relevance.models.embedded import EMBEDDED_NAME

    if looks_like_shapes_scene(image):
        return None
    return (f"not a shapes-world scene, the only kind of image the embedded model {EMBEDDED_NAME!r} knows: "
            "its predictions and relevance maps mean nothing here (use an ImageNet model for photos)")
