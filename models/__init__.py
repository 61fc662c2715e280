"""LRP-aware re-implementations of transformer models, loading the weights of timm (and, later, Hugging Face
transformers and open_clip). Models are built from :mod:`relevance.layers`; methods live in :mod:`relevance`.

``load_model(name=None)`` is the one place that picks a model by name for the CLI and the demos.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
