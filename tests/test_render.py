"""Tests for relevance.render: upsampling, normalisation, colour maps, overlays, colour bars, labels and grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relevance.images import CropGeometry, DataConfig, prepare
from relevance.render import (COLORMAPS, DIVERGING_COLORMAPS, annotate, colorbar, colorize, normalize, overlay,
                              side_by_side, upsample)

JET_COLD = (0, 0, 128)  # OpenCV jet at 0 is dark blue (BGR 128,0,0), in RGB
JET_HOT = (128, 0, 0)  # ... and at 1 dark red


def test_upsample_matches_hand_computed_bilinear():
    # align_corners=False, 2 -> 4: source coordinates (i + 0.5) / 2 - 0.5 = -.25, .25, .75, 1.25,
    # clamped to [0, 1], giving weights of the second cell 0, .25, .75, 1.
    grid = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    t = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = t[None, :] * 1.0 + t[:, None] * 2.0
    assert torch.allclose(upsample(grid, (4, 4)), expected)
    batch = upsample(torch.stack([grid, 2 * grid]), 4)
    assert batch.shape == (2, 4, 4)
    assert torch.allclose(batch[1], 2 * expected)
    assert upsample(torch.ones(3, 5, dtype=torch.int64), (6, 10)).dtype == torch.float32


def test_normalize_min_max_per_map():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[-2.0, -2.0], [-2.0, 6.0]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(normalize(maps), expected)
    assert torch.allclose(normalize(maps[0]), expected[0])


@pytest.mark.parametrize(
    "degenerate",
    [torch.zeros(4, 4), torch.full((3, 5), 7.5), torch.tensor([[3.0]]), torch.full((2, 2), 1e-30, dtype=torch.float64)],
)
def test_normalize_constant_maps_give_zeros(degenerate):
    out = normalize(degenerate)
    assert out.dtype == degenerate.dtype
    assert torch.equal(out, torch.zeros_like(degenerate))


def test_normalize_never_returns_nan_or_inf():
    maps = torch.tensor([[[float("nan"), 1.0], [float("inf"), 3.0]]], dtype=torch.float64)
    out = normalize(maps)
    assert torch.isfinite(out).all()
    assert out.dtype == torch.float64
    assert out.max() == 1.0 and out.min() == 0.0
    tiny = normalize(torch.tensor([[0.0, 1e-300]], dtype=torch.float64))
    assert torch.isfinite(tiny).all()


def test_colorize_is_rgb_jet_and_rejects_unknown_names():
    colours = colorize(np.array([[0.0, 1.0, 2.0, -1.0]]), "jet")
    assert colours.dtype == np.uint8 and colours.shape == (1, 4, 3)
    assert tuple(colours[0, 0]) == JET_COLD and tuple(colours[0, 1]) == JET_HOT
    assert tuple(colours[0, 2]) == JET_HOT and tuple(colours[0, 3]) == JET_COLD  # clipped
    inferno = colorize(torch.tensor([[0.0, 1.0]]), "inferno")
    assert inferno[0, 0].max() < 10  # black
    hot = inferno[0, 1].astype(int)
    assert hot[0] > 240 and hot[1] > 240 and hot[2] < 200  # pale yellow (not cyan: RGB order)
    for name in COLORMAPS:
        assert colorize(np.linspace(0, 1, 16).reshape(4, 4), name).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="jet.*inferno.*viridis"):
        colorize(np.zeros((2, 2)), "rainbowish")


def _random_image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_overlay_alpha_extremes_on_the_whole_image():
    original = _random_image(30, 50)
    relevance_map = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(overlay(original, relevance_map, alpha=0.0), original)
    # Independent path: F.interpolate to the image size, min-max, colour map.
    expected_colours = colorize(normalize(upsample(relevance_map.double(), (30, 50))).numpy(), "viridis")
    at_one = overlay(original, relevance_map, colormap="viridis", alpha=1.0)
    assert np.abs(at_one.astype(int) - expected_colours.astype(int)).max() <= 1  # rounding at level edges
    assert np.mean(at_one == expected_colours) > 0.99
    half = overlay(original, relevance_map, colormap="viridis", alpha=0.5).astype(int)
    approx = (original.astype(int) + at_one.astype(int)) / 2
    assert np.abs(half - approx).max() <= 1


def test_overlay_is_scale_invariant_and_finite_for_extreme_values():
    original = _random_image(20, 30)
    relevance_map = np.random.default_rng(1).random((5, 5))
    reference = overlay(original, relevance_map)
    for scale in (1e-300, 1e300, 7.0):
        assert np.array_equal(overlay(original, relevance_map * scale), reference)
    assert np.array_equal(overlay(original, torch.from_numpy(relevance_map).float()), reference)
    constant = overlay(original, np.full((5, 5), np.nan), alpha=1.0)  # NaN -> 0 -> constant -> coldest
    assert (constant == JET_COLD).all()


def test_overlay_validates_arguments():
    original = _random_image(8, 8)
    for alpha in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="alpha"):
            overlay(original, np.ones((2, 2)), alpha=alpha)
    with pytest.raises(ValueError, match="valid: jet"):
        overlay(original, np.ones((2, 2)), colormap="nope")
    with pytest.raises(ValueError, match="geometry"):
        overlay(original, np.ones((2, 2)), CropGeometry((9, 8), (0, 0, 9, 8)))
    with pytest.raises(ValueError, match="uint8"):
        overlay(original.astype(float), np.ones((2, 2)))


def test_overlay_aligns_with_center_crop_on_non_square_image():
    """A map hot only in its top-left patch lights up the top-left of the region the model saw,
    not the top-left of the photo; outside that region the photo is untouched."""
    original = _random_image(180, 300)
    geometry = prepare(original, DataConfig(input_size=(224, 224), crop_pct=0.9)).geometries[0]
    # Expected from the transform: 248x413 resize, crop at (12, 94) -> box starts at x ~ 68.3.
    assert geometry.left == pytest.approx(94 * 300 / 413)
    relevance_map = np.zeros((14, 14))
    relevance_map[0, 0] = 1.0
    result = overlay(original, relevance_map, geometry, alpha=1.0)
    top, left, height, width = geometry.box
    hottest = np.argwhere(np.all(result == JET_HOT, axis=2))
    assert len(hottest) > 0
    assert hottest[:, 0].min() >= top - 0.5 and hottest[:, 0].max() < top + height / 14
    assert hottest[:, 1].min() >= left - 0.5 and hottest[:, 1].max() < left + width / 14
    corner = (int(np.ceil(top - 0.5)), int(np.ceil(left - 0.5)))
    assert tuple(result[corner]) == JET_HOT
    assert tuple(result[int(top + height) - 1, int(left + width) - 1]) == JET_COLD
    # Columns cropped away by the centre crop keep the original pixels.
    outside = int(np.floor(left - 0.5))
    np.testing.assert_array_equal(result[:, : outside + 1], original[:, : outside + 1])
    np.testing.assert_array_equal(result[:, int(np.ceil(left + width)) :], original[:, int(np.ceil(left + width)) :])


def test_overlay_with_pixel_map_and_box_beyond_the_image():
    original = _random_image(120, 200)
    batch = prepare(original, DataConfig(input_size=(64, 64), crop_pct=1.0, crop_mode="border"))
    geometry = batch.geometries[0]
    assert geometry.top < 0  # letterboxed: the box covers more than the image
    relevance_map = torch.zeros(64, 64)
    relevance_map[:, 32:] = 1.0  # right half of the model input is relevant
    result = overlay(original, relevance_map, geometry, alpha=1.0)
    assert result.shape == original.shape
    assert tuple(result[60, 190]) == JET_HOT and tuple(result[60, 10]) == JET_COLD


def test_side_by_side_layout_and_content():
    first, second = _random_image(10, 20), np.full((10, 15, 3), 7, np.uint8)
    grid = side_by_side([first, second], ["a", "b"], gap=4, title_height=18)
    assert grid.shape == (28, 44, 3)
    np.testing.assert_array_equal(grid[18:, :20], first)
    np.testing.assert_array_equal(grid[18:, 24 + 2 : 24 + 17], second)  # centred in a 20-wide cell
    assert (grid[:18] < 128).any()  # a title was drawn
    stacked = side_by_side([first, first, first], columns=2, gap=0)
    assert stacked.shape == (20, 40, 3)
    np.testing.assert_array_equal(stacked[10:, :20], first)
    assert (stacked[10:, 20:] == 255).all()  # empty cell stays white
    with pytest.raises(ValueError, match="titles"):
        side_by_side([first], ["a", "b"])


# ------------------------------------------------------------------------------ signed maps, colour bars, labels


def _is_blue(colour, margin: int = 60) -> bool:
    red, green, blue = (int(c) for c in colour)
    return blue > red + margin and blue > green + margin


def _is_red(colour, margin: int = 60) -> bool:
    red, green, blue = (int(c) for c in colour)
    return red > blue + margin and red > green + margin


def test_diverging_colormaps_are_rgb_symmetric_and_centred():
    assert set(DIVERGING_COLORMAPS) == {"bwr", "coolwarm"} and set(DIVERGING_COLORMAPS) <= set(COLORMAPS)
    bwr, coolwarm = COLORMAPS["bwr"], COLORMAPS["coolwarm"]
    assert tuple(bwr[0]) == (0, 0, 255) and tuple(bwr[255]) == (255, 0, 0)  # RGB, not BGR
    assert tuple(bwr[127]) == tuple(bwr[128]) == (255, 255, 255)
    np.testing.assert_array_equal(bwr[::-1], bwr[:, ::-1])  # mirror image: red <-> blue
    # Moreland's cool-warm: blue (59, 76, 192) -> light grey (221, 221, 221) -> red (180, 4, 38).
    assert tuple(coolwarm[0]) == (59, 76, 192) and tuple(coolwarm[255]) == (180, 4, 38)
    assert tuple(coolwarm[127]) == tuple(coolwarm[128]) == (221, 221, 221)
    assert all(_is_blue(coolwarm[i], 20) for i in (0, 40, 90))
    assert all(_is_red(coolwarm[i], 20) for i in (165, 215, 255))
    for table in COLORMAPS.values():
        assert table.shape == (256, 3) and table.dtype == np.uint8 and not table.flags.writeable


def test_colorize_signed_puts_zero_on_the_centre():
    values = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0, 3.0, np.nan]])
    colours = colorize(values, "bwr", signed=True)
    assert tuple(colours[0, 0]) == (0, 0, 255) and tuple(colours[0, 4]) == (255, 0, 0)
    assert tuple(colours[0, 2]) == tuple(colours[0, 6]) == (255, 255, 255)  # 0 and NaN -> centre
    assert tuple(colours[0, 5]) == (255, 0, 0)  # clipped
    assert _is_blue(colours[0, 1]) and _is_red(colours[0, 3])
    # The default stays unsigned: values in [0, 1], 0 -> the first colour.
    assert tuple(colorize(values, "bwr")[0, 2]) == (0, 0, 255)


def test_signed_overlay_puts_negative_blue_positive_red_and_zero_at_the_centre():
    original = np.full((60, 90, 3), 128, np.uint8)
    relevance_map = np.zeros((6, 9))
    relevance_map[1:3, 1:3] = -2.0  # a negative blob, top left
    relevance_map[3:5, 6:8] = 0.5  # a weaker positive blob, bottom right
    result = overlay(original, relevance_map, colormap="bwr", alpha=1.0, signed=True)
    assert tuple(result[20, 20]) == (0, 0, 255)  # -max: the first colour
    assert _is_red(result[40, 70]) and not tuple(result[40, 70]) == (255, 0, 0)  # +0.5 of max 2: lighter red
    assert tuple(result[55, 45]) == (255, 255, 255)  # 0: the centre colour
    blended = overlay(original, relevance_map, colormap="coolwarm", alpha=0.6, signed=True)
    assert _is_blue(blended[20, 20], 40) and _is_red(blended[40, 70], 20)
    # Min-max (the default) would have coloured 0 as a middle level instead.
    unsigned = overlay(original, relevance_map, colormap="bwr", alpha=1.0)
    assert tuple(unsigned[55, 45]) != (255, 255, 255)
    # Scale invariance, and an all-zero map is all centre colour (no NaN).
    np.testing.assert_array_equal(overlay(original, relevance_map * 1e-30, colormap="bwr", alpha=1.0, signed=True),
                                  result)
    zeros = overlay(original, np.zeros((6, 9)), colormap="bwr", alpha=1.0, signed=True)
    assert (zeros == 255).all()


def test_signed_overlay_of_a_positive_map_uses_only_the_upper_half():
    original = _random_image(40, 40)
    relevance_map = np.random.default_rng(2).random((5, 5)) + 0.1
    result = overlay(original, relevance_map, colormap="bwr", alpha=1.0, signed=True)
    red, green, blue = (result[..., i].astype(int) for i in range(3))
    assert (red == 255).all() and (green == blue).all()  # white .. red, never blue


def test_colorbar_matches_the_colour_map():
    for name, signed in (("jet", False), ("viridis", False), ("bwr", True), ("coolwarm", True)):
        bar = colorbar(name, 200, 60, signed=signed)
        assert bar.shape == (200, 60, 3) and bar.dtype == np.uint8
        table = COLORMAPS[name]
        assert tuple(bar[0, 0]) == tuple(table[255]) and tuple(bar[-1, 0]) == tuple(table[0])
        column = bar[:, 0]
        expected = table[np.rint((1 - np.arange(200) / 199) * 255).astype(int)]
        np.testing.assert_array_equal(column, expected)
        assert (bar[:, -15:] < 100).any(), "labels are drawn right of the bar"
    signed_bar = colorbar("bwr", 201, 60, signed=True)
    assert tuple(signed_bar[100, 0]) == (255, 255, 255)  # the middle row is the colour of 0
    plain = colorbar("jet", 50, 12, labels=False)
    assert plain.shape == (50, 12, 3) and (plain == plain[:, :1]).all()  # the bar fills the width
    numbers = colorbar("bwr", 200, 70, signed=True, value_range=(-0.02, 0.01))
    assert not np.array_equal(numbers, colorbar("bwr", 200, 70, signed=True))
    with pytest.raises(ValueError, match="valid: jet"):
        colorbar("nope", 100)
    with pytest.raises(ValueError, match="height"):
        colorbar("jet", 1)


def test_annotate_keeps_the_size_and_changes_only_the_band():
    image = _random_image(120, 200)
    for position in ("bottom", "top"):
        labelled = annotate(image, "class 3 · transformer attribution", position=position)
        assert labelled.shape == image.shape and labelled.dtype == np.uint8
        changed_rows = np.flatnonzero((labelled != image).any(axis=(1, 2)))
        assert len(changed_rows) > 0
        band = changed_rows.max() - changed_rows.min() + 1
        assert band <= 30, f"the band should be small, got {band} rows"
        if position == "bottom":
            assert changed_rows.max() == 119
            np.testing.assert_array_equal(labelled[: 120 - band], image[: 120 - band])
        else:
            assert changed_rows.min() == 0
            np.testing.assert_array_equal(labelled[band:], image[band:])
        assert (labelled[changed_rows] > 240).any(), "white text in the band"
    np.testing.assert_array_equal(image, _random_image(120, 200))  # the input is not modified
    long = annotate(image, "a very long caption " * 20)  # truncated, not spilling over
    assert long.shape == image.shape
    with pytest.raises(ValueError, match="position"):
        annotate(image, "x", position="left")


def test_the_mask_edge_is_the_masks_pixels_with_a_neighbour_outside():
    from relevance.render import mask_edge

    mask = np.zeros((6, 7), dtype=bool)
    mask[1:5, 2:6] = True  # a 4 x 4 square
    expected = mask.copy()
    expected[2:4, 3:5] = False  # its 2 x 2 interior
    np.testing.assert_array_equal(mask_edge(mask), expected)
    assert not mask_edge(np.ones((3, 3), dtype=bool)).any()  # the image border is not outside the mask
