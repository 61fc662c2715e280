"""Drawing attention flows (DeRose, Wang & Berger 2020, "Attention Flows"): HTML and PNG.

A flow (:mod:`relevance.flows`) is drawn as a layered graph: one column of tokens per block boundary (the
input tokens on the left, the tokens leaving the last block on the right), an edge between adjacent columns
whose width is the flow it carries, and a dot per token whose area is the flow through it. Two models' flows on
the same input are drawn side by side with their difference (red: more flow in the first, blue: in the second).

The HTML view recomputes the flows in :file:`views.js` from the embedded attention: heads are selectable, the
traced output is chosen among the tokens (or the readout, the [CLS] decision), the edge weights are attention or
gradient-weighted attention when gradients were captured, and hovering a token highlights the flow through it
(which, at the input column, adds up to the token's rollout value in every block).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from relevance.flows import AttentionFlow, FlowComparison, attention_flow, compare_flows
from relevance.render.fonts import default_font, drawable_text
from relevance.views.capture import TokenAttention
from relevance.views.head import head_controls
from relevance.views.html import View, encode_array, head_colours
from relevance.views.source import as_sample
from relevance.views.svg import CHAR_WIDTH, number

__all__ = ["flow_comparison_image", "flow_comparison_view", "flow_image", "flow_view"]

FLOW_COLOUR, MORE_COLOUR, LESS_COLOUR, TRACE_COLOUR = "#3b6ea5", "#c0392b", "#2e64c8", "#e8590c"
#: Edges carrying less than this fraction of the panel's largest edge are not drawn.
MIN_FLOW = 0.02


@dataclass(frozen=True)
class _Geometry:
    row: int
    top: int
    label: int
    column: int
    layers: int

    def x(self, layer: int) -> float:
        return self.label + 8 + layer * self.column

    def y(self, index: int) -> float:
        return self.top + index * self.row + self.row / 2

    @property
    def width(self) -> int:
        return int(self.x(self.layers)) + 8 + self.label

    def height(self, count: int) -> int:
        return self.top + count * self.row + 8

    def as_dict(self) -> dict[str, int]:
        return {"row": self.row, "top": self.top, "label": self.label, "column": self.column, "layers": self.layers}


def _geometry(tokens: Sequence[str], layers: int) -> _Geometry:
    label = int(math.ceil(max((len(t) for t in tokens), default=1) * CHAR_WIDTH)) + 10
    return _Geometry(row=16 if len(tokens) <= 40 else 12, top=30, label=label, column=120 if layers > 6 else 150,
                     layers=layers)


def _node_colour(value: float, top: float, signed: bool) -> str:
    if not signed:
        return "#222222"
    if abs(value) <= 1e-9 * top:
        return "#999999"
    return MORE_COLOUR if value > 0 else LESS_COLOUR


def _edge_path(g: _Geometry, layer: int, source: int, target: int) -> str:
    x0, x1, y0, y1 = g.x(layer), g.x(layer + 1), g.y(source), g.y(target)
    middle = (x0 + x1) / 2
    return (f"M{number(x0)} {number(y0)}C{number(middle)} {number(y0)} {number(middle)} {number(y1)} "
            f"{number(x1)} {number(y1)}")


def _panel_svg(title: str, tokens: Sequence[str], special: Sequence[bool], nodes: np.ndarray, edges: np.ndarray,
               g: _Geometry, signed: bool, panel: int) -> str:
    """One flow (or difference) as a static SVG, drawn by the same rules as :file:`views.js`."""
    n = len(tokens)
    width, height = g.width, g.height(n)
    top_edge = float(np.abs(edges).max()) or 1.0
    top_node = float(np.abs(nodes).max()) or 1.0
    parts = [f'<svg class="rv-flow-svg" data-panel="{panel}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">']
    for layer in range(g.layers + 1):
        label = "input" if layer == 0 else f"block {layer - 1}"
        parts.append(f'<text class="rv-axis" x="{number(g.x(layer))}" y="14" text-anchor="middle">{label}</text>')
    parts.append('<g class="rv-base">')
    for layer in range(g.layers):
        for j, i in zip(*np.nonzero(np.abs(edges[layer]) >= MIN_FLOW * top_edge)):
            flow = float(edges[layer, j, i])
            colour = (MORE_COLOUR if flow > 0 else LESS_COLOUR) if signed else FLOW_COLOUR
            parts.append(f'<path class="rv-edge" data-layer="{layer}" data-from="{i}" data-to="{j}" '
                         f'd="{_edge_path(g, layer, int(i), int(j))}" stroke="{colour}" stroke-opacity="0.5" '
                         f'stroke-width="{0.5 + 7.5 * abs(flow) / top_edge:.2f}" fill="none"/>')
    parts.append('</g><g class="rv-highlight"></g><g class="rv-nodes">')
    for layer in range(g.layers + 1):
        for i in range(n):
            value = float(nodes[layer, i])
            colour = _node_colour(value, top_node, signed)
            parts.append(f'<circle class="rv-node" data-layer="{layer}" data-index="{i}" data-value="{value!r}" '
                         f'cx="{number(g.x(layer))}" cy="{number(g.y(i))}" '
                         f'r="{1.5 + 5 * math.sqrt(abs(value) / top_node):.2f}" fill="{colour}"/>')
    parts.append('</g><g class="rv-tokens">')
    for i, (token, is_special) in enumerate(zip(tokens, special)):
        css = "rv-token rv-special" if is_special else "rv-token"
        for side, x, anchor in (("in", g.x(0) - 9, "end"), ("out", g.x(g.layers) + 9, "start")):
            parts.append(f'<text class="{css}" data-side="{side}" data-index="{i}" x="{number(x)}" '
                         f'y="{number(g.y(i))}" text-anchor="{anchor}" dominant-baseline="middle">'
                         f"{html.escape(token)}</text>")
    parts.append("</g></svg>")
    return "".join(parts)


def _output_label(data: TokenAttention, output: str | int) -> str:
    return f"the readout ({data.tokens[data.readout_index()]})" if output == "readout" else repr(data.tokens[int(output)])


def _controls(data: TokenAttention, heads: Sequence[int], output: str | int, weights: str, gradients: bool) -> str:
    colours = head_colours(data.num_heads)
    swatches = head_controls(1, 0, colours, heads)
    swatches = swatches[swatches.index("<span>Heads"):swatches.rindex("</div>")]
    options = ['<option value="readout"' + (" selected" if output == "readout" else "") + ">readout "
               f"({html.escape(data.tokens[data.readout_index()])})</option>"] if data.readout is not None else []
    options += [f'<option value="{i}"{" selected" if output == i else ""}>{i}: {html.escape(t)}</option>'
                for i, t in enumerate(data.tokens)]
    weight_options = "".join(f'<option value="{w}"{" selected" if w == weights else ""}>{label}</option>'
                             for w, label in (("attention", "attention (rollout)"),
                                              ("gradient", "gradient \u00d7 attention")) if gradients or w == "attention")
    return (f'<div class="rv-controls" hidden><label>Output <select class="rv-output">{"".join(options)}</select></label>'
            f'<label>Edges <select class="rv-weights">{weight_options}</select></label>{swatches}</div>')


def _panels(samples: Sequence[TokenAttention], flows: Sequence[AttentionFlow], names: Sequence[str],
            difference: FlowComparison | None) -> tuple[str, _Geometry]:
    g = _geometry(samples[0].tokens, samples[0].num_layers)
    cells = []
    for index, (flow, name) in enumerate(zip(flows, names)):
        cells.append(f'<div><div class="rv-caption rv-panel-caption">{html.escape(name)}</div>'
                     + _panel_svg(name, flow.tokens, flow.special, flow.nodes, flow.edges, g, False, index) + "</div>")
    if difference is not None:
        name = f"difference: {difference.names[0]} \u2212 {difference.names[1]} (red: more in the first)"
        cells.append(f'<div><div class="rv-caption rv-panel-caption">{html.escape(name)}</div>'
                     + _panel_svg(name, flows[0].tokens, flows[0].special, difference.nodes, difference.edges, g,
                                  True, len(flows)) + "</div>")
    return '<div class="rv-row">' + "".join(cells) + "</div>", g


def _view(samples: Sequence[TokenAttention], names: Sequence[str], output: str | int, heads: Sequence[int] | None,
          weights: str) -> View:
    first = samples[0]
    chosen = tuple(range(first.num_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
    flows = [attention_flow(s, output=output, heads=chosen, weights=weights) for s in samples]
    difference = compare_flows(flows[0], flows[1], tuple(names)) if len(flows) == 2 else None
    body_panels, g = _panels(samples, flows, names, difference)
    gradients = all(s.gradients is not None for s in samples)
    payload = {
        "tokens": list(first.tokens), "special": list(map(bool, first.special)), "names": list(names),
        "panels": [{"attention": encode_array(s.attention),
                    "gradients": encode_array(s.gradients) if s.gradients is not None else None,
                    "readout": None if s.readout is None else [float(v) for v in s.readout]} for s in samples],
        "heads": list(chosen), "output": output, "weights": weights, "geometry": g.as_dict(), "minFlow": MIN_FLOW,
        "colours": {"flow": FLOW_COLOUR, "more": MORE_COLOUR, "less": LESS_COLOUR, "trace": TRACE_COLOUR},
    }
    which = "gradient \u00d7 attention" if weights == "gradient" else "attention rollout"
    note = (f"Flow of {_output_label(first, output)} back to the input tokens ({which}, "
            f"{'all heads' if len(chosen) == first.num_heads else 'heads ' + ', '.join(map(str, chosen))}): "
            "edge width = flow, dot area = flow through the token; hover a token to trace its flow.")

    def body(element_id: str) -> str:
        return (_controls(first, chosen, output, weights, gradients) + body_panels
                + f'<div class="rv-note">{html.escape(note)}<noscript> Enable JavaScript to choose the output, '
                "heads and edge weights and to trace tokens.</noscript></div>")

    kind = "Attention flow comparison" if difference is not None else "Attention flow"
    title = f"{kind} · {' vs '.join(names)} · {first.stream} stream, {first.num_tokens} tokens"
    return View("flow", title, payload, body, extras={"flows": flows, "comparison": difference})


def flow_view(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
              output: str | int = "readout", heads: Sequence[int] | None = None, weights: str = "attention",
              name: str | None = None) -> View:
    """The attention flow of one model as an interactive layered graph (DeRose, Wang & Berger 2020).

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention`, an :class:`~relevance.views.AttentionCapture` (with
        ``gradients=True`` to offer gradient-weighted edges) or a model (then ``inputs`` are captured so).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream (default: the first of each).
    output:
        The traced output first shown: ``"readout"`` (the [CLS] decision) or a token index.
    heads:
        The heads averaged first (default: all).
    weights:
        ``"attention"`` (rollout, Abnar & Zuidema 2020) or ``"gradient"`` (Chefer et al. ICCV 2021).
    name:
        The caption of the graph (default: the model's name).

    Returns
    -------
    View
        ``view.extras["flows"]`` holds the :class:`~relevance.flows.AttentionFlow` drawn.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream, gradients=True)
    return _view([data], [name or data.model or "model"], output, heads, weights)


def flow_comparison_view(first: Any, second: Any, inputs: Any = None, *, sample: int = 0,
                         stream: str | None = None, names: tuple[str, str] | None = None,
                         output: str | int = "readout", heads: Sequence[int] | None = None,
                         weights: str = "attention") -> View:
    """Two models' attention flows on the same input, side by side and as a difference (DeRose et al. 2020).

    Parameters
    ----------
    first, second:
        Captured attention of the same input (same tokens and depth), or two models (then ``inputs`` are
        captured with each), e.g. a pretrained model and its fine-tuned version.
    inputs:
        The inputs when models are given.
    sample, stream, output, heads, weights:
        As for :func:`flow_view`; the same for both models.
    names:
        Captions of the two models (default: their names, or "first" and "second").

    Returns
    -------
    View
        ``view.extras["comparison"]`` holds the :class:`~relevance.flows.FlowComparison` drawn.
    """
    a = as_sample(first, inputs, sample=sample, stream=stream, gradients=True)
    b = as_sample(second, inputs, sample=sample, stream=stream, gradients=True)
    if a.attention.shape[0] != b.attention.shape[0] or a.tokens != b.tokens:
        raise ValueError("the two models must see the same tokens and have the same depth to be compared")
    if a.num_heads != b.num_heads and heads is not None:
        raise ValueError("head selection needs the same number of heads in both models")
    default = (a.model or "first", b.model or "second")
    if default[0] == default[1]:
        default = (default[0] + " (first)", default[1] + " (second)")
    return _view([a, b], list(names or default), output, heads, weights)


# ------------------------------------------------------------------------------------------------ PNG
def _hex(colour: str, alpha: int = 255) -> tuple[int, int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) + (alpha,)


def _faded(colour: str) -> tuple[int, int, int, int]:
    """The colour at half opacity over white, opaque."""
    return tuple(round((c + 255) / 2) for c in _hex(colour)[:3]) + (255,)


def _draw_panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], title: str, tokens: Sequence[str],
                nodes: np.ndarray, edges: np.ndarray, g: _Geometry, signed: bool) -> None:
    ox, oy = origin
    font, small = default_font(14), default_font(11)
    draw.text((ox + 4, oy), drawable_text(title, font), font=font, fill=(17, 17, 17))
    oy += 22
    top_edge = float(np.abs(edges).max()) or 1.0
    top_node = float(np.abs(nodes).max()) or 1.0
    for layer in range(g.layers + 1):
        label = "input" if layer == 0 else f"block {layer - 1}"
        draw.text((ox + g.x(layer) - 3 * len(label), oy + 4), label, font=small, fill=(100, 100, 100))
    steps = np.linspace(0, 1, 17)
    shape = 3 * steps ** 2 - 2 * steps ** 3  # the cubic with horizontal tangents at both ends
    lines = []
    for layer in range(g.layers):
        for j, i in zip(*np.nonzero(np.abs(edges[layer]) >= MIN_FLOW * top_edge)):
            lines.append((abs(float(edges[layer, j, i])), float(edges[layer, j, i]), layer, int(i), int(j)))
    for size, flow, layer, i, j in sorted(lines):  # strong edges on top; opaque, so overlaps leave no seams
        colour = (MORE_COLOUR if flow > 0 else LESS_COLOUR) if signed else FLOW_COLOUR
        x0, x1, y0, y1 = ox + g.x(layer), ox + g.x(layer + 1), oy + g.y(i), oy + g.y(j)
        points = list(zip((x0 + (x1 - x0) * steps).tolist(), (y0 + (y1 - y0) * shape).tolist()))
        draw.line(points, fill=_faded(colour), width=max(1, round(0.5 + 7.5 * size / top_edge)), joint="curve")
    for layer in range(g.layers + 1):
        for i in range(len(tokens)):
            value = float(nodes[layer, i])
            radius = 1.5 + 5 * math.sqrt(abs(value) / top_node)
            colour = _hex(_node_colour(value, top_node, signed))
            x, y = ox + g.x(layer), oy + g.y(i)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    label_font = default_font(11 if g.row >= 14 else 9)
    for i, token in enumerate(tokens):
        text = drawable_text(token, label_font)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=label_font)
        y = oy + g.y(i) - (top + bottom) / 2
        draw.text((ox + g.x(0) - 9 - (right - left), y), text, font=label_font, fill=(34, 34, 34))
        draw.text((ox + g.x(g.layers) + 9, y), text, font=label_font, fill=(34, 34, 34))


def _image(panels: list[tuple[str, np.ndarray, np.ndarray, bool]], tokens: Sequence[str], layers: int,
           note: str) -> np.ndarray:
    g = _geometry(tokens, layers)
    panel_w, panel_h = g.width + 16, g.height(len(tokens)) + 26
    font = default_font(12)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    note = drawable_text(note, font)
    note_w = int(scratch.textbbox((0, 0), note, font=font)[2]) + 24
    image = Image.new("RGB", (max(panel_w * len(panels) + 8, note_w), panel_h + 30), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    for index, (title, nodes, edges, signed) in enumerate(panels):
        _draw_panel(draw, (8 + index * panel_w, 8), title, tokens, nodes, edges, g, signed)
    draw.text((12, panel_h + 10), note, font=font, fill=(90, 90, 90))
    return np.asarray(image).copy()


def _note(flow: AttentionFlow) -> str:
    what = "readout" if flow.output == "readout" else repr(flow.tokens[int(flow.output)])
    which = "gradient x attention" if flow.weights == "gradient" else "attention rollout"
    return f"Flow of the {what} back to the input tokens ({which}): edge width = flow, dot area = flow through the token."


def flow_image(flow: AttentionFlow, *, title: str | None = None) -> np.ndarray:
    """An attention flow as a picture (uint8 RGB): the layered graph of :func:`flow_view`.

    Parameters
    ----------
    flow:
        From :func:`relevance.flows.attention_flow`.
    title:
        The caption (default: the model's name).

    Returns
    -------
    numpy.ndarray
        (height, width, 3) uint8.
    """
    return _image([(title or flow.model or "model", flow.nodes, flow.edges, False)], flow.tokens, flow.num_layers,
                  _note(flow))


def flow_comparison_image(comparison: FlowComparison) -> np.ndarray:
    """Two flows side by side and their difference (red: more flow in the first), as a picture (uint8 RGB)."""
    a, b = comparison.first, comparison.second
    names = comparison.names
    panels = [(names[0], a.nodes, a.edges, False), (names[1], b.nodes, b.edges, False),
              (f"{names[0]} - {names[1]}", comparison.nodes, comparison.edges, True)]
    return _image(panels, a.tokens, a.num_layers, _note(a) + " Difference: red = more in the first.")
