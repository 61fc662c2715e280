"""The layers x heads grid of attention heatmaps, as a picture (PNG).

One tile per block (row) and head (column). For an image stream each tile is the attention of one query token
(default: the readout token, [CLS] for ViT) to every patch, drawn over the model's input image, in the manner
of the per-head attention maps of Caron et al. 2021 (DINO); for a text stream each tile is the head's whole
token-to-token matrix, rows attending to columns, as in Clark et al. 2019 ("What does BERT look at?") and the
model view of Vig 2019 (BertViz). :class:`AttentionGrid` keeps the values of every tile and where it lies, so
that what is drawn can be checked against what was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from relevance.render.colormaps import colormap_table, levels, lookup_colours
from relevance.render.fonts import default_font, drawable_text
from relevance.render.image import upsample
from relevance.views.capture import TokenAttention
from relevance.views.source import as_sample

__all__ = ["AttentionGrid", "attention_grid", "SCALES"]

#: How tile colours are scaled: each tile on its own, per block (row), or one scale for the whole grid.
SCALES = ("tile", "layer", "grid")
_INK, _MUTED = (17, 17, 17), (90, 90, 90)


@dataclass(frozen=True)
class AttentionGrid:
    """A drawn layers x heads grid.

    Attributes
    ----------
    image:
        uint8 RGB (height, width, 3).
    values:
        What the tiles show: (L, H, h, w) attention of the query token to the patches (image streams) or
        (L, H, n, n) attention matrices (text streams).
    boxes:
        ``(layer, head) -> (top, left, height, width)`` of each tile in ``image``.
    bounds:
        (L, H, 2) the values drawn with the colour map's first and last colour (``low, high``) per tile.
    tokens:
        The tokens (text) or ``None``.
    query:
        The query token of image tiles (an index into the stream's tokens), ``None`` for text.
    """

    image: np.ndarray
    values: np.ndarray
    boxes: dict[tuple[int, int], tuple[int, int, int, int]]
    bounds: np.ndarray
    tokens: list[str] | None
    query: int | None

    def save(self, path: str | Path) -> Path:
        """Write the grid as a PNG file (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.image).save(path, format="PNG")
        return path

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, format="PNG")
        return buffer.getvalue()


def attention_grid(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
                   query: int | None = None, tile: int = 112, scale: str = "tile", colormap: str | None = None,
                   alpha: float = 0.6) -> AttentionGrid:
    """Draw every head of every block: a layers x heads grid of attention heatmaps.

    Follows the per-head attention maps of Caron et al. 2021 (image streams: a query token's attention over the
    image) and the attention matrices of Clark et al. 2019 / Vig 2019 (text streams).

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention`, an :class:`~relevance.views.AttentionCapture`, or a model
        (then ``inputs`` are captured first).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream to draw (default: the first of each).
    query:
        Image streams: the query token whose attention is drawn (default: the readout token, [CLS]).
    tile:
        Tile size in pixels (image streams); text tiles use about as many pixels for their n x n cells.
    scale:
        ``"tile"`` (each tile from its own minimum to maximum), ``"layer"`` or ``"grid"`` (shared scales).
    colormap:
        A name in :data:`relevance.render.COLORMAPS` (default ``"jet"`` over images, ``"reds"`` for matrices).
    alpha:
        Opacity of the heatmap over the image.

    Returns
    -------
    AttentionGrid
        The picture, the values of every tile and where each tile lies.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if data.modality == "image" and data.grid_size is not None:
        return _image_grid(data, query, int(tile), scale, colormap or "jet", float(alpha))
    return _text_grid(data, int(tile), scale, colormap or "reds")


def _bounds(values: np.ndarray, scale: str, floor_zero: bool) -> np.ndarray:
    """(L, H, 2) low and high per tile for the scale mode."""
    axes = {"tile": (2, 3), "layer": (1, 2, 3), "grid": (0, 1, 2, 3)}[scale]
    high = np.broadcast_to(values.max(axis=axes, keepdims=True), values.shape)[:, :, 0, 0]
    low = np.zeros_like(high) if floor_zero else np.broadcast_to(values.min(axis=axes, keepdims=True),
                                                                  values.shape)[:, :, 0, 0]
    return np.stack([low, high], axis=-1)


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _image_tile(picture: np.ndarray, values: np.ndarray, low: float, high: float, size: int, table: np.ndarray,
                alpha: float) -> np.ndarray:
    """One image tile: the picture at ``size`` with the (h, w) values bilinearly upsampled and coloured over it."""
    heat = upsample(torch.from_numpy(values.astype(np.float64)), (size, size)).numpy()
    colour = lookup_colours(levels(_scaled(heat, low, high)), table).astype(np.float32)
    return np.rint((1 - alpha) * picture.astype(np.float32) + alpha * colour).astype(np.uint8)


def _image_grid(data: TokenAttention, query: int | None, tile: int, scale: str, colormap: str,
                alpha: float) -> AttentionGrid:
    layers, heads = data.num_layers, data.num_heads
    query = data.readout_index() if query is None else int(query)
    if not 0 <= query < data.num_tokens:
        raise ValueError(f"query must be a token index in [0, {data.num_tokens - 1}], got {query}")
    height, width = data.grid_size
    patches = np.array([p - data.num_prefix_tokens for p in data.positions]) >= 0
    values = data.attention[:, :, query][:, :, patches].reshape(layers, heads, height, width)
    bounds = _bounds(values, scale, floor_zero=False)
    picture = data.picture if data.picture is not None else np.full((tile, tile, 3), 128, np.uint8)
    picture = np.asarray(Image.fromarray(picture).resize((tile, tile), Image.Resampling.BILINEAR))
    table = colormap_table(colormap)
    tiles = [[_image_tile(picture, values[l, h], *bounds[l, h], tile, table, alpha) for h in range(heads)]
             for l in range(layers)]
    what = f"attention of {data.tokens[query]} to each patch"
    return _compose(tiles, values, bounds, None, query, title=f"{_stream_title(data)}: {what}",
                    note=_scale_note(scale, colormap))


def _matrix_tile(values: np.ndarray, low: float, high: float, cell: int, table: np.ndarray) -> np.ndarray:
    colours = lookup_colours(levels(_scaled(values, low, high)), table)
    return np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)


def _text_grid(data: TokenAttention, tile: int, scale: str, colormap: str) -> AttentionGrid:
    layers, heads, n = data.num_layers, data.num_heads, data.num_tokens
    cell = int(np.clip(tile * 3 // 2 // max(n, 1), 3, 14))
    values = data.attention
    bounds = _bounds(values, scale, floor_zero=True)
    table = colormap_table(colormap)
    tiles = [[_matrix_tile(values[l, h], *bounds[l, h], cell, table) for h in range(heads)] for l in range(layers)]
    return _compose(tiles, values, bounds, list(data.tokens), None,
                    title=f"{_stream_title(data)}: attention matrices (rows attend to columns)",
                    note=_scale_note(scale, colormap, zero_based=True), cell=cell)


def _stream_title(data: TokenAttention) -> str:
    name = f"{data.model} · " if data.model else ""
    return f"{name}{data.stream} stream, {data.num_layers} blocks x {data.num_heads} heads"


def _scale_note(scale: str, colormap: str, zero_based: bool = False) -> str:
    start = "0" if zero_based else "min"
    where = {"tile": "per tile", "layer": "per block (row)", "grid": "over the whole grid"}[scale]
    return f"colour ({colormap}): {start} to max {where}"


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _vertical_label(text: str, font, colour: tuple[int, int, int]) -> Image.Image:
    """``text`` drawn bottom-to-top on a transparent strip."""
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = scratch.textbbox((0, 0), text, font=font)
    strip = Image.new("RGBA", (int(right - left) + 2, int(bottom - top) + 2), (255, 255, 255, 0))
    ImageDraw.Draw(strip).text((1 - left, 1 - top), text, font=font, fill=colour + (255,))
    return strip.rotate(90, expand=True)


def _compose(tiles: list[list[np.ndarray]], values: np.ndarray, bounds: np.ndarray, tokens: list[str] | None,
             query: int | None, *, title: str, note: str, cell: int = 0) -> AttentionGrid:
    """Lay the tiles out with head and block labels (and token labels for matrices)."""
    layers, heads = len(tiles), len(tiles[0])
    tile_h, tile_w = tiles[0][0].shape[:2]
    gap, margin = 6, 12
    font, small = default_font(14), default_font(12)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_font = default_font(int(np.clip(cell - 1, 7, 11))) if tokens else None
    token_texts = [drawable_text(t, label_font) for t in tokens] if tokens else []
    show_tokens = bool(tokens) and cell >= 7
    token_w = max((_text_width(scratch, t, label_font) for t in token_texts), default=0) + 4 if show_tokens else 0
    row_label_w = _text_width(scratch, f"block {layers - 1}", font) + 10
    left0 = margin + row_label_w + token_w
    title_h, head_h = 24, 20
    top0 = margin + title_h + head_h + (token_w if show_tokens else 0)
    width = left0 + heads * tile_w + (heads - 1) * gap + margin
    height = top0 + layers * tile_h + (layers - 1) * gap + 22 + margin
    title = drawable_text(title, font)
    width = max(width, margin * 2 + _text_width(scratch, title, font), left0 + _text_width(scratch, note, small) + margin)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), title, font=font, fill=_INK)
    boxes = {}
    for h in range(heads):
        x = left0 + h * (tile_w + gap)
        label = f"head {h}"
        draw.text((x + (tile_w - _text_width(draw, label, small)) // 2, margin + title_h), label, font=small,
                  fill=_MUTED)
        if show_tokens:
            for j, text in enumerate(token_texts):
                strip = _vertical_label(text, label_font, _MUTED)
                canvas.paste(strip, (x + j * cell + (cell - strip.size[0]) // 2, top0 - 2 - strip.size[1]), strip)
    for l in range(layers):
        y = top0 + l * (tile_h + gap)
        draw.text((margin, y + tile_h // 2 - 8), f"block {l}", font=font, fill=_MUTED)
        if show_tokens:
            for i, text in enumerate(token_texts):
                draw.text((left0 - 3 - _text_width(draw, text, label_font), y + i * cell), text, font=label_font,
                          fill=_MUTED)
        for h in range(heads):
            x = left0 + h * (tile_w + gap)
            draw.rectangle((x - 1, y - 1, x + tile_w, y + tile_h), outline=(200, 200, 200))
            canvas.paste(Image.fromarray(tiles[l][h]), (x, y))
            boxes[(l, h)] = (y, x, tile_h, tile_w)
    draw.text((left0, height - margin - 14), drawable_text(note, small), font=small, fill=_MUTED)
    return AttentionGrid(image=np.asarray(canvas).copy(), values=values, boxes=boxes, bounds=bounds,
                         tokens=tokens, query=query)
