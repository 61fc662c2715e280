"""``relevance figures layers``: a method's map as ``start_layer`` moves from the first block to the last.

Transformer attribution, gradient rollout and rollout chain the blocks ``start_layer .. L-1`` (spec §2.1 step 7);
the CVPR 2021 notebooks start at 0, its quantitative scripts at 1, BERT's generator at 11 (spec §6.1 #9). One row
per input and method, one column per start layer, each explaining the predicted class. Offline: held-out shapes
scenes with the embedded ``shapes-vit`` (4 blocks).
"""

from __future__ import annotations

import torch

from relevance.figures.inputs import (FigureRequest, FigureResult, default_images, display_image, display_overlay,
                                      image_paths, load_model, prediction_label)
from relevance.figures.style import citation_caption, image_grid, method_title

TITLE = "a method's map as start_layer moves from the first block to the last"
#: Inputs shown when none are given.
DEFAULT_INPUTS = 2


def make(request: FigureRequest) -> FigureResult:
    import relevance
    from relevance.adapter import adapter_for
    from relevance.images import load_image

    model, name = load_model(request)
    methods = [relevance.get_method(m).name for m in (request.methods or ["transformer_attribution"])]
    chained = [m for m in methods if not relevance.get_method(m).uses_start_layer]
    if chained:
        raise ValueError(f"{', '.join(chained)} do not chain blocks (no start_layer); choose among "
                         + ", ".join(m for m in relevance.list_methods() if relevance.get_method(m).uses_start_layer))
    paths = image_paths(request.inputs) if request.inputs else default_images(name, DEFAULT_INPUTS)
    images = [load_image(p) for p in paths]
    depth = adapter_for(model).depths()["image"]
    explanations = {m: [relevance.explain(model, images, method=m, start_layer=s) for s in range(depth)]
                    for m in methods}
    first = explanations[methods[0]][0]
    rows, labels = [], []
    for i in range(len(images)):
        for m in methods:
            rows.append([display_image(first.maps["image"], i)]
                        + [display_overlay(e.maps["image"], i) for e in explanations[m]])
            labels.append(f"{method_title(m)}\nexplained:\n{prediction_label(first, i)}")
    titles = ["Input"] + [f"start {s}" + (" (all blocks)" if s == 0 else " (last block)" if s == depth - 1 else "")
                          for s in range(depth)]
    caption, _ = citation_caption(methods, width=10_000)
    figure = image_grid(rows, column_titles=titles, row_labels=labels, keys=False, label_width=1.05,
                        title=f"{', '.join(method_title(m) for m in methods)}: blocks start_layer .. {depth - 1} "
                              f"of {depth} ({name})",
                        caption=f"Column s chains the blocks s .. {depth - 1}; maps min-max normalised (jet). "
                                f"{caption}")
    data = {"methods": methods, "depth": depth, "targets": first.target.clone(),
            "maps": {m: torch.stack([e.relevance for e in explanations[m]]) for m in methods},
            "start_layers": {m: [e.start_layer for e in explanations[m]] for m in methods}}
    return FigureResult(figure, data, caption)
