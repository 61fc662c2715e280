"""Segmentation metrics of the CVPR 2021 ImageNet-Segmentation test (spec §5.2).

Protocol (``imagenet_seg_eval.py`` of the reference): for every image the relevance map of the
predicted class is upsampled to the input size and min-max normalised; it is binarised at its
own **mean** (foreground where value > mean). Over the whole dataset one accumulates correct and
labelled pixels (pixel accuracy = sum correct / sum labelled) and, for background and foreground,
intersection and union (mIoU = mean over the two classes of sum inter / sum union). mAP is the mean
over images of the average precision of the two-channel scores ``[1 - map, map]`` against the
one-hot ground truth of both channels, flattened together (a "2-class" AP, not foreground-only).
Maps that are constant become all-zero (their NaNs are set to 0, as in the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from relevance.render import normalize

__all__ = [
    "average_precision",
    "normalize_map",
    "binarize",
    "segmentation_ap",
    "segmentation_statistics",
    "segmentation_scores",
    "SegmentationScores",
    "SegmentationAccumulator",
    "segmentation_test",
]


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def average_precision(y_true: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> float:
    """Average precision of binary labels, exactly as ``sklearn.metrics.average_precision_score``.

    AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds in decreasing order, where
    P_k and R_k are the precision and recall when everything scoring >= the k-th threshold is
    called positive (ties are one threshold), and R_0 = 0. No interpolation. With no positive
    label, the result is 0.0 (sklearn warns and returns 0 as well).

    Parameters
    ----------
    y_true:
        Labels in {0, 1} (any shape; flattened).
    scores:
        Real scores of the same number of elements.
    """
    y = _as_numpy(y_true).ravel()
    s = _as_numpy(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores differ in size: {y.shape} vs {s.shape}")
    if y.size == 0:
        raise ValueError("average_precision of empty inputs")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must be binary (0/1)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    n_pos = y.sum()
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # last index of every group of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def normalize_map(relevance: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of (B, H, W) to [0, 1]; a constant map becomes zeros; NaN -> 0."""
    if relevance.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(relevance.shape)}")
    return normalize(torch.nan_to_num(relevance.detach().double())).float()


def binarize(maps01: torch.Tensor) -> torch.Tensor:
    """Foreground where the (normalised) map exceeds its own per-image mean (spec §5.2). (B,H,W) -> bool."""
    if maps01.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps01.shape)}")
    mean = maps01.flatten(1).mean(1)[:, None, None]
    return maps01 > mean


def segmentation_ap(map01: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> float:
    """The reference's per-image "2-class" AP: scores [1 - map, map] vs one-hot [1 - gt, gt], flattened.

    ``1 - map`` is computed in the map's own precision (float32 maps: float32, as the reference's tensors), which
    decides which scores of the two channels tie.

    Parameters
    ----------
    map01:
        (H, W) normalised relevance in [0, 1].
    mask:
        (H, W) ground truth, bool or {0, 1} (foreground = 1).
    """
    m = map01.detach().cpu().numpy() if isinstance(map01, torch.Tensor) else np.asarray(map01)
    m = m if m.dtype in (np.float32, np.float64) else m.astype(np.float64)
    g = _as_numpy(mask)
    if m.shape != g.shape or m.ndim != 2:
        raise ValueError(f"map and mask must be equal (H, W) shapes, got {m.shape} and {g.shape}")
    g = (g > 0).astype(np.float64)
    scores = np.stack([1 - m, m])
    truth = np.stack([1.0 - g, g])
    return average_precision(truth, scores)


def segmentation_statistics(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image statistics of the §5.2 test, from which every dataset-level score is a sum or a mean.

    Parameters
    ----------
    maps:
        (B, H, W) raw relevance maps at the mask resolution; each is min-max normalised here (a constant map
        becomes zeros, NaN becomes 0) and binarised at its own mean.
    masks:
        (B, H, W) ground truth, bool or {0, 1} (foreground = 1); every pixel is labelled.

    Returns
    -------
    dict
        ``correct`` (B,) int64 pixels whose binarised map equals the truth; ``labelled`` (B,) int64 pixels;
        ``intersection`` and ``union`` (B, 2) int64 per class (background, foreground); ``ap`` (B,) float64 the
        per-image "2-class" average precision (:func:`segmentation_ap`).
    """
    maps = torch.as_tensor(maps)
    masks = torch.as_tensor(masks)
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            f"maps and masks must both be (B, H, W) of equal shape, got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    maps01 = normalize_map(maps.cpu())
    pred = binarize(maps01)
    gt = masks.cpu() > 0
    intersection = torch.stack([(~pred & ~gt).flatten(1).sum(1), (pred & gt).flatten(1).sum(1)], 1)
    union = torch.stack([(~pred | ~gt).flatten(1).sum(1), (pred | gt).flatten(1).sum(1)], 1)
    return {
        "correct": (pred == gt).flatten(1).sum(1).numpy().astype(np.int64),
        "labelled": np.full(maps.shape[0], gt[0].numel(), dtype=np.int64),
        "intersection": intersection.numpy().astype(np.int64),
        "union": union.numpy().astype(np.int64),
        "ap": np.array([segmentation_ap(m, g) for m, g in zip(maps01, gt)], dtype=np.float64),
    }


def segmentation_scores(correct: np.ndarray, labelled: np.ndarray, intersection: np.ndarray, union: np.ndarray,
                        ap: np.ndarray) -> "SegmentationScores":
    """Dataset-level §5.2 scores (percent) from per-image statistics (:func:`segmentation_statistics`).

    Pixel accuracy = sum correct / sum labelled; mIoU = mean over the two classes of sum intersection / sum union
    (accumulated over the dataset, not per image); mAP = mean of the per-image APs.
    """
    if len(ap) == 0:
        raise ValueError("no images")
    inter = np.asarray(intersection, dtype=np.int64).sum(0)
    uni = np.asarray(union, dtype=np.int64).sum(0)
    iou = inter / np.maximum(uni, 1)
    return SegmentationScores(
        pixel_accuracy=100.0 * int(np.sum(correct, dtype=np.int64)) / int(np.sum(labelled, dtype=np.int64)),
        miou=100.0 * float(iou.mean()),
        map=100.0 * float(sum(np.asarray(ap, dtype=np.float64).tolist())) / len(ap),
        images=int(len(ap)),
    )


@dataclass(frozen=True)
class SegmentationScores:
    """Dataset-level results in percent (like CVPR21 Table 1)."""

    pixel_accuracy: float
    miou: float
    map: float
    images: int


@dataclass
class SegmentationAccumulator:
    """Accumulates the §5.2 statistics over a dataset, one batch at a time.

    ``update(maps, masks)`` takes raw relevance maps (B, H, W) already at the mask resolution
    (they are min-max normalised here) and ground-truth masks (B, H, W) (bool or 0/1);
    ``compute()`` returns :class:`SegmentationScores`.
    """

    correct: int = 0
    labelled: int = 0
    intersection: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    union: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    ap_sum: float = 0.0
    images: int = 0

    def update(self, maps: torch.Tensor, masks: torch.Tensor) -> None:
        stats = segmentation_statistics(maps, masks)
        self.correct += int(stats["correct"].sum())
        self.labelled += int(stats["labelled"].sum())
        self.intersection += stats["intersection"].sum(0)
        self.union += stats["union"].sum(0)
        for ap in stats["ap"].tolist():  # one image at a time, as the reference accumulates
            self.ap_sum += ap
        self.images += int(stats["ap"].shape[0])

    def compute(self) -> SegmentationScores:
        if self.images == 0:
            raise ValueError("no images were accumulated")
        iou = self.intersection / np.maximum(self.union, 1)
        return SegmentationScores(
            pixel_accuracy=100.0 * self.correct / self.labelled,
            miou=100.0 * float(iou.mean()),
            map=100.0 * self.ap_sum / self.images,
            images=self.images,
        )


def segmentation_test(
    explain: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor],
) -> SegmentationScores:
    """The whole §5.2 test over a dataset.

    Parameters
    ----------
    explain:
        Normalised images (B, 3, H, W) -> relevance maps for the **predicted** class,
        (B, h, w); maps smaller than the masks are upsampled bilinearly (align_corners=False).
    batches:
        ``(images01 (B, 3, H, W) in [0, 1], masks (B, H, W))``, e.g. from
        :func:`relevance.evaluation.datasets.segmentation_batches`.
    normalize:
        [0, 1] images -> model input (mean = std = 0.5 for the paper's ViT-B/16).
    """
    acc = SegmentationAccumulator()
    for images01, masks in batches:
        maps = explain(normalize(images01)).detach().float()
        if maps.ndim != 3 or maps.shape[0] != masks.shape[0]:
            raise ValueError(f"explain must return (B, h, w) maps, got shape {tuple(maps.shape)}")
        if maps.shape[1:] != masks.shape[1:]:
            maps = torch.nn.functional.interpolate(
                maps[:, None], size=tuple(masks.shape[1:]), mode="bilinear", align_corners=False
            )[:, 0]
        acc.update(maps.cpu(), masks.cpu())
    return acc.compute()
