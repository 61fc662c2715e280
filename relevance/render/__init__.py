"""Drawing relevance: image maps (:mod:`relevance.render.image`) and token maps (:mod:`relevance.render.text`)."""

from relevance.render.colormaps import COLORMAPS, DIVERGING_COLORMAPS, is_diverging
from relevance.render.image import (annotate, colorbar, colorize, mask_edge, normalize, overlay, side_by_side,
                                    upsample)

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "annotate",
    "colorbar",
    "colorize",
    "is_diverging",
    "mask_edge",
    "normalize",
    "overlay",
    "side_by_side",
    "upsample",
]
