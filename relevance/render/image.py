"""Turning relevance maps into pictures: upsampling, normalisation, colour maps and overlays.

`overlay` draws a relevance map (any grid: 14x14 patches or 224x224 pixels) on the ORIGINAL image
at its own resolution: the map is bilinearly resampled onto the box of the original that the model
input covered (`relevance.images.CropGeometry`), so hot spots line up with what the model saw.
Pixels outside that box (cropped away before the model saw them) are shown unchanged.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from relevance.images import CropGeometry

__all__ = ["COLORMAPS", "upsample", "normalize", "colorize", "overlay", "side_by_side"]

#: Colour maps supported by `colorize` (OpenCV). "jet" matches the papers' figures; the others
#: are perceptually uniform ("turbo" is an improved jet).
COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "turbo": cv2.COLORMAP_TURBO,
}


def upsample(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``F.interpolate``, align_corners=False).

    Args:
        maps: (B, h, w) or (h, w) tensor.
        size: output (H, W) or a single int for a square output.

    Returns:
        (B, H, W) or (H, W), matching the input's rank; floating dtype is kept (ints become float32).
    """
    if maps.dim() not in (2, 3):
        raise ValueError(f"maps must be (h, w) or (B, h, w), got shape {tuple(maps.shape)}")
    if isinstance(size, int):
        size = (size, size)
    single = maps.dim() == 2
    batch = maps[None] if single else maps
    if not batch.is_floating_point():
        batch = batch.float()
    out = F.interpolate(batch[:, None], size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)[:, 0]
    return out[0] if single else out


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] over its spatial dims (the last two).

    A constant map (including all zeros and single pixels) becomes all zeros. Non-finite input
    values are treated as 0, so the output never contains NaN or inf. Floating dtype is kept.

    Args:
        maps: (..., h, w) tensor.
    """
    if maps.dim() < 2:
        raise ValueError(f"maps must have at least 2 dims (h, w), got shape {tuple(maps.shape)}")
    values = maps if maps.is_floating_point() else maps.float()
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low = values.amin(dim=(-2, -1), keepdim=True)
    span = values.amax(dim=(-2, -1), keepdim=True) - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    out = (values - low) / safe_span
    out = torch.where(span > 0, out, torch.zeros_like(out))
    return out.clamp_(0.0, 1.0)


def _check_colormap(colormap: str) -> int:
    try:
        return COLORMAPS[colormap]
    except (KeyError, TypeError):
        raise ValueError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}") from None


def colorize(map01: np.ndarray | torch.Tensor, colormap: str = "jet") -> np.ndarray:
    """Colour a map with values in [0, 1] (clipped; NaN -> 0).

    Args:
        map01: (H, W) array or tensor.
        colormap: a name in `COLORMAPS`.

    Returns:
        uint8 RGB (H, W, 3).
    """
    code = _check_colormap(colormap)
    if isinstance(map01, torch.Tensor):
        map01 = map01.detach().cpu().float().numpy()
    values = np.asarray(map01, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"map01 must be (H, W), got shape {values.shape}")
    values = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    levels = np.rint(values * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, code)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _colorize_min_max(values: np.ndarray, colormap: str) -> np.ndarray:
    """`colorize(normalize(values))` for a large finite float32 (H, W) array, in place and fast."""
    low, high = float(values.min()), float(values.max())
    if high > low:
        values -= low
        values *= 255.0 / (high - low)
        np.clip(values, 0.0, 255.0, out=values)
        np.rint(values, out=values)
        levels = values.astype(np.uint8)
    else:
        levels = np.zeros(values.shape, dtype=np.uint8)
    bgr = cv2.applyColorMap(levels, _check_colormap(colormap))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _interpolation_matrix(out_positions: np.ndarray, source_length: int) -> np.ndarray:
    """Weights (len(out_positions), source_length) of 1-D linear interpolation.

    ``out_positions`` are continuous coordinates in source cell units whose pixel centres lie at
    0.5, 1.5, ...; values beyond the first/last centre are clamped (like ``F.interpolate`` with
    align_corners=False).
    """
    centre = np.clip(out_positions - 0.5, 0.0, source_length - 1)
    low = np.floor(centre).astype(np.int64)
    high = np.minimum(low + 1, source_length - 1)
    frac = centre - low
    weights = np.zeros((len(out_positions), source_length), dtype=np.float32)
    rows = np.arange(len(out_positions))
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _map_on_box(relevance_map: np.ndarray, geometry: CropGeometry) -> tuple[np.ndarray, slice, slice]:
    """Resample an (h, w) map onto the original pixels inside the geometry's box.

    Returns the resampled values for the visible part of the box and the row/column slices of
    the original image they cover.
    """
    height0, width0 = geometry.original_size
    top, left, box_h, box_w = geometry.box
    map_h, map_w = relevance_map.shape
    # Original pixels whose centres fall inside the box.
    y0 = max(0, int(np.ceil(top - 0.5)))
    y1 = min(height0, int(np.ceil(top + box_h - 0.5)))
    x0 = max(0, int(np.ceil(left - 0.5)))
    x1 = min(width0, int(np.ceil(left + box_w - 0.5)))
    if y1 <= y0 or x1 <= x0:
        return np.zeros((0, 0)), slice(0, 0), slice(0, 0)
    rows = (np.arange(y0, y1) + 0.5 - top) * (map_h / box_h)
    cols = (np.arange(x0, x1) + 0.5 - left) * (map_w / box_w)
    resampled = (
        _interpolation_matrix(rows, map_h) @ relevance_map.astype(np.float32) @ _interpolation_matrix(cols, map_w).T
    )
    return resampled, slice(y0, y1), slice(x0, x1)


def overlay(
    original: np.ndarray,
    relevance_map: np.ndarray | torch.Tensor,
    geometry: CropGeometry | None = None,
    *,
    colormap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a coloured relevance map onto the original image, at the original's resolution.

    The map is bilinearly resampled onto the geometry's box in original pixel coordinates (the
    region the model input covered), min-max normalised over the visible part of the box,
    coloured, and blended: ``(1 - alpha) * original + alpha * colour``. Outside the box the
    original is left unchanged.

    Args:
        original: uint8 (H0, W0, 3) RGB image (as returned by `relevance.images.load_image`).
        relevance_map: (h, w) map of any grid size (patch grid or model-input pixels).
        geometry: where the model input lies in the original; None means the whole image.
        colormap: a name in `COLORMAPS`.
        alpha: opacity of the colour map, in [0, 1].

    Returns:
        uint8 RGB (H0, W0, 3).
    """
    _check_colormap(colormap)  # validate before any work
    if not (isinstance(alpha, (int, float)) and 0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    original = np.asarray(original)
    if original.dtype != np.uint8 or original.ndim != 3 or original.shape[2] != 3:
        raise ValueError(
            f"original must be a uint8 (H, W, 3) RGB array, got {original.dtype} {tuple(original.shape)}"
        )
    if isinstance(relevance_map, torch.Tensor):
        relevance_map = relevance_map.detach().cpu().double().numpy()
    relevance_map = np.nan_to_num(np.asarray(relevance_map, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if relevance_map.ndim != 2 or 0 in relevance_map.shape:
        raise ValueError(f"relevance_map must be a non-empty (h, w) map, got shape {relevance_map.shape}")
    magnitude = float(np.abs(relevance_map).max())
    if magnitude > 0:  # min-max normalisation ignores scale; this keeps float32 resampling finite
        relevance_map = relevance_map / magnitude
    height0, width0 = original.shape[:2]
    if geometry is None:
        geometry = CropGeometry.full((height0, width0))
    elif tuple(geometry.original_size) != (height0, width0):
        raise ValueError(
            f"geometry is for a {geometry.original_size} image but the original is {(height0, width0)}"
        )

    values, rows, cols = _map_on_box(relevance_map, geometry)
    result = original.copy()
    if values.size == 0:
        return result
    colour = _colorize_min_max(values, colormap)
    region = np.ascontiguousarray(original[rows, cols])
    result[rows, cols] = cv2.addWeighted(region, 1.0 - float(alpha), colour, float(alpha), 0.0)
    return result


def side_by_side(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    tile_height: int | None = None,
    gap: int = 4,
    title_height: int = 18,
) -> np.ndarray:
    """Compose images into one grid with an optional title above each tile.

    Args:
        images: uint8 RGB (H_i, W_i, 3) images; each is scaled (keeping its aspect) to
            ``tile_height`` (default: the first image's height).
        titles: one caption per image, or None for no caption band.
        columns: tiles per row (default: all in one row).
        gap: white space in pixels between tiles.
        title_height: height of the caption band in pixels.

    Returns:
        uint8 RGB image of the grid on a white background.
    """
    if len(images) == 0:
        raise ValueError("side_by_side needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    tile_height = int(tile_height or np.asarray(images[0]).shape[0])
    tiles = []
    for image in images:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"images must be uint8 (H, W, 3), got {array.dtype} {tuple(array.shape)}")
        width = max(1, round(array.shape[1] * tile_height / array.shape[0]))
        tile = Image.fromarray(array)
        if tile.size != (width, tile_height):
            tile = tile.resize((width, tile_height), Image.Resampling.BILINEAR)
        tiles.append(tile)
    columns = max(1, min(int(columns or len(tiles)), len(tiles)))
    band = title_height if titles is not None else 0
    cell_w = max(tile.size[0] for tile in tiles)
    cell_h = tile_height + band
    n_rows = -(-len(tiles) // columns)
    canvas = Image.new("RGB", (columns * cell_w + (columns - 1) * gap, n_rows * cell_h + (n_rows - 1) * gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, tile in enumerate(tiles):
        row, col = divmod(index, columns)
        x = col * (cell_w + gap) + (cell_w - tile.size[0]) // 2
        y = row * (cell_h + gap)
        if titles is not None:
            draw.text((x + 2, y + 2), str(titles[index]), fill="black", font=font)
        canvas.paste(tile, (x, y + band))
    return np.asarray(canvas).copy()
