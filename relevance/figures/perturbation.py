"""``relevance figures perturbation``: positive and negative perturbation curves per method (CVPR 2021, §5.3).

Left: the positive test (most relevant pixels removed first; a faithful map makes the accuracy fall fast, lower AUC
is better). Right: the negative test (least relevant first; higher is better). Each legend entry gives the method's
AUC = 100 x trapz over p = 0 .. 0.9. Offline: held-out shapes scenes with the embedded ``shapes-vit``, each object's
class explained, a hit being "the class is still predicted"; with ``--data IMAGENET_VAL_DIR`` and an ImageNet model:
the first ``--samples`` images of the folder, the predicted class explained, top-1 against the label.
``relevance evaluate --protocol perturbation`` draws the same figure from its full run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from relevance.evaluation.perturbation import STEPS, make_normalize, multilabel_present, perturbation_auc, \
    perturbation_hits
from relevance.figures.inputs import FigureRequest, FigureResult, load_model
from relevance.figures.style import RC, caption_width, citation_caption, method_colour, method_title

TITLE = "positive and negative perturbation curves per method, AUC in the legend"
#: Held-out scenes (shapes) or images (ImageNet) when ``--samples`` is not given.
DEFAULT_SAMPLES = 48

_TESTS = (("positive", "Positive perturbation: most relevant pixels removed first", "lower AUC is better"),
          ("negative", "Negative perturbation: least relevant pixels removed first", "higher AUC is better"))


def legend_label(method: str, auc: float) -> str:
    """``"Transformer attr. (AUC 23.4)"``: what the legend says for a method."""
    return f"{method_title(method)} (AUC {auc:.1f})"


def curves_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], *, title: str,
                  steps: Sequence[float] = STEPS, start_layers: Mapping[str, int] | None = None,
                  caption: str | None = None):
    """Two panels (positive, negative) of accuracy against the share of removed pixels, one line per method.

    Parameters
    ----------
    curves:
        ``{method: {"positive": accuracies, "negative": accuracies}}``, fractions per step.
    title:
        The figure's title.
    steps:
        The shares of removed pixels (from 0).
    start_layers:
        First block of the methods that chain blocks (written in the caption).
    caption:
        Text below the panels (default: the methods' citations).

    Returns
    -------
    matplotlib.figure.Figure
        Legends sorted best first; each label is :func:`legend_label` with the AUC of that curve.
    """
    from matplotlib.figure import Figure
    import matplotlib.pyplot as plt

    methods = list(curves)
    text, _ = citation_caption([m for m in methods if m != "random"], width=10_000)
    if start_layers:
        text = ("Start blocks: " + ", ".join(f"{method_title(m)} {s}" for m, s in start_layers.items()
                                             if m in curves) + ".\n" + text)
    text = caption if caption is not None else text
    width = 13.0
    lines = [w for paragraph in text.split("\n") if paragraph for w in
             __import__("textwrap").wrap(paragraph, caption_width(width))]
    height = 4.4 + 0.13 * len(lines)
    x = 100 * np.asarray(steps, dtype=np.float64)
    with plt.rc_context(RC):
        figure = Figure(figsize=(width, height))
        bottom = (0.55 + 0.13 * len(lines)) / height
        panels = figure.subplots(1, 2, gridspec_kw=dict(left=0.05, right=0.84, bottom=bottom,
                                                         top=1 - 0.75 / height, wspace=0.62))
        for axes, (test, heading, better) in zip(panels, _TESTS):
            entries = []
            for method in methods:
                y = 100 * np.asarray(curves[method][test], dtype=np.float64)
                auc = perturbation_auc(np.asarray(curves[method][test], dtype=np.float64), steps)
                (line,) = axes.plot(x, y, marker="o", markersize=3.2, linewidth=1.6, color=method_colour(method),
                                    linestyle="--" if method == "random" else "-", label=legend_label(method, auc))
                entries.append((auc, line))
            entries.sort(key=lambda e: e[0] if test == "positive" else -e[0])
            axes.legend([e[1] for e in entries], [e[1].get_label() for e in entries], title=f"AUC, {better}",
                        title_fontsize=7.5, fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        handlelength=1.8, alignment="left")
            axes.set_title(heading, fontsize=9)
            axes.set_xlabel("pixels removed (%)")
            axes.set_xlim(0, x[-1] + 1)
            axes.set_ylim(-2, 102)
            axes.grid(alpha=0.25, linewidth=0.6)
        panels[0].set_ylabel("accuracy (%)")
        figure.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=10.5, fontweight="bold")
        figure.text(0.01, 0.05 / height, "\n".join(lines), ha="left", va="bottom", fontsize=7, color="#333333",
                    linespacing=1.3)
    return figure


def make(request: FigureRequest) -> FigureResult:
    model, name = load_model(request)
    samples = request.samples or DEFAULT_SAMPLES
    if request.data:
        return _imagenet(model, name, request, samples)
    return _shapes(model, name, request, samples)


def _methods_and_layers(model: Any, request: FigureRequest) -> tuple[list[str], dict[str, int]]:
    from relevance.adapter import adapter_for
    from relevance.evaluation.protocols import resolve_methods, start_layers_for

    methods = resolve_methods(request.methods)
    return methods, start_layers_for(methods, adapter_for(model).depths()["image"], request.start_layer)


def _result(curves: dict, title: str, start_layers: dict, samples: int, what: str) -> FigureResult:
    aucs = {m: {t: perturbation_auc(c[t]) for t in ("positive", "negative")} for m, c in curves.items()}
    figure = curves_figure(curves, title=title, start_layers=start_layers)
    return FigureResult(figure, {"curves": curves, "aucs": aucs, "start_layers": start_layers, "samples": samples,
                                 "explained": what, "steps": list(STEPS)}, title)


def _shapes(model: Any, name: str, request: FigureRequest, scenes: int) -> FigureResult:
    """Every object of ``scenes`` held-out scenes, its class explained; hit = the class is still predicted."""
    from relevance.evaluation.shapes_benchmark import held_out_samples, relevance_maps

    methods, start_layers = _methods_and_layers(model, request)
    config = model.data_config
    normalize = make_normalize(config.mean, config.std)
    device = next(model.parameters()).device
    samples = held_out_samples(scenes, request.seed, int(config.input_size[-1]))
    hits: dict[str, dict[str, list[torch.Tensor]]] = {m: {"positive": [], "negative": []} for m in methods}

    @torch.no_grad()
    def classify(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device)).float().cpu()

    for start in range(0, len(samples), 32):
        batch = samples[start:start + 32]
        images01 = torch.stack([torch.from_numpy(s.scene.image.transpose(2, 0, 1).copy()) for s in batch]).float() / 255
        targets = torch.tensor([s.label for s in batch])
        pixels = normalize(images01).to(device)
        for method in methods:
            maps = relevance_maps(model, pixels, targets.to(device), method, start_layers.get(method, 0)).cpu()
            for test in ("positive", "negative"):
                hits[method][test].append(perturbation_hits(classify, images01, maps, targets, normalize=normalize,
                                                            positive=test == "positive", correct=multilabel_present))
    curves = {m: {t: torch.cat(h[t]).double().mean(0).tolist() for t in h} for m, h in hits.items()}
    title = (f"Perturbation on {len(samples)} objects of {scenes} held-out shapes scenes ({name}); "
             "hit = the explained class is still predicted")
    return _result(curves, title, start_layers, len(samples), "each object's class")


def _imagenet(model: Any, name: str, request: FigureRequest, count: int) -> FigureResult:
    """The first ``count`` images of an ImageNet val folder, predicted class explained; hit = top-1 correct."""
    from relevance.evaluation import ImageNetVal
    from relevance.evaluation.perturbation_protocol import perturbation_batch, perturbation_table, row_key

    methods, start_layers = _methods_and_layers(model, request)
    config = model.data_config
    dataset = ImageNetVal(request.data, size=int(config.input_size[-1]), limit=count)
    normalize = make_normalize(config.mean, config.std)
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(dataset), 16):
        images01, labels = zip(*(dataset[i] for i in range(start, min(start + 16, len(dataset)))))
        parts.append(perturbation_batch(model, torch.stack(images01).to(device), torch.tensor(labels),
                                        methods=methods, explained=["predicted"], start_layers=start_layers,
                                        normalize=normalize))
    rows = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    table = perturbation_table(rows, methods, ["predicted"])
    curves = {m: {t: table["cells"][row_key(m, "predicted", t)]["curve"] for t in ("positive", "negative")}
              for m in methods}
    title = f"Perturbation on {len(dataset)} ImageNet val images ({name}); predicted class explained, top-1 hits"
    return _result(curves, title, start_layers, len(dataset), "the predicted class")
