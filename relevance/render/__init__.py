"""Drawing relevance: image maps (:mod:`relevance.render.image`) and token maps (:mod:`relevance.render.text`)."""

from relevance.render.image import COLORMAPS, colorize, normalize, overlay, side_by_side, upsample

__all__ = ["COLORMAPS", "colorize", "normalize", "overlay", "side_by_side", "upsample"]
