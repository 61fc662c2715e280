"""The head view (Vig 2019, BertViz): one block's attention as lines from query tokens to key tokens.

Queries stand in a left column and keys in a right one; each head draws its lines in its own colour, the
opacity of a line being the attention weight. Blocks and heads are selectable, and hovering a token shows only
its lines (hover a query: where it attends; hover a key: what attends to it). The drawing is rendered in Python
(it shows without JavaScript); :file:`views.js` makes it interactive.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from relevance.views.capture import TokenAttention
from relevance.views.html import View, encode_array, head_colours
from relevance.views.source import as_sample
from relevance.views.svg import LineLayout, attention_paths, line_layout, token_column

__all__ = ["head_view", "head_controls", "lines_svg", "resolve_layer", "resolve_heads"]


def resolve_layer(data: TokenAttention, layer: int | None) -> int:
    """A block index (negative counts from the end; ``None``: the last block)."""
    layers = data.num_layers
    layer = layers - 1 if layer is None else int(layer)
    if not -layers <= layer < layers:
        raise ValueError(f"layer must lie in [{-layers}, {layers - 1}], got {layer}")
    return layer % layers


def resolve_heads(data: TokenAttention, heads: Sequence[int] | None) -> list[int]:
    """Sorted head indices (``None``: every head)."""
    if heads is None:
        return list(range(data.num_heads))
    chosen = sorted({int(h) for h in heads})
    if not chosen or any(not 0 <= h < data.num_heads for h in chosen):
        raise ValueError(f"heads must be indices in [0, {data.num_heads - 1}], got {list(heads)}")
    return chosen


def head_controls(layers: int, layer: int, colours: Sequence[str], heads: Sequence[int]) -> str:
    """The block selector and head swatches (hidden until the script shows them)."""
    options = "".join(f'<option value="{l}"{" selected" if l == layer else ""}>{l}</option>' for l in range(layers))
    swatches = "".join(
        f'<span class="rv-swatch{"" if h in heads else " rv-off"}" data-head="{h}" role="button" tabindex="0" '
        f'title="head {h}: click to show or hide" style="background: {colour};">{h}</span>'
        for h, colour in enumerate(colours))
    return (f'<div class="rv-controls" hidden><label>Block <select class="rv-layer">{options}</select></label>'
            f"<span>Heads {swatches}</span></div>")


def lines_svg(data: TokenAttention, layout: LineLayout, layer: int, heads: Sequence[int], colours: Sequence[str],
              min_weight: float, css: str = "rv-lines") -> str:
    """The static drawing of one block's lines for ``heads``, with both token columns."""
    width, height = layout.width, layout.height(data.num_tokens)
    paths = attention_paths([(h, data.attention[layer, h]) for h in heads], colours, layout, min_weight)
    return (f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="attention lines from query to key tokens">'
            f'<g class="rv-base">{paths}</g><g class="rv-highlight"></g>'
            f'<g class="rv-tokens">{token_column(data.tokens, data.special, layout, "q")}'
            f'{token_column(data.tokens, data.special, layout, "k")}</g></svg>')


def _note(layer: int, heads: Sequence[int], total: int) -> str:
    which = "all heads" if len(heads) == total else "heads " + ", ".join(map(str, heads))
    return f"Block {layer}, {which}: line opacity = attention weight (queries left, keys right)."


def head_view(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
              layer: int | None = None, heads: Sequence[int] | None = None, min_weight: float = 0.01) -> View:
    """The head view of Vig 2019 (BertViz): one block's attention, lines from queries to keys, per head.

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention`, an :class:`~relevance.views.AttentionCapture`, or a model
        (then ``inputs`` are captured).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream (default: the first of each).
    layer:
        The block shown first (negative counts from the end; default: the last).
    heads:
        The heads shown first (default: all).
    min_weight:
        Lines of lower weight are not drawn (they would be almost transparent).

    Returns
    -------
    View
        Displays itself in notebooks (``_repr_html_``); ``.save(path)`` writes a standalone page.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream)
    layer, chosen = resolve_layer(data, layer), resolve_heads(data, heads)
    colours = head_colours(data.num_heads)
    layout = line_layout(data.tokens)
    payload = {
        "tokens": list(data.tokens), "special": list(map(bool, data.special)),
        "attention": encode_array(data.attention), "colours": colours, "layer": layer, "heads": chosen,
        "layout": layout.as_dict(), "minWeight": float(min_weight),
    }

    def body(element_id: str) -> str:
        return (head_controls(data.num_layers, layer, colours, chosen)
                + lines_svg(data, layout, layer, chosen, colours, min_weight)
                + f'<div class="rv-note">{html.escape(_note(layer, chosen, data.num_heads))}'
                "<noscript> Enable JavaScript to choose blocks and heads and to hover tokens.</noscript></div>")

    title = f"Head view · {data.model + ' · ' if data.model else ''}{data.stream} stream, {data.num_tokens} tokens"
    return View("head", title, payload, body)
