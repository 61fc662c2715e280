"""The papers' figures from scripts: ``relevance figures NAME`` or :func:`make_figure` / :func:`write_figure`.

Each figure is a module of this package with ``TITLE`` (one line) and ``make(request) -> FigureResult``, registered
in :data:`FIGURES`. Offline every figure runs on the embedded models (``shapes-vit``; ``reviews-bert`` for the text
figure, ``shapes-clip`` for the image-text figure); with ``--model`` and ``--checkpoint`` on real weights, and with
``--inputs`` on your own images. Pictures are written as PNG and PDF (matplotlib), reproducibly; what each picture
shows is written beside it as JSON.

Adding a figure (e.g. for a new model family): write ``relevance/figures/<name>.py`` with ``TITLE`` and
``make(request)``, and add one :class:`FigureSpec` line to :data:`FIGURES`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevance.figures.inputs import FigureRequest, FigureResult

__all__ = ["FIGURES", "FigureRequest", "FigureResult", "FigureSpec", "FigureUnavailableError", "list_figures",
           "make_figure", "write_figure"]


@dataclass(frozen=True)
class FigureSpec:
    """A figure: its name, its module, what it shows, and what it needs beyond the vision engine."""

    name: str
    module: str
    summary: str
    needs: str | None = None


#: Every figure ``relevance figures`` makes, in the order ``--list`` shows them.
FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec("methods", "relevance.figures.methods",
                   "CVPR 2021 comparison grid: rows = inputs, columns = every method"),
        FigureSpec("class-specific", "relevance.figures.class_specific",
                   "one input, two classes: class-specific methods change between the rows, attention does not"),
        FigureSpec("perturbation", "relevance.figures.perturbation",
                   "positive and negative perturbation curves per method, AUC in the legend"),
        FigureSpec("layers", "relevance.figures.layers",
                   "a method's map as start_layer moves from the first block to the last"),
        FigureSpec("segmentation", "relevance.figures.segmentation",
                   "the segmentation test: ground truth, each method's map and its mean-threshold mask"),
        FigureSpec("text", "relevance.figures.text",
                   "CVPR 2021 text figure: BERT token heatmaps per method, class-specific rows",
                   needs="a text classifier (the BERT family: relevance.models.bert, embedded reviews-bert)"),
        FigureSpec("image-text", "relevance.figures.image_text",
                   "ICCV 2021 CLIP figure: one image against several captions, image map and token heatmap each",
                   needs="an image-text model (the CLIP family: relevance.models.clip, embedded shapes-clip)"),
    )
}


class FigureUnavailableError(RuntimeError):
    """A figure whose model family is not installed."""


def list_figures() -> list[str]:
    """The names of the figures."""
    return list(FIGURES)


def _module(name: str):
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    return importlib.import_module(FIGURES[name].module)


def make_figure(name: str, request: FigureRequest | None = None, **options: Any) -> FigureResult:
    """Draw figure ``name``; ``options`` are :class:`FigureRequest` fields (``model="shapes-vit"``, ...)."""
    request = request or FigureRequest(**options)
    return _module(name).make(request)


def _jsonable(value: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def write_figure(result: FigureResult, out: str | Path, name: str,
                 formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``<out>/<name>.png``, ``.pdf`` (``formats``) and ``.json`` (what the figure shows, maps left out)."""
    from relevance.figures.style import save

    out = Path(out)
    paths = save(result.figure, out / name, formats=formats)
    summary = {k: v for k, v in result.data.items() if k != "maps"}
    summary["caption"] = result.caption
    (out / f"{name}.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    return paths + [out / f"{name}.json"]
