"""Tests for relevance.images: decoding, timm-exact preprocessing and crop geometry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from relevance import images
from relevance.images import CropGeometry, DataConfig, ImageError, load_image, prepare

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEIT_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def _photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: exercises both interpolation and rounding."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255.0 / width, yy * 255.0 / height, (xx + yy) % 97 * 2.5], axis=2)
    noisy = base + rng.normal(0, 20, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def vit_b16_config() -> dict:
    model = timm.create_model("vit_base_patch16_224", pretrained=False, depth=1, num_classes=2)
    return resolve_data_config(model=model)


# ------------------------------------------------------------------------------------------------
# prepare() reproduces timm's eval transform
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(180, 300), (300, 180), (224, 224), (97, 513)])
def test_prepare_matches_timm_transform_vit_b16(vit_b16_config, shape):
    assert vit_b16_config["crop_pct"] == 0.9 and vit_b16_config["mean"] == (0.5, 0.5, 0.5)
    rgb = _photo_like(*shape)
    expected = create_transform(**vit_b16_config)(Image.fromarray(rgb))
    got = prepare(rgb, vit_b16_config).pixels
    assert got.shape == (1, 3, 224, 224) and got.dtype == torch.float32
    assert torch.allclose(got[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(180, 300), (333, 250)])
def test_prepare_matches_timm_transform_deit(shape):
    rgb = _photo_like(*shape, seed=1)
    expected = create_transform(**DEIT_CONFIG)(Image.fromarray(rgb))
    got = prepare(rgb, DataConfig.from_timm(DEIT_CONFIG)).pixels
    assert torch.allclose(got[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "crop_mode, crop_pct, input_size, interpolation",
    [
        ("squash", 0.9, (224, 224), "bicubic"),
        ("border", 0.95, (224, 224), "bilinear"),
        ("border", 1.0, (160, 192), "bicubic"),
        ("center", 0.875, (160, 192), "bilinear"),  # non-square target: timm ResizeKeepRatio path
        ("center", 1.0, (64, 64), "nearest"),
        ("squash", 1.1, (64, 64), "bicubic"),  # crop_pct > 1: torchvision pads with black
    ],
)
def test_prepare_matches_timm_other_crop_modes(crop_mode, crop_pct, input_size, interpolation):
    cfg = dict(DEIT_CONFIG, crop_mode=crop_mode, crop_pct=crop_pct, input_size=(3, *input_size),
               interpolation=interpolation)
    rgb = _photo_like(150, 260, seed=2)
    expected = create_transform(**cfg)(Image.fromarray(rgb))
    got = prepare(rgb, cfg).pixels[0]
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_data_config_from_timm_reads_all_fields(vit_b16_config):
    cfg = DataConfig.from_timm(dict(vit_b16_config, input_size=(3, 192, 256), crop_mode="squash"))
    assert cfg == DataConfig(input_size=(192, 256), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                             interpolation="bicubic", crop_pct=0.9, crop_mode="squash")
    with pytest.raises(ValueError, match="crop_mode"):
        DataConfig(crop_mode="zoom")
    with pytest.raises(ValueError, match="interpolation"):
        DataConfig(interpolation="cubic-ish")


# ------------------------------------------------------------------------------------------------
# Crop geometry
# ------------------------------------------------------------------------------------------------


def test_geometry_center_hand_computed(vit_b16_config):
    # 200x300 image, size 224, crop_pct 0.9 -> scale 248: resized to 248x372 (shorter side 248,
    # longer int(248*300/200)=372); crop offsets round((248-224)/2)=12, round((372-224)/2)=74.
    geometry = prepare(np.zeros((200, 300, 3), np.uint8), vit_b16_config).geometries[0]
    assert geometry.original_size == (200, 300)
    assert geometry.box == pytest.approx((12 * 200 / 248, 74 * 300 / 372, 224 * 200 / 248, 224 * 300 / 372))


def test_geometry_squash_and_border_hand_computed():
    rgb = np.zeros((200, 300, 3), np.uint8)
    squash = prepare(rgb, DataConfig(crop_pct=0.9, crop_mode="squash")).geometries[0]
    # resized to 248x248, crop offset 12 on both axes
    assert squash.box == pytest.approx((12 * 200 / 248, 12 * 300 / 248, 224 * 200 / 248, 224 * 300 / 248))
    border = prepare(rgb, DataConfig(crop_pct=0.9, crop_mode="border")).geometries[0]
    # longest side 300 -> 248, so 200 -> round(165.33)=165; pad height: top=-(224-165)//2=-29
    assert border.box == pytest.approx((-29 * 200 / 165, 12 * 300 / 248, 224 * 200 / 165, 224 * 300 / 248))
    assert border.top < 0 and border.top + border.height > 200  # box extends beyond the image


def test_geometry_maps_model_pixels_to_original_coordinates():
    """On a linear ramp image, model pixel (i, j) must show the ramp value at the original
    coordinate the geometry assigns to it (box top + (i + 0.5) * box_h / H, ...)."""
    height0, width0 = 250, 240
    yy, xx = np.mgrid[0:height0, 0:width0]
    ramp = np.stack([xx, yy, np.zeros_like(xx)], axis=2).astype(np.uint8)
    cfg = DataConfig(input_size=(64, 48), mean=(0, 0, 0), std=(1, 1, 1), interpolation="bilinear",
                     crop_pct=0.75, crop_mode="center")
    batch = prepare(ramp, cfg)
    geometry = batch.geometries[0]
    pixels = batch.pixels[0].numpy() * 255  # back to 0..255 units
    rows = geometry.top + (np.arange(64) + 0.5) * geometry.height / 64 - 0.5  # ramp value = centre - 0.5
    cols = geometry.left + (np.arange(48) + 0.5) * geometry.width / 48 - 0.5
    inner_r, inner_c = slice(3, -3), slice(3, -3)  # skip the image-border filter support
    np.testing.assert_allclose(pixels[1][inner_r, inner_c], np.broadcast_to(rows[:, None], (64, 48))[inner_r, inner_c], atol=0.6)
    np.testing.assert_allclose(pixels[0][inner_r, inner_c], np.broadcast_to(cols[None, :], (64, 48))[inner_r, inner_c], atol=0.6)


def test_prepare_batches_lists_and_4d_arrays():
    first, second = _photo_like(50, 80), _photo_like(90, 60, seed=3)
    batch = prepare([first, Image.fromarray(second)], DataConfig(input_size=(32, 32)))
    assert batch.pixels.shape == (2, 3, 32, 32) and len(batch) == 2
    np.testing.assert_array_equal(batch.originals[1], second)
    assert [g.original_size for g in batch.geometries] == [(50, 80), (90, 60)]
    stacked = prepare(np.stack([first, first]), DataConfig(input_size=(32, 32)))
    assert stacked.pixels.shape == (2, 3, 32, 32)
    assert torch.equal(stacked.pixels[0], batch.pixels[0])
    with pytest.raises(ValueError):
        prepare([], DataConfig())


# ------------------------------------------------------------------------------------------------
# load_image: arrays and tensors
# ------------------------------------------------------------------------------------------------


def test_grayscale_arrays_become_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for value in (gray, gray[:, :, None]):
        rgb = load_image(value)
        assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
        for channel in range(3):
            np.testing.assert_array_equal(rgb[:, :, channel], gray)


def test_rgba_is_composited_on_white():
    rgba = np.array([[[200, 100, 0, 0], [200, 100, 0, 255], [200, 100, 0, 128]]], dtype=np.uint8)
    rgb = load_image(rgba)
    a = 128 / 255
    expected_half = np.rint([200 * a + 255 * (1 - a), 100 * a + 255 * (1 - a), 255 * (1 - a)])
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[0, 1], [200, 100, 0])
    np.testing.assert_array_equal(rgb[0, 2], expected_half)


def test_uint16_scaled_by_dtype_range_not_min_max():
    data = np.array([[0, 257 * 10, 65535, 1000]], dtype=np.uint16)
    rgb = load_image(data)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 10, 255, 4])  # 1000/257 = 3.9 -> 4, not stretched


def test_float_arrays_and_tensors():
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(values)[0, :, 1], [0, 128, 255])
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(values * 255)
    rgb = _photo_like(5, 7)
    chw_uint8 = torch.from_numpy(rgb).permute(2, 0, 1)
    np.testing.assert_array_equal(load_image(chw_uint8), rgb)
    hwc_float = torch.from_numpy(rgb).float() / 255
    np.testing.assert_array_equal(load_image(hwc_float), rgb)
    np.testing.assert_array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1).double() / 255), rgb)


def test_bad_arrays_raise_image_error():
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((5, 5, 7), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((2, 2), np.nan))
    with pytest.raises(ImageError, match="too large"):
        load_image(np.broadcast_to(np.uint8(0), (6400, 6400)))  # 41 MP, no memory used
    with pytest.raises(ImageError, match="unsupported"):
        load_image(12)


# ------------------------------------------------------------------------------------------------
# load_image: files
# ------------------------------------------------------------------------------------------------


def test_png_modes_16bit_la_and_palette_transparency(tmp_path):
    sixteen = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    np.testing.assert_array_equal(load_image(tmp_path / "sixteen.png")[0, :, 2], [0, 100, 255])
    np.testing.assert_array_equal(load_image(Image.fromarray(sixteen))[0, :, 0], [0, 100, 255])
    big_endian = Image.frombytes("I;16B", (3, 1), sixteen.astype(">u2").tobytes())
    np.testing.assert_array_equal(load_image(big_endian)[0, :, 1], [0, 100, 255])

    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "la.png"))[0], [[255] * 3, [50] * 3])

    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=0)
    np.testing.assert_array_equal(load_image(tmp_path / "palette.png")[0], [[255, 255, 255], [200, 0, 0]])


def test_cmyk_file_is_converted_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))  # white
    cmyk.putpixel((1, 0), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "cmyk.tif")[0], [[255, 255, 255], [0, 255, 255]])


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:20, :20] = (255, 0, 0)  # red block at the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    shown = load_image(tmp_path / "rotated.jpg")
    assert shown.shape == (80, 40, 3)
    assert shown[5, 35, 0] > 200 and shown[5, 35, 2] < 60  # now top-right
    assert shown[5, 5, 0] < 60


def test_unreadable_files_give_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00\x01 definitely not an image" * 10)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    buffer = io.BytesIO()
    Image.fromarray(_photo_like(64, 64)).save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    for path, reason in [(garbage, "not a readable image"), (text, "not a readable image"),
                         (truncated, "cannot decode"), (tmp_path / "missing.png", "not found"),
                         (tmp_path, "directory")]:
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert str(path) in str(info.value) and reason in str(info.value)
        assert isinstance(info.value, ValueError)


def test_oversized_file_rejected_before_decoding(tmp_path, monkeypatch):
    Image.new("1", (6400, 6400)).save(tmp_path / "huge.png")  # 41 MP, tiny file
    with pytest.raises(ImageError, match=r"huge\.png: image too large"):
        load_image(tmp_path / "huge.png")
    Image.new("RGB", (10, 10)).save(tmp_path / "small.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 99)
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "small.png")


def test_crop_geometry_accessors():
    geometry = CropGeometry(original_size=(10, 20), box=(1.0, 2.0, 3.0, 4.0))
    assert (geometry.top, geometry.left, geometry.height, geometry.width) == (1.0, 2.0, 3.0, 4.0)
    assert CropGeometry.full((10, 20)) == CropGeometry(original_size=(10, 20), box=(0.0, 0.0, 10.0, 20.0))
