"""Self-contained interactive views: one HTML fragment, inline style and script, a static fallback.

Every view (:mod:`relevance.views.head`, ``model``, ``neuron``, :mod:`relevance.views.flow`) is a
:class:`View`: its fragment holds

* the drawing itself, rendered here in Python as SVG (or a PNG), so that it shows without JavaScript (an
  untrusted notebook, a mail client, a strict content policy) and never comes out blank;
* the data for the interaction, as JSON in a ``<script type="application/json">`` (arrays as base64 float32);
* one inline script (:file:`views.js`, no loader, no network, no globals) that makes the drawing interactive:
  hovering a token highlights its attention lines, blocks and heads are selectable.

Element ids are fresh for every rendering (``rv-`` and 12 random hex digits), so several views, or the same
view displayed twice, coexist in one notebook or page. This answers BertViz's (Vig 2019) best-known problems:
blank output where its loader fails, and one view per notebook.
"""

from __future__ import annotations

import base64
import colorsys
import html
import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["View", "encode_array", "head_colours", "new_id", "page", "script_text"]

#: Head colours (Tableau 10, then evenly spaced hues): head h gets ``head_colours(H)[h]``.
_TABLEAU = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]

_STYLE = """
#{id} {{ font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; font-size: 13px;
  color: #111; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; margin: 6px 0;
  max-width: 100%; overflow-x: auto; box-sizing: border-box; }}
#{id} .rv-caption {{ font-weight: 600; margin: 0 0 4px; }}
#{id} .rv-note {{ color: #666; font-size: 12px; margin: 4px 0 0; }}
#{id} .rv-controls {{ margin: 4px 0 8px; display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; }}
#{id} [hidden] {{ display: none !important; }}
#{id} select {{ font: inherit; padding: 1px 4px; }}
#{id} .rv-swatch {{ display: inline-block; min-width: 22px; height: 20px; margin: 0 2px; border: 2px solid transparent;
  border-radius: 4px; color: #fff; font: 11px/16px ui-monospace, Menlo, Consolas, monospace; cursor: pointer;
  text-align: center; padding: 0 3px; }}
#{id} .rv-swatch.rv-off {{ opacity: 0.25; }}
#{id} svg text {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; fill: #222; }}
#{id} svg text.rv-token {{ cursor: default; }}
#{id} svg text.rv-special {{ fill: #777; }}
#{id} svg text.rv-active {{ font-weight: 700; fill: #000; }}
#{id} svg .rv-axis {{ fill: #666; font-family: system-ui, sans-serif; font-size: 11px; }}
#{id} .rv-thumbs {{ display: inline-grid; gap: 4px; align-items: center; justify-content: start; }}
#{id} .rv-thumbs canvas {{ border: 1px solid #e3e3e3; cursor: pointer; }}
#{id} .rv-thumbs canvas.rv-selected {{ border-color: #111; }}
#{id} .rv-thumbs .rv-label {{ color: #666; font-size: 11px; text-align: center; }}
#{id} .rv-row {{ display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }}
"""


def new_id() -> str:
    """A fresh element id (``rv-`` and 12 random hex digits)."""
    return "rv-" + uuid.uuid4().hex[:12]


def encode_array(values: np.ndarray) -> dict[str, Any]:
    """``{"shape": [...], "b64": ...}``: the array as little-endian float32, base64, for :file:`views.js`."""
    array = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    return {"shape": list(array.shape), "b64": base64.b64encode(array.tobytes()).decode("ascii")}


def head_colours(count: int) -> list[str]:
    """One colour per head: Tableau 10, then evenly spaced hues."""
    if count <= len(_TABLEAU):
        return _TABLEAU[:count]
    colours = []
    for index in range(count):
        r, g, b = colorsys.hls_to_rgb(index / count, 0.45, 0.65)
        colours.append("#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255)))
    return colours


@lru_cache(maxsize=1)
def script_text() -> str:
    """The views' JavaScript (:file:`relevance/views/views.js`), inlined into every view."""
    return resources.files("relevance.views").joinpath("views.js").read_text(encoding="utf-8")


def _json_for_script(payload: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early."""
    return json.dumps(payload, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


@dataclass
class View:
    """An interactive view: a self-contained HTML fragment with a static fallback.

    Attributes
    ----------
    kind:
        ``"head"``, ``"model"``, ``"neuron"``, ``"flow"``: which part of :file:`views.js` drives it.
    title:
        The caption and the page title.
    payload:
        What the script needs (JSON-serialisable).
    body:
        ``element_id -> HTML``: the static drawing and the (hidden until the script runs) controls.
    extras:
        Anything the caller may want to read back (e.g. the numbers drawn), not rendered.
    """

    kind: str
    title: str
    payload: dict[str, Any]
    body: Callable[[str], str]
    extras: dict[str, Any] = field(default_factory=dict)

    def html(self, element_id: str | None = None) -> str:
        """The fragment, with a fresh id unless one is given: ``<div id=...>`` holding style, drawing, data and
        script."""
        element_id = element_id or new_id()
        data = _json_for_script({"kind": self.kind, **self.payload})
        return (
            f'<div class="rv-view rv-{self.kind}" id="{element_id}">'
            f"<style>{_STYLE.format(id=element_id)}</style>"
            f'<div class="rv-caption">{html.escape(self.title)}</div>'
            f"{self.body(element_id)}"
            f'<script type="application/json" id="{element_id}-data">{data}</script>'
            f"<script>({script_text()})({json.dumps(element_id)});</script>"
            "</div>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def document(self) -> str:
        """A standalone page (UTF-8, nothing external) holding this view."""
        return page([self], title=self.title)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`document` to ``path`` (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.document(), encoding="utf-8")
        return path


def page(views: list[View] | tuple[View, ...], *, title: str = "Attention views") -> str:
    """A standalone HTML page holding several views, each with its own ids and script."""
    escaped = html.escape(title)
    parts = "\n".join(view.html() for view in views)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escaped}</title>\n</head>\n"
        '<body style="margin: 20px auto; max-width: 1280px; padding: 0 16px; background: #fafafa; '
        "font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif;\">\n"
        f"{parts}\n</body>\n</html>\n"
    )
