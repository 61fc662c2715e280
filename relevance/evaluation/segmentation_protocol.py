"""CVPR 2021 Table 1: the ImageNet-Segmentation test (spec §5.2) as per-image statistics and a table.

Protocol (``imagenet_seg_eval.py`` of the reference, its quirks left out): ``gtsegs_ijcv.mat`` images squash-resized
to the model's input size and normalised with the model's mean and std (0.5 / 0.5 for the paper's ViT-B/16), masks
resized with nearest neighbours; each method explains the **predicted** class (start layer 1 for transformer
attribution and rollout); patch maps are upsampled bilinearly, min-max normalised per image (a constant map gives
zeros, never NaN) and binarised at their **mean**. Pixel accuracy and mIoU accumulate pixels over the dataset; mAP
is the mean per-image two-channel AP (:mod:`relevance.evaluation.segmentation`).

:func:`segmentation_batch` gives one row per image (so that shards can be merged exactly);
:func:`segmentation_table` turns the merged rows into the table.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import Tensor

from relevance.evaluation.paper_numbers import TABLE1, paper_label
from relevance.evaluation.protocols import as_numpy, explained_maps, markdown_table
from relevance.evaluation.segmentation import SegmentationScores, segmentation_scores, segmentation_statistics

__all__ = ["STATISTICS", "segmentation_batch", "segmentation_table", "segmentation_markdown", "segmentation_json"]

#: The per-image statistics stored for every method (see :func:`relevance.evaluation.segmentation_statistics`).
STATISTICS = ("correct", "labelled", "intersection", "union", "ap")


def segmentation_batch(model: Any, images01: Tensor, masks: Tensor, *, methods: Sequence[str],
                       start_layers: Mapping[str, int], normalize: Callable[[Tensor], Tensor]) -> dict[str, np.ndarray]:
    """The §5.2 statistics of one batch for every method.

    Parameters
    ----------
    model:
        An LRP-aware image classifier on the images' device.
    images01:
        (B, 3, H, W) images in [0, 1].
    masks:
        (B, H, W) ground-truth foreground masks.
    methods, start_layers:
        Method names, and the start layer of those that chain blocks.
    normalize:
        [0, 1] images -> model input.

    Returns
    -------
    dict
        ``predicted`` (B,) the explained (predicted) classes, and per method ``"<method>.<statistic>"`` for each of
        :data:`STATISTICS`, one row per image.
    """
    pixels = normalize(images01)
    rows: dict[str, np.ndarray] = {}
    for method in methods:
        maps, classes = explained_maps(model, pixels, method, None, start_layers.get(method), masks.shape[-2:])
        rows.setdefault("predicted", as_numpy(classes).astype(np.int64))
        for key, value in segmentation_statistics(maps.cpu(), masks.cpu()).items():
            rows[f"{method}.{key}"] = value
    return rows


def segmentation_table(rows: Mapping[str, np.ndarray], methods: Sequence[str]) -> dict[str, SegmentationScores]:
    """Table 1 (percent) per method from the merged per-image rows."""
    return {m: segmentation_scores(*(rows[f"{m}.{key}"] for key in STATISTICS)) for m in methods}


def segmentation_markdown(table: Mapping[str, SegmentationScores], start_layers: Mapping[str, int]) -> str:
    """Our Table 1 beside the paper's (ViT-B/16)."""
    header = ["Method", "Start layer", "Pixel acc.", "(paper)", "mAP", "(paper)", "mIoU", "(paper)"]
    body = []
    for method, scores in table.items():
        paper = TABLE1.get(method, (None, None, None))
        body.append([f"{paper_label(method)} (`{method}`)",
                     start_layers.get(method, "—"), scores.pixel_accuracy, paper[0], scores.map, paper[1],
                     scores.miou, paper[2]])
    return markdown_table(header, body)


def segmentation_json(table: Mapping[str, SegmentationScores], start_layers: Mapping[str, int]) -> dict:
    """A JSON-serialisable Table 1 with the paper's values."""
    out = {}
    for method, s in table.items():
        paper = TABLE1.get(method)
        out[method] = {
            "pixel_accuracy": s.pixel_accuracy, "map": s.map, "miou": s.miou, "images": s.images,
            "start_layer": start_layers.get(method),
            "paper": None if paper is None else dict(zip(("pixel_accuracy", "map", "miou"), paper)),
        }
    return out
