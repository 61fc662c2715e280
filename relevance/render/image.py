"""Turning relevance maps into pictures: upsampling, normalisation, colour maps and overlays.

`overlay` draws a relevance map (any grid: 14x14 patches or 224x224 pixels) on the ORIGINAL image
at its own resolution: the map is bilinearly resampled onto the box of the original that the model
input covered (`relevance.images.CropGeometry`), so hot spots line up with what the model saw.
Pixels outside that box (cropped away before the model saw them) are shown unchanged.

Signed maps (full LRP) are drawn with ``signed=True``: scaled by their largest magnitude so that 0
falls on the centre of a diverging colour map ("bwr", "coolwarm"), instead of being min-max
normalised (which would turn 0 into some arbitrary colour and wash the picture out). `colorbar`
draws the matching scale, and `annotate` writes a caption band onto a picture.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from relevance.images import CropGeometry
from relevance.render.colormaps import COLORMAPS, DIVERGING_COLORMAPS, colormap_table, levels, lookup_colours
from relevance.render.fonts import default_font, drawable_text

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "upsample",
    "normalize",
    "colorize",
    "overlay",
    "map_on_original",
    "colorbar",
    "annotate",
    "side_by_side",
    "mask_edge",
]


def upsample(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``F.interpolate``, align_corners=False).

    Parameters
    ----------
    maps:
        (B, h, w) or (h, w) tensor.
    size:
        Output (H, W) or a single int for a square output.

    Returns
    -------
    torch.Tensor
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

    Parameters
    ----------
    maps:
        (..., h, w) tensor.
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


def colorize(map01: np.ndarray | torch.Tensor, colormap: str = "jet", *, signed: bool = False) -> np.ndarray:
    """Colour a map with values in [0, 1], or in [-1, 1] when ``signed`` (clipped; NaN -> 0).

    Parameters
    ----------
    map01:
        (H, W) array or tensor.
    colormap:
        A name in `COLORMAPS`.
    signed:
        Values are in [-1, 1] and 0 gets the colour map's centre colour (white for "bwr").

    Returns
    -------
    np.ndarray
        uint8 RGB (H, W, 3).
    """
    table = colormap_table(colormap)
    if isinstance(map01, torch.Tensor):
        map01 = map01.detach().cpu().float().numpy()
    values = np.asarray(map01, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"map01 must be (H, W), got shape {values.shape}")
    return lookup_colours(levels(values, signed=signed), table)


def _levels_of_box(values: np.ndarray, signed: bool) -> np.ndarray:
    """Colour-table levels of a large finite float32 (H, W) array, computed in place and fast.

    Unsigned: min-max to 0..255 (a constant array gives level 0). Signed: ``v / max|v|`` to
    0..255 with 0 at 127.5 (rounded to 128, a centre entry); an all-zero array gives the centre.
    """
    if signed:
        magnitude = float(np.abs(values).max())
        scale = 127.5 / magnitude if magnitude > 0 else 0.0
        values *= scale
        values += 127.5
    else:
        low, high = float(values.min()), float(values.max())
        values -= low
        values *= 255.0 / (high - low) if high > low else 0.0
    np.clip(values, 0.0, 255.0, out=values)
    np.rint(values, out=values)
    return values.astype(np.uint8)


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


def map_on_original(relevance_map: np.ndarray | torch.Tensor, geometry: CropGeometry) -> np.ndarray:
    """A map resampled onto the original image's pixels, bilinearly, where the model input covered them.

    Parameters
    ----------
    relevance_map:
        (h, w) map of any grid size (patch grid or model-input pixels).
    geometry:
        Where the model input lies in the original.

    Returns
    -------
    np.ndarray
        float32 (H0, W0): the map's raw values inside the covered box, NaN outside it.
    """
    if isinstance(relevance_map, torch.Tensor):
        relevance_map = relevance_map.detach().cpu().double().numpy()
    values, rows, cols = _map_on_box(np.asarray(relevance_map, dtype=np.float64), geometry)
    result = np.full(tuple(geometry.original_size), np.nan, dtype=np.float32)
    result[rows, cols] = values
    return result


def overlay(
    original: np.ndarray,
    relevance_map: np.ndarray | torch.Tensor,
    geometry: CropGeometry | None = None,
    *,
    colormap: str = "jet",
    alpha: float = 0.5,
    signed: bool = False,
) -> np.ndarray:
    """Blend a coloured relevance map onto the original image, at the original's resolution.

    The map is bilinearly resampled onto the geometry's box in original pixel coordinates (the
    region the model input covered), scaled over the visible part of the box (min-max, or by its
    largest magnitude when ``signed``), coloured, and blended:
    ``(1 - alpha) * original + alpha * colour``. Outside the box the original is left unchanged.

    Parameters
    ----------
    original:
        Uint8 (H0, W0, 3) RGB image (as returned by `relevance.images.load_image`).
    relevance_map:
        (h, w) map of any grid size (patch grid or model-input pixels).
    geometry:
        Where the model input lies in the original; None means the whole image.
    colormap:
        A name in `COLORMAPS`; for a signed map, one of `DIVERGING_COLORMAPS`.
    alpha:
        Opacity of the colour map, in [0, 1].
    signed:
        The map has meaningful signs (e.g. full LRP): it is divided by its largest
        magnitude so that -max, 0 and +max get the colour map's first, centre and last
        colours. Default False: min-max normalisation (lowest value -> first colour).

    Returns
    -------
    np.ndarray
        uint8 RGB (H0, W0, 3).
    """
    table = colormap_table(colormap)  # validate before any work
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
    if magnitude > 0:  # both scalings ignore the map's scale; this keeps float32 resampling finite
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
    colour = lookup_colours(_levels_of_box(values, bool(signed)), table)
    region = np.ascontiguousarray(original[rows, cols])
    result[rows, cols] = cv2.addWeighted(region, 1.0 - float(alpha), colour, float(alpha), 0.0)
    return result


def _text_box(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of ``text`` drawn at the origin."""
    return tuple(int(round(v)) for v in draw.textbbox((0, 0), text, font=font))


def _fit_font(draw: ImageDraw.ImageDraw, texts: Sequence[str], max_width: int, size: int, min_size: int = 8):
    """The largest built-in font of at most ``size`` px in which every text is at most ``max_width`` wide."""
    while True:
        font = default_font(size)
        widest = max((_text_box(draw, t, font)[2] - _text_box(draw, t, font)[0] for t in texts), default=0)
        if widest <= max_width or size <= min_size:
            return font
        size -= 1


def _colorbar_labels(signed: bool, value_range: tuple[float, float] | None) -> tuple[str, str | None, str]:
    """(top, middle or None, bottom) labels of a colour bar."""
    if value_range is None:
        return ("+max", "0", "-max") if signed else ("max", None, "min")
    low, high = (float(v) for v in value_range)
    if signed:
        magnitude = max(abs(low), abs(high))
        return f"+{magnitude:.3g}", "0", f"-{magnitude:.3g}"
    return f"{high:.3g}", None, f"{low:.3g}"


def colorbar(
    colormap: str,
    height: int,
    width: int = 64,
    *,
    signed: bool = False,
    labels: bool = True,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """A vertical colour bar matching `overlay`: the colour map's last colour at the top, first at the bottom.

    Row ``r`` (0 at the top) has the colour of level ``round(255 * (1 - r / (height - 1)))``, so
    for a signed bar the middle row is the diverging map's centre (the colour of 0).

    Parameters
    ----------
    colormap:
        A name in `COLORMAPS`.
    height:
        Image height in pixels (at least 2).
    width:
        Image width in pixels: the bar and, with ``labels``, its labels.
    signed:
        Label the bar as `overlay` scales a signed map: "+max" / "0" / "-max"
        (default: a min-max normalised map, "max" / "min").
    labels:
        Write the labels right of the bar, level with the top, middle and bottom rows
        they name; False gives a bar over the whole width.
    value_range:
        (low, high) of the map: the labels show these numbers instead of words
        (for a signed bar, +-max(|low|, |high|) and 0).

    Returns
    -------
    np.ndarray
        uint8 RGB (height, width, 3) on a white background.
    """
    table = colormap_table(colormap)
    height, width = int(height), int(width)
    if height < 2 or width < 1:
        raise ValueError(f"colorbar needs height >= 2 and width >= 1, got {height}x{width}")
    fraction = 1.0 - np.arange(height) / (height - 1)
    column = table[np.rint(fraction * 255.0).astype(np.uint8)]
    bar_width = width if not labels else max(4, min(width, round(width * 0.35)))
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[:, :bar_width] = column[:, None, :]
    if not labels or bar_width >= width:
        return canvas
    top, middle, bottom = _colorbar_labels(signed, value_range)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    text_x = bar_width + 3
    texts = [t for t in (top, middle, bottom) if t is not None]
    font = _fit_font(draw, texts, width - text_x, size=max(8, min(16, height // 6, width // 4)))
    text_height = max(_text_box(draw, t, font)[3] - _text_box(draw, t, font)[1] for t in texts)
    placements = [(top, 0, "top"), (bottom, height - 1, "bottom")]
    if middle is not None and height >= 3 * text_height + 4:
        placements.append((middle, (height - 1) / 2, "middle"))
    if height < 2 * text_height + 2:
        placements = placements[:1]
    for text, y, align in placements:
        left, text_top, _, text_bottom = _text_box(draw, text, font)
        if align == "top":
            y_text = -text_top
        elif align == "bottom":
            y_text = height - text_bottom
        else:
            y_text = round(y - (text_top + text_bottom) / 2)
        draw.text((text_x - left, y_text), text, fill=(0, 0, 0), font=font)
    return np.asarray(image).copy()


def annotate(image: np.ndarray, text: str, *, position: str = "bottom", font_size: int | None = None) -> np.ndarray:
    """A copy of ``image`` with ``text`` written in a dark band along its bottom (or top) edge.

    The band darkens the pixels it covers (35% of the image shows through) and holds the text in
    white, truncated with "…" when it is too wide; every pixel outside the band is unchanged.
    Characters Pillow's built-in font lacks are spelled with look-alikes (see
    :func:`relevance.render.fonts.drawable_text`).

    Parameters
    ----------
    image:
        Uint8 RGB (H, W, 3).
    text:
        The caption, e.g. "class 3 · transformer attribution".
    position:
        "bottom" or "top".
    font_size:
        Text height in pixels; default about H / 22, between 10 and 28.

    Returns
    -------
    np.ndarray
        uint8 RGB (H, W, 3).
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {array.dtype} {tuple(array.shape)}")
    if position not in ("bottom", "top"):
        raise ValueError(f"position must be 'bottom' or 'top', got {position!r}")
    height, width = array.shape[:2]
    font = default_font(int(font_size) if font_size else int(np.clip(round(height / 22), 10, 28)))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    padding = max(2, font.size // 4 if hasattr(font, "size") else 2)
    label = drawable_text(" ".join(str(text).split()), font)
    while label and _text_box(scratch, label, font)[2] > width - 2 * padding:
        label = label[:-2] + "…" if len(label) > 1 else ""
    line_top, line_bottom = _text_box(scratch, "Ag", font)[1::2]
    band_height = min(height, line_bottom - line_top + 2 * padding)
    band_top = height - band_height if position == "bottom" else 0
    result = array.copy()
    band = result[band_top : band_top + band_height]
    band[...] = np.rint(band.astype(np.float32) * 0.35).astype(np.uint8)
    band_image = Image.fromarray(band)
    ImageDraw.Draw(band_image).text((padding, padding - line_top), label, fill=(255, 255, 255), font=font)
    result[band_top : band_top + band_height] = np.asarray(band_image)
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

    Parameters
    ----------
    images:
        Uint8 RGB (H_i, W_i, 3) images; each is scaled (keeping its aspect) to
        ``tile_height`` (default: the first image's height).
    titles:
        One caption per image, or None for no caption band.
    columns:
        Tiles per row (default: all in one row).
    gap:
        White space in pixels between tiles.
    title_height:
        Height of the caption band in pixels.

    Returns
    -------
    np.ndarray
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


def mask_edge(mask: np.ndarray) -> np.ndarray:
    """The boundary of a mask: its pixels with a 4-neighbour outside it (the image border does not count).

    Parameters
    ----------
    mask:
        (H, W) bool.

    Returns
    -------
    np.ndarray
        (H, W) bool, True on the mask's boundary pixels (to draw an object's outline over a map).
    """
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner
