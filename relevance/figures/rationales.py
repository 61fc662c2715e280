"""Token F1 against k, one line per method: the CVPR 2021 ERASER plot (Chefer, Gur & Wolf 2021, §5.4 of the spec).

Drawn by ``relevance evaluate --model reviews-bert`` (the reviews world, k = 1..10) and ``--protocol eraser``
(ERASER Movie Reviews, k = 5..80), in the look of :func:`relevance.figures.perturbation.curves_figure`: method colours
and names of every figure, the legend beside the panel sorted best first, the random reference dashed.
"""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np

from relevance.figures.style import RC, caption_width, citation_caption, method_colour, method_title

__all__ = ["figure_pixels", "legend_label", "token_f1_figure"]


def legend_label(method: str, curve: Sequence[float]) -> str:
    """``"Transformer attr. (mean 42.1)"``: the method's short name and its curve's mean token F1."""
    return f"{method_title(method)} (mean {float(np.mean(curve)):.1f})"


def token_f1_figure(curves: Mapping[str, Sequence[float]], ks: Sequence[int], *, title: str,
                    start_layers: Mapping[str, int] | None = None, caption: str | None = None):
    """One panel of token F1 (%) against k, one line per method.

    Parameters
    ----------
    curves:
        ``{method: token F1 in percent at each k}`` (``random`` is drawn dashed).
    ks:
        The k of the curves (top-k words form the hard rationale).
    title:
        The figure's title.
    start_layers:
        First block of the methods that chain blocks (written in the caption).
    caption:
        Text below the panel (default: the start blocks and the methods' citations).

    Returns
    -------
    matplotlib.figure.Figure
        Legend entries :func:`legend_label`, best mean first.
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    text, _ = citation_caption([m for m in curves if m != "random"], width=10_000)
    if start_layers:
        text = ("Start blocks: " + ", ".join(f"{method_title(m)} {s}" for m, s in start_layers.items()
                                             if m in curves) + ".\n" + text)
    text = caption if caption is not None else text
    width = 9.0
    lines = [w for paragraph in text.split("\n") if paragraph for w in textwrap.wrap(paragraph, caption_width(width))]
    height = 4.3 + 0.13 * len(lines)
    x = np.asarray(ks, dtype=np.float64)
    with plt.rc_context(RC):
        figure = Figure(figsize=(width, height))
        axes = figure.add_axes((0.07, (0.55 + 0.13 * len(lines)) / height, 0.62,
                                1 - (0.55 + 0.13 * len(lines) + 0.7) / height))
        entries = []
        for method, curve in curves.items():
            (line,) = axes.plot(x, np.asarray(curve, dtype=np.float64), marker="o", markersize=3.2, linewidth=1.6,
                                color=method_colour(method), linestyle="--" if method == "random" else "-",
                                label=legend_label(method, curve))
            entries.append((float(np.mean(curve)), line))
        entries.sort(key=lambda entry: -entry[0])
        axes.legend([e[1] for e in entries], [e[1].get_label() for e in entries], title="mean token F1, higher is "
                    "better", title_fontsize=7.5, fontsize=7.5, frameon=False, loc="upper left",
                    bbox_to_anchor=(1.02, 1.0), handlelength=1.8, alignment="left")
        axes.set_xlabel("k (the top-k words form the rationale)")
        axes.set_ylabel("token F1 (%)")
        axes.set_xticks(x if len(x) <= 20 else x[::2])
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.25, linewidth=0.6)
        figure.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=10.5, fontweight="bold")
        figure.text(0.01, 0.05 / height, "\n".join(lines), ha="left", va="bottom", fontsize=7, color="#333333",
                    linespacing=1.3)
    return figure


def figure_pixels(figure, dpi: int = 100) -> np.ndarray:
    """A figure drawn as a uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
