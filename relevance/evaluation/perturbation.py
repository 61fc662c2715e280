"""Positive and negative perturbation tests of CVPR 2021 (spec §5.3).

Protocol (``generate_visualizations.py`` + ``pertubation_eval_from_hdf5.py`` of the reference):

1. The relevance map of the **predicted** (``vis_class="top"``) or the **target** class
   (``vis_class="target"``) is computed at the input resolution.
2. For every step p in 0.1 .. 0.9 the ``k = floor(H * W * p)`` pixels ranked highest by the map
   (positive test: most relevant removed first) or by ``-map`` (negative test: least relevant
   removed first) are **set to 0 in all channels of the [0, 1] image, before normalisation**.
   Ties are broken by pixel index (:func:`removal_order`), the same on every device.
3. The perturbed image is normalised and classified; a hit is decided by ``correct(logits,
   labels)``: top-1 against the ground-truth label for ImageNet (:func:`top1_correct`), or "the
   explained class is still predicted" (logit > 0, i.e. sigmoid > 0.5) for the multi-label shapes
   model (:func:`multilabel_present`).
4. ``AUC = 100 * trapz(accuracy, x)`` over ``x = 0, 0.1, ..., 0.9`` with the unperturbed accuracy at
   x = 0 (author's recipe, TE#31). A constant accuracy ``a`` gives ``90 a``. Lower is better for
   the positive test, higher for the negative one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "STEPS",
    "top1_correct",
    "multilabel_present",
    "make_normalize",
    "perturb",
    "removal_order",
    "perturbation_hits",
    "perturbation_curve",
    "perturbation_auc",
    "PerturbationResult",
    "perturbation_test",
]

#: Fractions of removed pixels, unperturbed (0.0) first, as in the reference.
STEPS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))

Classifier = Callable[[torch.Tensor], torch.Tensor]
Correctness = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ImageNet criterion: argmax of the logits (B, C) equals the label (B,). Returns bool (B,)."""
    return logits.argmax(-1) == labels.to(logits.device)


def multilabel_present(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label criterion: the class ``labels[b]`` is still predicted (logit > 0). Returns bool (B,)."""
    idx = labels.to(logits.device).long().view(-1, 1)
    return logits.gather(1, idx).squeeze(1) > 0


def make_normalize(mean: Sequence[float], std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x01 (B, 3, H, W) -> (x01 - mean) / std`` per channel."""
    m = torch.tensor([float(v) for v in mean]).view(1, -1, 1, 1)
    s = torch.tensor([float(v) for v in std]).view(1, -1, 1, 1)
    if m.numel() != 3 or s.numel() != 3 or bool((s <= 0).any()):
        raise ValueError(f"need 3 means and 3 positive stds, got {mean!r} / {std!r}")

    def normalize(x01: torch.Tensor) -> torch.Tensor:
        return (x01 - m.to(x01)) / s.to(x01)

    return normalize


def _check(images01: torch.Tensor, maps: torch.Tensor) -> None:
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images01.shape)}")
    if maps.ndim != 3 or maps.shape[0] != images01.shape[0] or maps.shape[1:] != images01.shape[2:]:
        raise ValueError(
            f"maps must be (B, H, W) matching the images {tuple(images01.shape)}, got {tuple(maps.shape)}; "
            "upsample them to the input size first"
        )


def removal_order(maps: torch.Tensor, *, positive: bool) -> torch.Tensor:
    """Pixel indices (B, H*W), row-major, in the order the perturbation test removes them.

    Parameters
    ----------
    maps:
        (B, H, W) relevance at the image resolution (any scale; NaN counts as 0).
    positive:
        Most relevant first (the positive test) or least relevant first (the negative test).

    Returns
    -------
    torch.Tensor
        (B, H*W) int64. Ties go by pixel index (a stable sort), so the order, unlike ``torch.topk``'s, is the same
        on every device and batch layout (the reference's ``topk`` leaves ties to the kernel).
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    scores = torch.nan_to_num(maps.detach().reshape(maps.shape[0], -1), nan=0.0)
    return torch.argsort(-scores if positive else scores, dim=1, stable=True)


def perturb(images01: torch.Tensor, maps: torch.Tensor, fraction: float, *, positive: bool,
            order: torch.Tensor | None = None) -> torch.Tensor:
    """Set the ``floor(H*W*fraction)`` pixels ranked first by the map to 0 (all channels).

    Parameters
    ----------
    images01:
        (B, 3, H, W) in [0, 1], un-normalised.
    maps:
        (B, H, W) relevance at the image resolution (any scale; only the ranking matters).
    fraction:
        Share of pixels to remove, in [0, 1].
    positive:
        Remove the most relevant pixels (True) or the least relevant (False).
    order:
        The maps' :func:`removal_order` when already computed (the same for every fraction).

    Returns
    -------
    torch.Tensor
        a perturbed copy (B, 3, H, W).
    """
    _check(images01, maps)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    b, _, h, w = images01.shape
    k = int(np.floor(h * w * fraction + 1e-9))
    out = images01.clone()
    if k == 0:
        return out
    if order is None:
        order = removal_order(maps, positive=positive)
    idx = order[:, :k]  # (B, k)
    keep = torch.ones(b, h * w, dtype=images01.dtype, device=images01.device)
    keep.scatter_(1, idx.to(images01.device), 0.0)
    return out * keep.view(b, 1, h, w)


@torch.no_grad()
def perturbation_hits(
    classify: Classifier,
    images01: torch.Tensor,
    maps: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    positive: bool,
    steps: Sequence[float] = STEPS,
    correct: Correctness = top1_correct,
) -> torch.Tensor:
    """Per-sample hits (B, len(steps)) bool: ``correct(classify(normalize(perturb(x, p))), labels)``.

    ``classify`` maps a normalised batch (B, 3, H, W) to logits (B, C); ``labels`` (B,) are the
    ground-truth labels (ImageNet) or the explained classes (shapes world).
    """
    _check(images01, maps)
    labels = torch.as_tensor(labels).long().view(-1)
    if labels.numel() != images01.shape[0]:
        raise ValueError(f"need one label per image: {labels.numel()} labels for {images01.shape[0]} images")
    order = removal_order(maps, positive=positive)
    cols = []
    for p in steps:
        logits = classify(normalize(perturb(images01, maps, float(p), positive=positive, order=order)))
        cols.append(correct(logits, labels).bool().cpu())
    return torch.stack(cols, 1)


def perturbation_curve(
    classify: Classifier,
    images01: torch.Tensor,
    maps: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    positive: bool,
    steps: Sequence[float] = STEPS,
    correct: Correctness = top1_correct,
) -> torch.Tensor:
    """Accuracy (len(steps),) float in [0, 1] at every step, averaged over the batch."""
    hits = perturbation_hits(
        classify, images01, maps, labels, normalize=normalize, positive=positive, steps=steps, correct=correct
    )
    return hits.float().mean(0)


def perturbation_auc(
    accuracies: Sequence[float] | torch.Tensor,
    steps: Sequence[float] = STEPS,
    unperturbed: float | None = None,
) -> float:
    """``100 * trapz(accuracies, steps)`` (spec §5.3); accuracies are fractions in [0, 1].

    With the default steps (0, 0.1, .., 0.9) a constant accuracy ``a`` gives ``90 a``. If ``steps``
    does not start at 0, pass the unperturbed accuracy as ``unperturbed``; it is prepended at x = 0.
    """
    y = np.asarray(torch.as_tensor(accuracies, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    x = np.asarray(steps, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{y.size} accuracies for {x.size} steps")
    if unperturbed is not None:
        if x.size and x[0] == 0.0:
            raise ValueError("steps already start at 0; do not pass `unperturbed`")
        x, y = np.r_[0.0, x], np.r_[float(unperturbed), y]
    elif x.size == 0 or x[0] != 0.0:
        raise ValueError("steps must start at 0 (the unperturbed accuracy), or pass `unperturbed`")
    if np.any(np.diff(x) <= 0):
        raise ValueError("steps must increase")
    return float(100.0 * np.sum((y[1:] + y[:-1]) * np.diff(x) / 2.0))


@dataclass(frozen=True)
class PerturbationResult:
    """Accuracy per step (fractions), the AUC (percent) and the number of images."""

    steps: tuple[float, ...]
    accuracies: tuple[float, ...]
    auc: float
    images: int
    positive: bool


def perturbation_test(
    classify: Classifier,
    explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    positive: bool,
    vis_class: str = "top",
    steps: Sequence[float] = STEPS,
    correct: Correctness = top1_correct,
) -> PerturbationResult:
    """The whole §5.3 test over a dataset.

    Parameters
    ----------
    classify:
        Normalised images (B, 3, H, W) -> logits (B, C).
    explain:
        ``(normalised images, classes (B,)) -> maps (B, h, w)``; maps smaller than the
        images are upsampled bilinearly (align_corners=False), as the reference does.
    batches:
        ``(images01 (B, 3, H, W) in [0, 1], labels (B,))``, e.g. from
        :func:`relevance.evaluation.datasets.imagenet_val_batches`.
    vis_class:
        "top" explains the predicted class, "target" the ground-truth label; accuracy is
        always measured against the label with ``correct``.
    """
    if vis_class not in ("top", "target"):
        raise ValueError(f"vis_class must be 'top' or 'target', got {vis_class!r}")
    hits = []
    for images01, labels in batches:
        labels = torch.as_tensor(labels).long().view(-1)
        x = normalize(images01)
        if vis_class == "top":
            with torch.no_grad():
                classes = classify(x).argmax(-1)
        else:
            classes = labels
        maps = explain(x, classes).detach().float()
        if maps.ndim == 3 and maps.shape[1:] != images01.shape[2:]:
            maps = torch.nn.functional.interpolate(
                maps[:, None], size=tuple(images01.shape[2:]), mode="bilinear", align_corners=False
            )[:, 0]
        hits.append(
            perturbation_hits(
                classify, images01, maps, labels, normalize=normalize, positive=positive, steps=steps, correct=correct
            )
        )
    if not hits:
        raise ValueError("no batches")
    acc = torch.cat(hits).float().mean(0)
    steps = tuple(float(s) for s in steps)
    return PerturbationResult(
        steps=steps,
        accuracies=tuple(float(a) for a in acc),
        auc=perturbation_auc(acc, steps),
        images=int(sum(h.shape[0] for h in hits)),
        positive=positive,
    )
