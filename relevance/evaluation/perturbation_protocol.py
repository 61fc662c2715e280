"""CVPR 2021 Table 2: positive and negative perturbation on ImageNet val (spec §5.3) as per-image hits and a table.

Protocol (``generate_visualizations.py`` + ``pertubation_eval_from_hdf5.py`` of the reference, its quirks left
out): images squash-resized to the model's input size, in [0, 1]; each method explains the **predicted** class and,
for class-specific methods, the **target** (ground-truth) class (start layer 1 for transformer attribution and
rollout); maps are upsampled bilinearly (the reference also min-max normalises them, which leaves their order, all
that counts here, unchanged, except that a constant map gave NaN). For every step p = 0.1 .. 0.9 the
``floor(H W p)`` pixels ranked first (positive test: most relevant first; negative: least relevant first; ties by
pixel index) are set to 0 in the [0, 1] image before normalisation, and the model's top-1 answer is compared with
the **label**. The unperturbed accuracy is the curve's value at p = 0; AUC = 100 x trapz over p = 0 .. 0.9.
Both tests always run (the reference's ``--neg`` flag parsed "False" as true, spec §6.1 #10).

:func:`perturbation_batch` gives one row of hits per image (so that shards can be merged exactly);
:func:`perturbation_table` turns the merged rows into curves and AUCs.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from relevance.evaluation.paper_numbers import TABLE2, UNPERTURBED_ACCURACY, paper_label
from relevance.evaluation.perturbation import STEPS, perturbation_auc, perturbation_hits, top1_correct
from relevance.evaluation.protocols import as_numpy, explained_maps, markdown_table

__all__ = ["EXPLAINED", "TESTS", "perturbation_batch", "perturbation_table", "perturbation_markdown", "row_key"]

#: Which class a map explains: the model's prediction, or the ground-truth label.
EXPLAINED = ("predicted", "target")
#: Positive test (most relevant pixels removed first, lower AUC is better), negative (least relevant first).
TESTS = ("positive", "negative")


def row_key(method: str, explained: str, test: str) -> str:
    """The name of a method's hit rows: ``"<method>.<predicted|target>.<positive|negative>"``."""
    return f"{method}.{explained}.{test}"


def applies(method: str, explained: str) -> bool:
    """Whether a (method, explained class) cell exists: class-agnostic maps have no target row (spec §5.3)."""
    import relevance

    return explained == "predicted" or relevance.get_method(method).class_specific


@torch.no_grad()
def _classify(model: Any, pixels: Tensor) -> Tensor:
    return model(pixels)


def perturbation_batch(model: Any, images01: Tensor, labels: Tensor, *, methods: Sequence[str],
                       explained: Sequence[str], start_layers: Mapping[str, int],
                       normalize: Callable[[Tensor], Tensor], steps: Sequence[float] = STEPS) -> dict[str, np.ndarray]:
    """The §5.3 hits of one batch for every method, explained class and test.

    Parameters
    ----------
    model:
        An LRP-aware image classifier on the images' device.
    images01:
        (B, 3, H, W) images in [0, 1], un-normalised.
    labels:
        (B,) ground-truth classes.
    methods, explained, start_layers:
        Method names; ``"predicted"`` and/or ``"target"``; the start layer of the methods that chain blocks.
    normalize:
        [0, 1] images -> model input.
    steps:
        Fractions of removed pixels, starting at 0 (the unperturbed image).

    Returns
    -------
    dict
        ``label``, ``predicted`` (B,) int64; ``unperturbed`` (B,) bool (top-1 correct); and per applicable cell
        :func:`row_key` -> (B, len(steps)) bool hits, column 0 being the unperturbed hit.
    """
    if not steps or steps[0] != 0.0:
        raise ValueError("steps must start at 0 (the unperturbed image)")
    labels = labels.to(images01.device).long()
    pixels = normalize(images01)
    logits = _classify(model, pixels)
    predicted = logits.argmax(-1)
    unperturbed = top1_correct(logits, labels)  # accuracy is always against the label (spec §5.3 step 4)
    rows: dict[str, np.ndarray] = {"label": as_numpy(labels).astype(np.int64),
                                   "predicted": as_numpy(predicted).astype(np.int64),
                                   "unperturbed": as_numpy(unperturbed).astype(bool)}
    size = tuple(images01.shape[-2:])
    for method in methods:
        for which in explained:
            if not applies(method, which):
                continue
            classes = predicted if which == "predicted" else labels
            maps, _ = explained_maps(model, pixels, method, classes, start_layers.get(method), size)
            maps = torch.nan_to_num(maps)  # the reference min-max normalises first; only the order matters
            for test in TESTS:
                hits = perturbation_hits(lambda x: _classify(model, x), images01, maps.to(images01.device), labels,
                                         normalize=normalize, positive=test == "positive", steps=list(steps[1:]))
                rows[row_key(method, which, test)] = np.concatenate([rows["unperturbed"][:, None],
                                                                     as_numpy(hits).astype(bool)], 1)
    return rows


def perturbation_table(rows: Mapping[str, np.ndarray], methods: Sequence[str], explained: Sequence[str],
                       steps: Sequence[float] = STEPS) -> dict[str, Any]:
    """Curves (accuracy per step, fractions) and AUCs (percent) per cell from the merged per-image rows.

    Returns
    -------
    dict
        ``images``, ``unperturbed_accuracy``, ``steps`` and ``cells``: ``{row_key: {"curve": [...], "auc": x}}``.
    """
    cells = {}
    for method in methods:
        for which in explained:
            for test in TESTS:
                key = row_key(method, which, test)
                if key in rows:
                    curve = np.asarray(rows[key], dtype=np.float64).mean(0)
                    cells[key] = {"curve": curve.tolist(), "auc": perturbation_auc(curve, steps)}
    return {"images": int(len(rows["label"])), "unperturbed_accuracy": float(np.mean(rows["unperturbed"])),
            "steps": [float(s) for s in steps], "cells": cells}


def perturbation_markdown(table: Mapping[str, Any], methods: Sequence[str], explained: Sequence[str],
                          start_layers: Mapping[str, int]) -> str:
    """Our Table 2 (rows: test x explained class; columns: methods; "ours (paper)") and the curves."""
    header = ["AUC", *[f"{paper_label(m)}" + (f" (start {start_layers[m]})" if m in start_layers else "")
                       for m in methods]]
    body = []
    for test, arrow in (("negative", "↑"), ("positive", "↓")):
        for which in explained:
            row = [f"{test.capitalize()}, {which} {arrow}"]
            for method in methods:
                cell = table["cells"].get(row_key(method, which, test))
                paper = TABLE2[(test, which)].get(method)
                if cell is None:
                    row.append("—")
                else:
                    row.append(f"{cell['auc']:.2f}" + (f" ({paper:.2f})" if paper is not None else ""))
            body.append(row)
    steps = table["steps"]
    curves = [[method, which, test, *[100 * v for v in table["cells"][row_key(method, which, test)]["curve"]]]
              for method in methods for which in explained for test in TESTS
              if row_key(method, which, test) in table["cells"]]
    return "\n".join([
        markdown_table(header, body),
        "",
        f"Cells: ours (the paper's CVPR 2021 Table 2 value, ViT-B/16). {table['images']} images; unperturbed top-1 "
        f"accuracy {100 * table['unperturbed_accuracy']:.2f} % (the authors': {100 * UNPERTURBED_ACCURACY:.3f} %). "
        "AUC = 100 x trapz over p = 0 .. 0.9 (maximum 90); negative: least relevant pixels removed first (higher is "
        "better); positive: most relevant first (lower is better). Class-agnostic methods have no target row.",
        "",
        "## Accuracy (%) per share of removed pixels",
        "",
        markdown_table(["Method", "Explained", "Test", *[f"{s:.1f}" for s in steps]], curves, digits=1),
    ]) + "\n"
