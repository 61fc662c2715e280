"""SVG pieces shared by the views' static drawings (the same geometry :file:`views.js` redraws with).

Attention lines are drawn as in BertViz (Vig 2019): queries in a left column, keys in a right column, one line
per (head, query, key) whose opacity is the attention weight. Lines below ``min_weight`` are left out; the
others are grouped by head and by opacity step (``ceil(20 w) / 20``) into one ``<path>`` each, so a drawing
of thousands of lines stays a few dozen elements. :file:`views.js` follows exactly the same rules, so the
script's first drawing equals this one.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["LineLayout", "attention_paths", "line_layout", "number", "token_column"]

#: Opacity steps of the grouped lines.
STEPS = 20
#: Approximate advance of one character of the 12 px monospace font, in pixels.
CHAR_WIDTH = 7.3


def number(value: float) -> str:
    """A coordinate as both Python and JavaScript print it (integers and halves only)."""
    value = round(float(value) * 2) / 2
    return str(int(value)) if value == int(value) else str(value)


@dataclass(frozen=True)
class LineLayout:
    """Where the two token columns and the lines between them lie (pixels)."""

    row: int
    top: int
    left: int
    lines: int
    right: int

    @property
    def x0(self) -> int:
        return self.left

    @property
    def x1(self) -> int:
        return self.left + self.lines

    @property
    def width(self) -> int:
        return self.left + self.lines + self.right

    def y(self, index: int) -> float:
        return self.top + index * self.row + self.row / 2

    def height(self, count: int) -> int:
        return self.top + count * self.row + 6

    def as_dict(self) -> dict[str, int]:
        return {"row": self.row, "top": self.top, "left": self.left, "lines": self.lines, "right": self.right}


def line_layout(tokens: Sequence[str], *, lines: int = 160, top: int = 6) -> LineLayout:
    """A layout fitting the tokens: rows of 18 px (13 px beyond 40 tokens), columns as wide as the longest token."""
    width = int(math.ceil(max((len(t) for t in tokens), default=1) * CHAR_WIDTH)) + 12
    row = 18 if len(tokens) <= 40 else 13
    return LineLayout(row=row, top=top, left=width, lines=lines, right=width)


def token_column(tokens: Sequence[str], special: Sequence[bool], layout: LineLayout, side: str) -> str:
    """``<text>`` elements of the query (``side="q"``, right-aligned left column) or key (``"k"``) tokens."""
    x = layout.x0 - 5 if side == "q" else layout.x1 + 5
    anchor = "end" if side == "q" else "start"
    parts = []
    for index, (token, is_special) in enumerate(zip(tokens, special)):
        css = "rv-token rv-special" if is_special else "rv-token"
        parts.append(f'<text class="{css}" data-side="{side}" data-index="{index}" x="{number(x)}" '
                     f'y="{number(layout.y(index))}" text-anchor="{anchor}" dominant-baseline="middle">'
                     f"{html.escape(token)}</text>")
    return "".join(parts)


def attention_paths(matrices: Sequence[tuple[int, np.ndarray]], colours: Sequence[str], layout: LineLayout,
                    min_weight: float, width: float = 2.0) -> str:
    """Grouped ``<path>`` elements of the lines of each ``(head, (n, n) attention)``, in head order."""
    parts = []
    for head, matrix in matrices:
        weights = np.asarray(matrix, dtype=np.float32)
        steps = np.ceil(weights.astype(np.float64) * STEPS).astype(int)
        keep = weights.astype(np.float64) >= min_weight
        for step in range(1, STEPS + 1):
            rows, cols = np.nonzero(keep & (steps == step))
            if not len(rows):
                continue
            d = "".join(f"M{number(layout.x0)} {number(layout.y(i))}L{number(layout.x1)} {number(layout.y(j))}"
                        for i, j in zip(rows.tolist(), cols.tolist()))
            parts.append(f'<path data-head="{head}" data-step="{step}" stroke="{colours[head]}" '
                         f'stroke-opacity="{step / STEPS:.2f}" stroke-width="{width:g}" fill="none" d="{d}"/>')
    return "".join(parts)
