"""Colour maps as RGB lookup tables, shared by the image and the text renderers.

Every colour map is a (256, 3) uint8 RGB table: entry ``i`` is the colour of level ``i``. OpenCV's
maps are read out of ``cv2.applyColorMap`` once and turned from BGR into RGB; the diverging maps
are built here. A diverging table has TWO centre entries, 127 and 128, both the centre colour,
and is symmetric around them, so that `levels` can put the value 0 exactly on the centre colour.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "colormap_table",
    "contrast_text_colour",
    "is_diverging",
    "levels",
    "lookup_colours",
]

_WHITE = np.array([255.0, 255.0, 255.0])
_BLUE = np.array([0.0, 0.0, 255.0])
_RED = np.array([255.0, 0.0, 0.0])
# End colours of Moreland's cool-warm map (sRGB), and the smallest Msh magnitude of its centre.
_COOL = (59, 76, 192)
_WARM = (180, 4, 38)
_COOLWARM_CENTRE_MAGNITUDE = 88.0


def _opencv_table(code: int) -> np.ndarray:
    """The (256, 3) RGB table of an OpenCV colour map (OpenCV writes BGR)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)[:, 0, :]
    return bgr[:, ::-1]


def _sequential_table(colour_at: Callable[[float], np.ndarray]) -> np.ndarray:
    """(256, 3) table of ``colour_at(t)`` (RGB floats in [0, 255]) for t = 0, 1/255, ..., 1."""
    return np.stack([colour_at(i / 255.0) for i in range(256)])


def _diverging_table(colour_at: Callable[[float], np.ndarray]) -> np.ndarray:
    """(256, 3) table of ``colour_at(t)`` for t in [-1, 1]: entries 0..127 cover -1..0, 128..255 cover 0..1."""
    negative = [colour_at(i / 127.0 - 1.0) for i in range(128)]
    positive = [colour_at(i / 127.0) for i in range(128)]
    return np.stack(negative + positive)


def _blue_white_red(t: float) -> np.ndarray:
    """Linear blue (-1) -> white (0) -> red (1), like matplotlib's "bwr"."""
    return _WHITE + (_BLUE - _WHITE) * -t if t < 0 else _WHITE + (_RED - _WHITE) * t


def _white_red(t: float) -> np.ndarray:
    """Linear white (0) -> red (1): the positive half of "bwr", for unsigned maps."""
    return _WHITE + (_RED - _WHITE) * t


# ---------------------------------------------------------------- Moreland's cool-warm map (Msh space)
# K. Moreland, "Diverging Color Maps for Scientific Visualization", ISVC 2009: interpolate in the polar
# form (M, s, h) of CIELAB, through an unsaturated centre, so that lightness changes evenly on both sides.

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = _SRGB_TO_XYZ.sum(axis=1)


def _srgb_to_linear(rgb01: np.ndarray) -> np.ndarray:
    return np.where(rgb01 <= 0.04045, rgb01 / 12.92, ((rgb01 + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)


def _lab_f_inverse(t: np.ndarray) -> np.ndarray:
    return np.where(t > 6 / 29, t**3, 3 * (6 / 29) ** 2 * (t - 4 / 29))


def _rgb255_to_msh(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    xyz = _SRGB_TO_XYZ @ _srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    fx, fy, fz = _lab_f(xyz / _D65_WHITE)
    lightness, a, b = 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
    magnitude = math.sqrt(lightness**2 + a**2 + b**2)
    return magnitude, math.acos(lightness / magnitude), math.atan2(b, a)


def _msh_to_rgb255(magnitude: float, saturation: float, hue: float) -> np.ndarray:
    lightness = magnitude * math.cos(saturation)
    a = magnitude * math.sin(saturation) * math.cos(hue)
    b = magnitude * math.sin(saturation) * math.sin(hue)
    fy = (lightness + 16) / 116
    xyz = _D65_WHITE * _lab_f_inverse(np.array([fy + a / 500, fy, fy - b / 200]))
    return _linear_to_srgb(np.linalg.solve(_SRGB_TO_XYZ, xyz)) * 255.0


def _spun_hue(magnitude: float, saturation: float, hue: float, unsaturated_magnitude: float) -> float:
    """Hue for the unsaturated end of a segment, turned so that the segment does not look muddy."""
    if magnitude >= unsaturated_magnitude:
        return hue
    spin = saturation * math.sqrt(unsaturated_magnitude**2 - magnitude**2) / (magnitude * math.sin(saturation))
    return hue + spin if hue > -math.pi / 3 else hue - spin


def _cool_warm(t: float) -> np.ndarray:
    """Moreland's cool (-1) -> light grey (0) -> warm (1) map."""
    cool, warm = _rgb255_to_msh(_COOL), _rgb255_to_msh(_WARM)
    centre_magnitude = max(cool[0], warm[0], _COOLWARM_CENTRE_MAGNITUDE)
    end_magnitude, end_saturation, end_hue = cool if t < 0 else warm
    weight = abs(t)  # 0 at the unsaturated centre, 1 at the end colour
    centre_hue = _spun_hue(end_magnitude, end_saturation, end_hue, centre_magnitude)
    return _msh_to_rgb255(
        centre_magnitude + (end_magnitude - centre_magnitude) * weight,
        end_saturation * weight,
        centre_hue + (end_hue - centre_hue) * weight,
    )


def _as_table(colours: np.ndarray) -> np.ndarray:
    table = np.clip(np.rint(colours), 0, 255).astype(np.uint8)
    table.flags.writeable = False
    return table


#: Colour maps by name, as (256, 3) uint8 RGB tables (read-only). "jet" matches the papers' figures;
#: "inferno", "viridis", "magma" and "turbo" (an improved jet) are OpenCV's perceptually uniform maps;
#: "reds" runs from white to red (the positive half of "bwr"; good behind text). The diverging maps,
#: "bwr" (blue - white - red) and "coolwarm" (Moreland's blue - light grey - red), are for signed maps.
COLORMAPS: dict[str, np.ndarray] = {
    "jet": _as_table(_opencv_table(cv2.COLORMAP_JET)),
    "inferno": _as_table(_opencv_table(cv2.COLORMAP_INFERNO)),
    "viridis": _as_table(_opencv_table(cv2.COLORMAP_VIRIDIS)),
    "magma": _as_table(_opencv_table(cv2.COLORMAP_MAGMA)),
    "turbo": _as_table(_opencv_table(cv2.COLORMAP_TURBO)),
    "reds": _as_table(_sequential_table(_white_red)),
    "bwr": _as_table(_diverging_table(_blue_white_red)),
    "coolwarm": _as_table(_diverging_table(_cool_warm)),
}

#: The names in `COLORMAPS` that are diverging (centre colour at level 127.5, for signed maps).
DIVERGING_COLORMAPS: tuple[str, ...] = ("bwr", "coolwarm")


def colormap_table(colormap: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of a colour map.

    Parameters
    ----------
    colormap:
        A name in `COLORMAPS`.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    try:
        return COLORMAPS[colormap]
    except (KeyError, TypeError):
        raise ValueError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}") from None


def is_diverging(colormap: str) -> bool:
    """True for the diverging colour maps ("bwr", "coolwarm")."""
    return colormap in DIVERGING_COLORMAPS


def levels(values: np.ndarray, *, signed: bool = False) -> np.ndarray:
    """Quantise values to the 256 levels of a colour table.

    Parameters
    ----------
    values:
        Float array of any shape, in [0, 1], or in [-1, 1] when ``signed`` (clipped; NaN -> 0).
    signed:
        Map -1 -> level 0, 0 -> level 128 (a centre entry of a diverging table), 1 -> level 255.

    Returns
    -------
    np.ndarray
        uint8 array of the same shape.
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    if signed:
        scaled = (np.clip(values, -1.0, 1.0) + 1.0) * 127.5
    else:
        scaled = np.clip(values, 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def lookup_colours(level_map: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The colours of a (H, W) uint8 level map in a (256, 3) table: uint8 RGB (H, W, 3).

    Uses OpenCV's table lookup, several times faster than numpy indexing on large images.
    """
    level_map = np.ascontiguousarray(level_map, dtype=np.uint8)
    return cv2.LUT(cv2.merge([level_map, level_map, level_map]), np.ascontiguousarray(table).reshape(256, 1, 3))


def _relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of (..., 3) uint8 sRGB colours."""
    linear = _srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast_text_colour(background: np.ndarray | tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with a uint8 RGB ``background`` (WCAG contrast ratio)."""
    luminance = float(_relative_luminance(np.asarray(background)))
    # Contrast with black: (L + 0.05) / 0.05; with white: 1.05 / (L + 0.05). Equal at L ~ 0.179.
    return (0, 0, 0) if (luminance + 0.05) ** 2 >= 0.05 * 1.05 else (255, 255, 255)
