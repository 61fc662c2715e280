"""``relevance figures methods``: the CVPR 2021 comparison grid (Chefer et al., CVPR 2021, Fig. 1 and 4).

Rows are the inputs, columns every method that applies to the model (raw attention, rollout, attention Grad-CAM,
LRP, partial LRP, transformer attribution, gradient rollout, AttnLRP, CP-LRP, and LeGrad where it applies), each
drawn over the input as given, explaining the model's predicted class. Offline: held-out scenes of the shapes world
with the embedded ``shapes-vit``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from relevance.figures.inputs import (FigureRequest, FigureResult, default_images, display_image, display_overlay,
                                      explainable_methods, image_paths, load_model, prediction_label)
from relevance.figures.style import citation_caption, image_grid, method_title

TITLE = "rows = inputs, columns = every method (CVPR 2021 comparison grid)"
#: Inputs shown when none are given.
DEFAULT_INPUTS = 4


def make(request: FigureRequest) -> FigureResult:
    from relevance.images import load_image

    model, name = load_model(request)
    paths = image_paths(request.inputs) if request.inputs else default_images(name, DEFAULT_INPUTS)
    methods = explainable_methods(model, request.methods)
    images = [load_image(path) for path in paths]
    return method_grid(model, name, images, methods, start_layer=request.start_layer,
                       title=f"Every method on {len(images)} inputs ({name})")


def method_grid(model: Any, model_name: str, images: Sequence[np.ndarray], methods: Sequence[str], *,
                start_layer: int | None = None, title: str) -> FigureResult:
    """Draw inputs x methods, each map explaining the predicted class of its input.

    Returns
    -------
    FigureResult
        ``data``: ``methods``, ``targets`` (B,) the explained classes, ``maps`` {method: (B, h, w) raw maps} and
        ``start_layers`` {method: first block}.
    """
    import relevance

    explanations = {m: relevance.explain(model, list(images), method=m, start_layer=start_layer) for m in methods}
    first = explanations[methods[0]]
    rows = []
    for i in range(len(images)):
        rows.append([display_image(first.maps["image"], i)]
                    + [display_overlay(explanations[m].maps["image"], i) for m in methods])
    caption, numbers = citation_caption(methods, width=10_000)  # wrapped by image_grid
    starts = {m: e.start_layer for m, e in explanations.items() if e.start_layers}
    note = _start_note(starts)
    figure = image_grid(rows, column_titles=["Input"] + [f"{method_title(m)} [{numbers[m]}]" for m in methods],
                        row_labels=[f"explained:\n{prediction_label(first, i)}" for i in range(len(images))],
                        title=title, caption=f"Each row explains the model's predicted class.{note}\n{caption}")
    return FigureResult(figure, {"methods": list(methods), "targets": first.target.clone(),
                                 "maps": {m: e.relevance.clone() for m, e in explanations.items()},
                                 "start_layers": starts}, caption)


def _start_note(starts: dict[str, int]) -> str:
    if not starts:
        return ""
    layers = sorted(set(starts.values()))
    if len(layers) == 1:
        return f" Methods that chain blocks start at block {layers[0]}."
    return " Start blocks: " + ", ".join(f"{method_title(m)} {s}" for m, s in starts.items()) + "."
