"""What the image protocols of the papers share: the methods evaluated, their start layers, the maps, Markdown.

The protocols themselves are :mod:`~relevance.evaluation.segmentation_protocol` (CVPR 2021 Table 1) and
:mod:`~relevance.evaluation.perturbation_protocol` (Table 2); :mod:`~relevance.evaluation.sharding` runs them over
a dataset on one or several processes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from relevance.evaluation.paper_numbers import PAPER_START_LAYER

__all__ = [
    "DEFAULT_METHODS",
    "as_numpy",
    "explained_maps",
    "markdown_table",
    "resolve_methods",
    "start_layers_for",
]

#: The methods the image protocols evaluate by default: the six of CVPR 2021's tables, gradient rollout
#: (ICCV 2021), AttnLRP and CP-LRP.
DEFAULT_METHODS: tuple[str, ...] = ("attention", "rollout", "attention_gradcam", "lrp", "partial_lrp",
                                    "transformer_attribution", "gradient_rollout", "attnlrp", "cp_lrp")


def resolve_methods(methods: Sequence[str] | None) -> list[str]:
    """Canonical method names (aliases resolved, duplicates dropped); ``None`` gives :data:`DEFAULT_METHODS`."""
    import relevance

    names = list(DEFAULT_METHODS) if not methods else [relevance.get_method(m).name for m in methods]
    return list(dict.fromkeys(names))


def start_layers_for(methods: Sequence[str], depth: int, override: int | None = None) -> dict[str, int]:
    """``start_layer`` of every method that chains blocks: the papers' scripts (1 for transformer attribution and
    rollout, 0 for gradient rollout, spec §2.1) unless ``override``; clipped to the model's ``depth``."""
    import relevance

    layers = {}
    for name in methods:
        if relevance.get_method(name).uses_start_layer:
            start = PAPER_START_LAYER.get(name, 0) if override is None else int(override)
            if not 0 <= start < depth:
                raise ValueError(f"start layer {start} does not lie in 0..{depth - 1} for this {depth}-block model")
            layers[name] = start
    return layers


def explained_maps(model: Any, pixels: Tensor, method: str, target: Tensor | None, start_layer: int | None,
                   size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """One method's raw maps at the image resolution, and the explained classes.

    Parameters
    ----------
    model:
        An LRP-aware image classifier.
    pixels:
        (B, 3, H, W) normalised model input.
    method:
        A method name.
    target:
        (B,) the classes to explain, or ``None`` for each image's predicted class.
    start_layer:
        For methods that chain blocks (``None``: the engine's default).
    size:
        (H, W) of the output: patch maps are upsampled bilinearly (``align_corners=False``, as the reference's
        ``F.interpolate(scale_factor=16, mode="bilinear")``); pixel maps (full LRP) are kept as they are.

    Returns
    -------
    tuple
        Maps (B, H, W) float32 (raw: not normalised) and the explained classes (B,).
    """
    import relevance
    from relevance.render import upsample

    explanation = relevance.explain(model, pixels, method=method, target=target, start_layer=start_layer)
    maps = explanation.relevance.detach().float()
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = upsample(maps, tuple(size))
    return maps, explanation.target.detach()


def _cell(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A Markdown table; floats with ``digits`` decimals, ``None`` and NaN as an em dash."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def as_numpy(tensor: Tensor) -> np.ndarray:
    """A CPU numpy copy of a tensor."""
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
