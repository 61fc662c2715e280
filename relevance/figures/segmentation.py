"""``relevance figures segmentation``: the ImageNet-Segmentation test of CVPR 2021 (spec §5.2), image by image.

First column: the input with its ground-truth mask outlined (white). Then one column per method: its map of the
predicted class (min-max normalised, jet) with the outline of its mean-threshold mask (white), the binarisation the
test scores; the JSON beside the pictures gives each cell's foreground IoU. ``relevance evaluate --protocol
imagenet-seg`` draws it for the first images of ``gtsegs_ijcv.mat``; offline it runs on held-out shapes scenes, the
object of the predicted class being the ground truth.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from relevance.figures.inputs import FigureRequest, FigureResult, load_model
from relevance.figures.style import citation_caption, image_grid, method_title
from relevance.render.image import mask_edge

TITLE = "the segmentation test: ground truth, each method's map and its mean-threshold mask"
#: Scenes shown offline when ``--samples`` is not given.
DEFAULT_SCENES = 3
_DISPLAY = 224


def outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``image`` (H, W, 3) with the boundary pixels of ``mask`` (resized to the image, nearest) drawn in ``colour``."""
    big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.shape[1::-1],
                                                                            Image.Resampling.NEAREST)) > 0
    edge = mask_edge(big)
    thick = edge.copy()
    thick[1:] |= edge[:-1]
    thick[:, 1:] |= edge[:, :-1]
    result = image.copy()
    result[thick] = colour
    return result


def segmentation_examples(model: Any, images01: torch.Tensor, masks: torch.Tensor, methods: Sequence[str],
                          start_layers: Mapping[str, int], normalize: Callable[[torch.Tensor], torch.Tensor],
                          title: str | None = None):
    """The figure for a batch of images (B, 3, H, W) in [0, 1] with ground-truth masks (B, H, W)."""
    return _examples(model, images01, masks, methods, start_layers, normalize, title).figure


def _examples(model, images01, masks, methods, start_layers, normalize, title=None) -> FigureResult:
    from relevance.evaluation.protocols import explained_maps
    from relevance.evaluation.segmentation import binarize, normalize_map, segmentation_statistics
    from relevance.render import overlay

    size = tuple(masks.shape[-2:])
    pixels = normalize(images01)
    originals = [np.asarray(Image.fromarray((x.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
                            .resize((_DISPLAY, _DISPLAY), Image.Resampling.BICUBIC)) for x in images01]
    truth = masks.cpu().numpy() > 0
    rows = [[outline(originals[i], truth[i])] for i in range(len(originals))]
    ious: dict[str, list[float]] = {}
    targets = None
    for method in methods:
        maps, targets = explained_maps(model, pixels, method, None, start_layers.get(method), size)
        maps01 = normalize_map(maps.cpu())
        predicted = binarize(maps01).numpy()
        stats = segmentation_statistics(maps.cpu(), masks.cpu())
        ious[method] = (stats["intersection"][:, 1] / np.maximum(stats["union"][:, 1], 1)).tolist()
        for i in range(len(originals)):
            rows[i].append(outline(overlay(originals[i], maps01[i], colormap="jet", alpha=0.5), predicted[i]))
    from relevance.adapter import adapter_for

    names = adapter_for(model).info.class_names
    labels = [f"predicted:\n{names[int(c)] if names else int(c)}" for c in targets]
    caption, numbers = citation_caption(methods, width=10_000)
    figure = image_grid(
        rows, row_labels=labels,
        column_titles=["Input, ground truth"] + [f"{method_title(m)} [{numbers[m]}]" for m in methods],
        title=title or "Segmentation test (CVPR 2021 Table 1): maps and their mean-threshold masks",
        caption="White outlines: the ground-truth mask (input) and each map's mask, foreground where the min-max "
                "normalised map exceeds its mean (spec §5.2).\n"
                + caption, keys=False)
    data = {"methods": list(methods), "targets": targets, "foreground_iou": ious}
    return FigureResult(figure, data, caption)


def make(request: FigureRequest) -> FigureResult:
    """Offline: held-out shapes scenes; the ground truth is the mask of the object of the predicted class."""
    import relevance
    from relevance.adapter import adapter_for
    from relevance.data import render_scene
    from relevance.evaluation.perturbation import make_normalize
    from relevance.evaluation.protocols import resolve_methods, start_layers_for

    model, name = load_model(request)
    config = adapter_for(model).info.data_config
    if request.inputs or request.data:
        raise ValueError("the segmentation figure needs ground-truth masks: offline it draws shapes scenes; "
                         "for ImageNet-Segmentation run `relevance evaluate --protocol imagenet-seg --data FILE`")
    size = int(config.input_size[-1])
    scenes = [render_scene(request.seed + i, size) for i in range(request.samples or DEFAULT_SCENES)]
    normalize = make_normalize(config.mean, config.std)
    images01 = torch.stack([torch.from_numpy(s.image.transpose(2, 0, 1).copy()) for s in scenes]).float() / 255
    device = next(model.parameters()).device
    predicted = relevance.explain(model, normalize(images01).to(device), method="attention").target.cpu()
    masks = torch.from_numpy(np.stack([s.mask_for(int(c)) if int(c) in s.labels else s.masks.any(0)
                                       for s, c in zip(scenes, predicted)]))
    methods = resolve_methods(request.methods)
    layers = start_layers_for(methods, adapter_for(model).depths()["image"], request.start_layer)
    return _examples(model, images01.to(device), masks, methods, layers, normalize,
                     title=f"Segmentation test on {len(scenes)} held-out shapes scenes ({name})")
