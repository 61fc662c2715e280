"""The model view (Vig 2019, BertViz): every block and head at once, as small line drawings.

A grid of thumbnails, one per block (row) and head (column), each the head view of one head. Clicking a
thumbnail opens that head below; hovering a token there highlights its lines in every thumbnail, so one can
follow a token through the whole model. Without JavaScript the grid shows as a PNG (:func:`model_view_image`,
also written by the command line) and the last block's first head below it.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from relevance.render.fonts import default_font
from relevance.views.head import lines_svg, resolve_layer
from relevance.views.html import View, encode_array, head_colours
from relevance.views.source import as_sample
from relevance.views.svg import line_layout

__all__ = ["model_view", "model_view_image", "thumbnail_size"]


def thumbnail_size(tokens: int) -> tuple[int, int]:
    """(width, height) of one thumbnail for ``tokens`` tokens."""
    return 84, int(np.clip(tokens * 4, 64, 150))


def _y(index: int, count: int, height: int) -> float:
    return 4 + (index + 0.5) * (height - 8) / count


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def model_view_image(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
                     min_weight: float = 0.01) -> np.ndarray:
    """The model view's grid as a picture: uint8 RGB, one thumbnail per block (row) and head (column).

    Parameters
    ----------
    source, inputs, sample, stream:
        As for :func:`model_view`.
    min_weight:
        Lines of lower weight are not drawn.

    Returns
    -------
    numpy.ndarray
        (height, width, 3) uint8.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream)
    layers, heads, n = data.num_layers, data.num_heads, data.num_tokens
    width, height = thumbnail_size(n)
    gap, left, top = 4, 62, 22
    colours = head_colours(heads)
    image = Image.new("RGB", (left + heads * (width + gap) + 8, top + layers * (height + gap) + 8), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    font = default_font(12)
    for h in range(heads):
        draw.text((left + h * (width + gap) + width // 2 - 20, 4), f"head {h}", font=font, fill=(100, 100, 100))
    for l in range(layers):
        y0 = top + l * (height + gap)
        draw.text((6, y0 + height // 2 - 7), f"block {l}", font=font, fill=(100, 100, 100))
        for h in range(heads):
            x0 = left + h * (width + gap)
            draw.rectangle((x0, y0, x0 + width - 1, y0 + height - 1), outline=(227, 227, 227))
            rgb = _hex_rgb(colours[h])
            weights = data.attention[l, h]
            for i, j in zip(*np.nonzero(weights >= min_weight)):
                alpha = int(round(255 * min(1.0, float(weights[i, j]))))
                draw.line((x0 + 4, y0 + _y(i, n, height), x0 + width - 5, y0 + _y(j, n, height)), fill=rgb + (alpha,),
                          width=1)
    return np.asarray(image).copy()


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def model_view(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
               layer: int | None = None, head: int = 0, min_weight: float = 0.01) -> View:
    """The model view of Vig 2019 (BertViz): a thumbnail of every head of every block.

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention`, an :class:`~relevance.views.AttentionCapture`, or a model
        (then ``inputs`` are captured).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream (default: the first of each).
    layer, head:
        The head opened below the grid first (default: the last block's head 0).
    min_weight:
        Lines of lower weight are not drawn.

    Returns
    -------
    View
        Displays itself in notebooks; ``.save(path)`` writes a standalone page.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream)
    layer = resolve_layer(data, layer)
    if not 0 <= int(head) < data.num_heads:
        raise ValueError(f"head must lie in [0, {data.num_heads - 1}], got {head}")
    head = int(head)
    colours = head_colours(data.num_heads)
    layout = line_layout(data.tokens)
    width, height = thumbnail_size(data.num_tokens)
    fallback = model_view_image(data, min_weight=min_weight)
    payload = {
        "tokens": list(data.tokens), "special": list(map(bool, data.special)),
        "attention": encode_array(data.attention), "colours": colours, "layer": layer, "head": head,
        "layout": layout.as_dict(), "minWeight": float(min_weight), "thumb": {"width": width, "height": height},
    }

    def body(element_id: str) -> str:
        detail = f"Block {layer}, head {head}"
        return (
            '<div class="rv-controls" hidden>Click a head to open it below; hover a token there to follow it '
            "in every head.</div>"
            '<div class="rv-row"><div>'
            f'<div class="rv-fallback"><img alt="attention lines of every block and head" '
            f'src="{_png_data_uri(fallback)}" width="{fallback.shape[1]}" height="{fallback.shape[0]}"></div>'
            '<div class="rv-thumbs" hidden></div></div><div>'
            f'<div class="rv-caption rv-detail-caption">{html.escape(detail)}</div>'
            + lines_svg(data, layout, layer, [head], colours, min_weight)
            + '</div></div><div class="rv-note">Rows: blocks; columns: heads; line opacity = attention weight.'
            "<noscript> Enable JavaScript to open other heads and to follow tokens.</noscript></div>")

    title = f"Model view · {data.model + ' · ' if data.model else ''}{data.stream} stream, {data.num_tokens} tokens"
    return View("model", title, payload, body)
