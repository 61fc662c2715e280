"""The look every figure shares: matplotlib settings, image grids with captions, method colours, deterministic files.

Figures are drawn with matplotlib's Agg canvas (no display needed) and written as PNG and PDF. Both files are
byte-for-byte reproducible: the PNG carries no date, the PDF no creation date (matplotlib's PDF ``/ID`` is derived
from the content), and PNGs are reduced to a 256-colour palette so that README pictures stay small.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "RC",
    "method_colour",
    "method_title",
    "citation_caption",
    "image_grid",
    "row_figure",
    "colour_keys",
    "save",
]

#: matplotlib settings of every figure (DejaVu Sans ships with matplotlib: the same glyphs on every machine).
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "pdf.fonttype": 42,
    "svg.hashsalt": "relevance",
}

#: One colour per method, the same in every figure (Okabe-Ito and Tableau colours, distinguishable in print).
_COLOURS = {
    "attention": "#999999",
    "rollout": "#56B4E9",
    "attention_gradcam": "#E69F00",
    "lrp": "#8C564B",
    "partial_lrp": "#CC79A7",
    "transformer_attribution": "#D55E00",
    "gradient_rollout": "#009E73",
    "attnlrp": "#0072B2",
    "cp_lrp": "#6A3D9A",
    "legrad": "#F0E442",
    "random": "#000000",
}

#: Short column titles (the full titles and citations go in the caption).
_SHORT = {
    "attention": "Raw attention",
    "rollout": "Rollout",
    "attention_gradcam": "Attn. Grad-CAM",
    "lrp": "LRP",
    "partial_lrp": "Partial LRP",
    "transformer_attribution": "Transformer attr.",
    "gradient_rollout": "Gradient rollout",
    "attnlrp": "AttnLRP",
    "cp_lrp": "CP-LRP",
    "legrad": "LeGrad",
    "random": "Random",
}


def method_colour(method: str) -> str:
    """The colour of ``method`` in every plot."""
    if method in _COLOURS:
        return _COLOURS[method]
    palette = plt.get_cmap("tab20").colors
    return matplotlib.colors.to_hex(palette[sum(map(ord, method)) % len(palette)])


def method_title(method: str) -> str:
    """A short title for ``method`` (``relevance.get_method(m).title`` when no short one is known)."""
    if method in _SHORT:
        return _SHORT[method]
    try:
        import relevance

        return relevance.get_method(method).title
    except ValueError:
        return method


def caption_width(figure_inches: float, font_size: float = 7.0) -> int:
    """Characters per caption line that fit a figure ``figure_inches`` wide (DejaVu Sans is ~0.55 em wide)."""
    return max(60, int((figure_inches - 0.5) * 72 / (0.56 * font_size)))


def citation_caption(methods: Sequence[str], width: int = 160) -> tuple[str, dict[str, int]]:
    """``"[1] Raw attention: <citation>. [2] ..."`` wrapped at ``width`` characters, and each method's number."""
    import relevance

    numbers, parts = {}, []
    for method in methods:
        if method in numbers or method == "random":
            continue
        spec = relevance.get_method(method)
        numbers[method] = len(numbers) + 1
        parts.append(f"[{numbers[method]}] {spec.title}: {spec.citation}.")
    return "\n".join(textwrap.wrap(" ".join(parts), width=width)), numbers


def image_grid(images: Sequence[Sequence[np.ndarray | None]], *, column_titles: Sequence[str],
               row_labels: Sequence[str], title: str, caption: str = "", cell: float = 1.3,
               keys: bool = True, label_width: float = 0.85) -> Figure:
    """A grid of pictures: rows x columns of uint8 RGB images, titled columns, labelled rows, a caption below.

    Parameters
    ----------
    images:
        ``images[r][c]`` uint8 (H, W, 3), or ``None`` for an empty cell.
    column_titles, row_labels:
        One per column / row (``\\n`` breaks lines; row labels are written left of the row).
    title:
        The figure's title (top).
    caption:
        Text below the grid (method names and citations); paragraphs (``\\n``) are wrapped to the figure's width.
    cell:
        Side of one picture in inches.
    keys:
        Draw the colour keys of unsigned (jet) and signed (blue-white-red) maps below the grid.
    label_width:
        Inches left of the grid for the row labels.
    """
    rows, columns = len(images), len(column_titles)
    if len(row_labels) != rows or any(len(r) != columns for r in images):
        raise ValueError("images must be rows x columns, with one title per column and one label per row")
    gap = 0.06
    width = label_width + columns * cell + (columns - 1) * gap + 0.12
    lines = [wrapped for paragraph in caption.split("\n") if paragraph
             for wrapped in textwrap.wrap(paragraph, caption_width(width))]
    caption = "\n".join(lines)
    top = 0.5 + 0.14 * max(t.count("\n") + 1 for t in column_titles)
    bottom = 0.1 + (0.55 if keys else 0.0) + 0.128 * len(lines)
    height = top + rows * cell + (rows - 1) * gap + bottom
    with plt.rc_context(RC):
        figure = Figure(figsize=(width, height))
        for r in range(rows):
            for c in range(columns):
                x = (label_width + c * (cell + gap)) / width
                y = (bottom + (rows - 1 - r) * (cell + gap)) / height
                axes = figure.add_axes((x, y, cell / width, cell / height))
                axes.set_axis_off()
                if images[r][c] is not None:
                    axes.imshow(images[r][c], interpolation="antialiased")
                if r == 0:
                    axes.set_title(column_titles[c], fontsize=8.5, pad=3)
                if c == 0:
                    axes.text(-0.05, 0.5, row_labels[r], transform=axes.transAxes, ha="right", va="center",
                              fontsize=8, linespacing=1.3)
        figure.suptitle(title, y=1 - 0.1 / height, va="top", fontsize=10.5, fontweight="bold")
        if keys:
            colour_keys(figure, y=(0.07 + 0.128 * len(lines) + 0.27) / height, height=0.11 / height)
        if caption:
            figure.text(0.1 / width, 0.07 / height, caption, ha="left", va="bottom", fontsize=7, linespacing=1.3,
                        color="#333333")
    return figure


def colour_keys(figure: Figure, *, y: float, height: float) -> None:
    """Two small colour bars: unsigned maps (jet, low -> high, min-max per map) and signed maps (blue - white - red,
    centred on 0), as :meth:`relevance.ImageMap.overlay` draws them."""
    from relevance.render.colormaps import colormap_table

    for x, name, labels in ((0.12, "jet", ("low", "relevance (min-max per map)", "high")),
                            (0.58, "bwr", ("−max", "signed relevance (LRP, AttnLRP, CP-LRP)", "+max"))):
        axes = figure.add_axes((x, y, 0.3, height))
        axes.imshow(np.linspace(0, 1, 256)[None], aspect="auto", cmap=ListedColormap(colormap_table(name) / 255.0))
        ticks = [0, 127.5, 255] if name == "bwr" else [0, 255]
        axes.set_xticks(ticks, [labels[0], "0", labels[2]] if name == "bwr" else [labels[0], labels[2]], fontsize=7)
        axes.set_yticks([])
        axes.tick_params(length=2, pad=1)
        for spine in axes.spines.values():
            spine.set_visible(False)
        axes.set_title(labels[1], fontsize=7, pad=2)


def save(figure: Figure, stem: str | Path, *, dpi: int = 110, palette: bool = True,
         formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (``formats``), reproducibly; returns the paths.

    Parameters
    ----------
    figure:
        The figure.
    stem:
        Path without suffix (its folder is created).
    dpi:
        Resolution of the PNG.
    palette:
        Reduce the PNG to 256 colours with error diffusion (about 3x smaller; overlays keep their look).
    formats:
        ``"png"`` and/or ``"pdf"``.
    """
    from PIL import Image

    unknown = set(formats) - {"png", "pdf"}
    if unknown or not formats:
        raise ValueError(f"formats must be among png, pdf; got {list(formats)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    with plt.rc_context(RC):
        if "png" in formats:
            figure.savefig(png, dpi=dpi, metadata={"Software": None})
        if "pdf" in formats:
            figure.savefig(pdf, metadata={"CreationDate": None, "Creator": None, "Producer": None})
    if palette and "png" in formats:
        with Image.open(png) as image:
            rgb = image.convert("RGB")
        colours = rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        rgb.quantize(palette=colours, dither=Image.Dither.FLOYDSTEINBERG).save(png, optimize=True)
    return [path for kind, path in (("png", png), ("pdf", pdf)) if kind in formats]


def row_figure(rows: Sequence[tuple[str, Sequence[np.ndarray]]], *, column_widths: Sequence[float],
               column_titles: Sequence[str] | None = None, title: str, caption: str = "",
               label_width: float = 1.3) -> Figure:
    """Rows of pictures of different shapes (token heatmaps beside image overlays), each row as tall as needed.

    Parameters
    ----------
    rows:
        ``(label, pictures)`` per row: uint8 (H, W, 3) pictures, one per column (``None`` leaves a cell empty).
    column_widths:
        Width of each column in inches; a picture is scaled to its column's width.
    column_titles:
        One per column, above the first row.
    title, caption:
        The figure's title and the text below it (paragraphs wrapped to the figure's width).
    label_width:
        Inches left of the pictures for the row labels.
    """
    gap = 0.08
    width = label_width + sum(column_widths) + gap * (len(column_widths) - 1) + 0.12
    heights = []
    for _, pictures in rows:
        heights.append(max(w * p.shape[0] / p.shape[1] for w, p in zip(column_widths, pictures) if p is not None))
    lines = [wrapped for paragraph in caption.split("\n") if paragraph
             for wrapped in textwrap.wrap(paragraph, caption_width(width))]
    top = 0.55 + (0.2 if column_titles else 0.0)
    bottom = 0.12 + 0.128 * len(lines)
    height = top + sum(heights) + gap * (len(rows) - 1) + bottom
    with plt.rc_context(RC):
        figure = Figure(figsize=(width, height))
        y = height - top
        for r, ((label, pictures), row_height) in enumerate(zip(rows, heights)):
            y -= row_height
            x = label_width
            for c, (column_width, picture) in enumerate(zip(column_widths, pictures)):
                if picture is not None:
                    shown = column_width * picture.shape[0] / picture.shape[1]
                    axes = figure.add_axes((x / width, (y + row_height - shown) / height, column_width / width,
                                            shown / height))
                    axes.set_axis_off()
                    axes.imshow(picture, interpolation="antialiased")
                    if r == 0 and column_titles:
                        axes.set_title(column_titles[c], fontsize=8.5, pad=3)
                x += column_width + gap
            figure.text((label_width - 0.08) / width, (y + row_height / 2) / height, label, ha="right",
                        va="center", fontsize=8, linespacing=1.3)
            y -= gap
        figure.suptitle(title, y=1 - 0.1 / height, va="top", fontsize=10.5, fontweight="bold")
        if lines:
            figure.text(0.1 / width, 0.07 / height, "\n".join(lines), ha="left", va="bottom", fontsize=7,
                        linespacing=1.3, color="#333333")
    return figure
