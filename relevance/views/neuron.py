"""The neuron view (Vig 2019, BertViz; Hoover et al. 2020, exBERT): how one query's attention is computed.

For a selected block, head and query token it shows the query vector ``q``, every key vector ``k_j``, their
element-wise products ``q * k_j`` (whose sum, scaled, is the score), the scores ``s_j = scale * q . k_j`` and the
attention ``softmax_j(s)``, with lines from the query to the keys whose opacity is the attention. Hovering a
query token selects it. The family's attention must record its vectors with
:func:`relevance.ops.record_query_key` (captured with ``query_key=True``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from relevance.render.colormaps import colormap_table, levels
from relevance.views.capture import TokenAttention
from relevance.views.head import head_controls, resolve_layer
from relevance.views.html import View, encode_array, head_colours
from relevance.views.source import as_sample
from relevance.views.svg import line_layout, number, token_column

__all__ = ["NeuronNumbers", "neuron_numbers", "neuron_view"]

_TABLE = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in colormap_table("bwr").tolist()]


@dataclass(frozen=True)
class NeuronNumbers:
    """What the neuron view shows for one block, head and query token.

    Attributes
    ----------
    query:
        (d,) the query vector.
    keys:
        (n, d) the key vectors.
    products:
        (n, d) ``query * keys``.
    scores:
        (n,) ``scale * keys @ query``.
    attention:
        (n,) the recorded attention of the query (equal to ``softmax(scores)`` up to masking).
    """

    query: np.ndarray
    keys: np.ndarray
    products: np.ndarray
    scores: np.ndarray
    attention: np.ndarray


def neuron_numbers(data: TokenAttention, layer: int, head: int, query: int) -> NeuronNumbers:
    """The numbers of the neuron view (Vig 2019) for one block, head and query token."""
    data.require_query_key()
    q = data.queries[layer, head, query].astype(np.float64)
    k = data.keys[layer, head].astype(np.float64)
    products = k * q
    return NeuronNumbers(query=q, keys=k, products=products, scores=products.sum(-1) * data.scales[layer],
                         attention=data.attention[layer, head, query].astype(np.float64))


@dataclass(frozen=True)
class _Geometry:
    row: int
    top: int
    left: int
    lines: int
    cell: int
    dim: int

    @property
    def keys_x(self) -> int:
        return self.left + self.lines + self.left

    @property
    def products_x(self) -> int:
        return self.keys_x + self.dim * self.cell + 14

    @property
    def scores_x(self) -> int:
        return self.products_x + self.dim * self.cell + 64

    @property
    def weights_x(self) -> int:
        return self.scores_x + 12

    @property
    def width(self) -> int:
        return self.weights_x + 52 + 84

    def y(self, index: int) -> float:
        return self.top + index * self.row + self.row / 2

    def as_dict(self) -> dict[str, int]:
        return {"row": self.row, "top": self.top, "left": self.left, "lines": self.lines, "cell": self.cell,
                "dim": self.dim}


def _colour(value: float, scale: float) -> str:
    return _TABLE[int(levels(np.array(value / scale if scale > 0 else 0.0), signed=True))]


def _cells(values: np.ndarray, x: float, y: float, geometry: _Geometry, scale: float, css: str) -> str:
    height = geometry.row - 4
    return "".join(f'<rect class="{css}" x="{number(x + c * geometry.cell)}" y="{number(y + 2)}" '
                   f'width="{geometry.cell - 1}" height="{height}" fill="{_colour(v, scale)}"/>'
                   for c, v in enumerate(values.tolist()))


def _dynamic(numbers: NeuronNumbers, geometry: _Geometry, vector_scale: float) -> str:
    """The parts that depend on the query: q row, key cells, products, scores, weights, lines."""
    g, n = geometry, len(numbers.scores)
    product_scale = float(np.abs(numbers.products).max()) or 1.0
    parts = [_cells(numbers.query, g.keys_x, g.top - g.row - 2, g, vector_scale, "rv-q")]
    top_weight = float(numbers.attention.max()) or 1.0
    for j in range(n):
        y = g.y(j)
        parts.append(_cells(numbers.keys[j], g.keys_x, y - g.row / 2, g, vector_scale, "rv-k"))
        parts.append(_cells(numbers.products[j], g.products_x, y - g.row / 2, g, product_scale, "rv-p"))
        parts.append(f'<text class="rv-score" x="{number(g.scores_x)}" y="{number(y)}" text-anchor="end" '
                     f'dominant-baseline="middle">{numbers.scores[j]:.2f}</text>')
        weight = float(numbers.attention[j])
        parts.append(f'<text class="rv-weight" x="{number(g.weights_x)}" y="{number(y)}" '
                     f'dominant-baseline="middle">{weight:.3f}</text>')
        parts.append(f'<rect class="rv-bar" x="{number(g.weights_x + 48)}" y="{number(y - g.row / 2 + 3)}" '
                     f'width="{number(80 * weight / top_weight)}" height="{g.row - 6}" fill="#1f77b4"/>')
    return "".join(parts)


def _lines(numbers: NeuronNumbers, query: int, geometry: _Geometry, colour: str) -> str:
    g = geometry
    return "".join(
        f'<line class="rv-nl" data-q="{query}" data-k="{j}" data-w="{w!r}" x1="{number(g.left)}" '
        f'y1="{number(g.y(query))}" x2="{number(g.left + g.lines)}" y2="{number(g.y(j))}" stroke="{colour}" '
        f'stroke-opacity="{min(1.0, 0.1 + w):.3f}" stroke-width="2"/>'
        for j, w in enumerate(numbers.attention.astype(np.float32).tolist()) if w >= 0.005)


def neuron_view(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
                layer: int | None = None, head: int = 0, query: int | None = None) -> View:
    """The neuron view of Vig 2019 (BertViz) and Hoover et al. 2020 (exBERT): query and key vectors, their
    products, the scores and the attention, for one block, head and query token.

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention` or :class:`~relevance.views.AttentionCapture` captured with
        ``query_key=True``, or a model (then ``inputs`` are captured so).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream (default: the first of each).
    layer, head:
        The block (negative counts from the end; default: the last) and head shown first.
    query:
        The query token shown first (default: the readout token, [CLS]).

    Returns
    -------
    View
        Displays itself in notebooks; ``.save(path)`` writes a standalone page.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream, query_key=True)
    data.require_query_key()
    layer = resolve_layer(data, layer)
    if not 0 <= int(head) < data.num_heads:
        raise ValueError(f"head must lie in [0, {data.num_heads - 1}], got {head}")
    head = int(head)
    query = data.readout_index() if query is None else int(query)
    if not 0 <= query < data.num_tokens:
        raise ValueError(f"query must be a token index in [0, {data.num_tokens - 1}], got {query}")
    dim = int(data.queries.shape[-1])
    base = line_layout(data.tokens)
    geometry = _Geometry(row=max(base.row, 14), top=2 * max(base.row, 14) + 14, left=base.left, lines=80,
                         cell=int(np.clip(256 // dim, 3, 12)), dim=dim)
    colours = head_colours(data.num_heads)
    numbers = neuron_numbers(data, layer, head, query)
    vector_scale = float(max(np.abs(data.queries[layer, head]).max(), np.abs(data.keys[layer, head]).max())) or 1.0
    payload = {
        "tokens": list(data.tokens), "special": list(map(bool, data.special)),
        "attention": encode_array(data.attention), "queries": encode_array(data.queries),
        "keys": encode_array(data.keys), "scales": list(data.scales), "colours": colours, "layer": layer,
        "head": head, "query": query, "geometry": geometry.as_dict(), "table": _TABLE,
    }

    def body(element_id: str) -> str:
        g = geometry
        width, height = g.width, g.top + data.num_tokens * g.row + 6
        layout = type(base)(row=g.row, top=g.top, left=g.left, lines=g.lines, right=g.left)
        header_y = g.top - g.row - 10
        headers = "".join(
            f'<text class="rv-axis" x="{number(x)}" y="{number(header_y)}" text-anchor="{anchor}">{label}</text>'
            for x, anchor, label in ((g.left - 5, "end", "query"), (g.left + g.lines + 5, "start", "key"),
                                     (g.keys_x, "start", "q (top) and k"), (g.products_x, "start", "q \u00d7 k"),
                                     (g.scores_x, "end", "scaled q\u00b7k"), (g.weights_x, "start", "softmax")))
        select = head_controls(data.num_layers, layer, colours, [head]).replace("<span>Heads", "<span>Head")
        return (
            select
            + f'<svg class="rv-neuron-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="query and key vectors, products and attention">'
            f"{headers}"
            f'<g class="rv-dynamic">{_dynamic(numbers, g, vector_scale)}</g>'
            f'<g class="rv-highlight">{_lines(numbers, query, g, colours[head])}</g>'
            f'<g class="rv-tokens">{token_column(data.tokens, data.special, layout, "q")}'
            f'{token_column(data.tokens, data.special, layout, "k")}</g></svg>'
            f'<div class="rv-note">{html.escape(_note(data, layer, head, query))}'
            "<noscript> Enable JavaScript to choose the block, head and query token.</noscript></div>")

    title = f"Neuron view · {data.model + ' · ' if data.model else ''}{data.stream} stream, {data.num_tokens} tokens"
    return View("neuron", title, payload, body, extras={"numbers": numbers})


def _note(data: TokenAttention, layer: int, head: int, query: int) -> str:
    return (f"Block {layer}, head {head}, query {data.tokens[query]!r}: blue negative, red positive; "
            f"scores = {data.scales[layer]:.3g} q\u00b7k; hover a query token to select it.")
