"""Image input handling: decoding, conversion to 8-bit RGB and timm-exact preprocessing.

`load_image` turns a file path, PIL image, numpy array or torch tensor into a uint8 RGB array.
`prepare` applies a model's evaluation transform (resize, centre crop or pad, normalise) exactly
as ``timm.data.create_transform(**resolve_data_config(model=m))`` does, and records for every
image the `CropGeometry`: the box of the original image that the model input covers, so that a
relevance map can be drawn back onto the original photo (see `relevance.render.overlay`).

This module deliberately does not import timm: it only reads timm's data-config dictionaries.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "DataConfig",
    "CropGeometry",
    "PreparedBatch",
    "load_image",
    "prepare",
]

#: Largest accepted image, in pixels (height * width). Larger inputs raise `ImageError`.
MAX_PIXELS = 40_000_000

#: File extensions treated as images when walking folders (lower case, with the dot).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: Interpolation names accepted by timm's eval transform, mapped to PIL resampling filters
#: (the same mapping torchvision uses when it resizes PIL images).
_PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
_CROP_MODES = ("center", "squash", "border")

# timm's defaults (timm.data.constants / resolve_data_config).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DEFAULT_CROP_PCT = 0.875

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


class ImageError(ValueError):
    """An input that cannot be used as an image (unreadable, corrupt, empty, too large, bad layout)."""


# ----------------------------------------------------------------------------------------------
# Configuration and geometry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """How a model expects its input images (the fields of timm's ``resolve_data_config``).

    Attributes
    ----------
    input_size:
        Model input (H, W) in pixels.
    mean, std:
        Per-channel normalisation (RGB order) applied to values in [0, 1].
    interpolation:
        Resize filter: "bicubic", "bilinear", "nearest", "box", "hamming" or "lanczos".
    crop_pct:
        Fraction of the resized image kept by the crop; the image is first resized to
        ``floor(size / crop_pct)``.
    crop_mode:
        "center" (resize shorter side, centre crop), "squash" (resize both sides,
        ignoring the aspect ratio, then centre crop) or "border" (resize the longer side, then
        centre crop or pad with the mean colour).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = _DEFAULT_CROP_PCT
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"input_size must be two positive ints (H, W), got {self.input_size!r}")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got mean={self.mean!r} std={self.std!r}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std values must be positive, got {self.std!r}")
        if self.interpolation not in _PIL_RESAMPLE:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; valid: {', '.join(_PIL_RESAMPLE)}"
            )
        if not (isinstance(self.crop_pct, (int, float)) and math.isfinite(self.crop_pct) and self.crop_pct > 0):
            raise ValueError(f"crop_pct must be a positive number, got {self.crop_pct!r}")
        if self.crop_mode not in _CROP_MODES:
            raise ValueError(f"unknown crop_mode {self.crop_mode!r}; valid: {', '.join(_CROP_MODES)}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    @classmethod
    def from_timm(cls, cfg: dict[str, Any]) -> "DataConfig":
        """Build from the dict returned by ``timm.data.resolve_data_config(model=...)``.

        ``input_size`` there is (C, H, W); missing ``crop_pct``/``crop_mode`` take timm's defaults
        (0.875, "center"). Keys this class does not model (e.g. ``crop_border_pixels``) must be
        absent or falsy.
        """
        input_size = tuple(cfg.get("input_size", (3, 224, 224)))
        if len(input_size) == 3:
            if input_size[0] != 3:
                raise ValueError(f"only 3-channel (RGB) models are supported, got input_size={input_size}")
            input_size = input_size[1:]
        if cfg.get("crop_border_pixels"):
            raise ValueError("crop_border_pixels is not supported")
        return cls(
            input_size=input_size,
            mean=tuple(cfg.get("mean", _IMAGENET_MEAN)),
            std=tuple(cfg.get("std", _IMAGENET_STD)),
            interpolation=cfg.get("interpolation") or "bicubic",
            crop_pct=cfg.get("crop_pct") or _DEFAULT_CROP_PCT,
            crop_mode=cfg.get("crop_mode") or "center",
        )


@dataclass(frozen=True)
class CropGeometry:
    """Where the model input lies in the original image.

    Attributes
    ----------
    original_size:
        (H0, W0) of the original image.
    box:
        (top, left, height, width) in original pixel coordinates (floats; pixel edges, so the
        whole image is (0, 0, H0, W0)). The model input's pixel grid spans exactly this box.
        With padding ("border" mode, or crop_pct > 1) the box extends beyond the image.
    """

    original_size: tuple[int, int]
    box: tuple[float, float, float, float]

    @classmethod
    def full(cls, original_size: tuple[int, int]) -> "CropGeometry":
        """The geometry of a model input that covers the whole (H0, W0) image."""
        height0, width0 = (int(v) for v in original_size)
        return cls(original_size=(height0, width0), box=(0.0, 0.0, float(height0), float(width0)))

    @property
    def top(self) -> float:
        return self.box[0]

    @property
    def left(self) -> float:
        return self.box[1]

    @property
    def height(self) -> float:
        return self.box[2]

    @property
    def width(self) -> float:
        return self.box[3]


@dataclass
class PreparedBatch:
    """Output of `prepare`.

    Attributes
    ----------
    pixels:
        (B, 3, H, W) float32, normalised model input.
    originals:
        B uint8 arrays (H0_i, W0_i, 3), the decoded RGB originals.
    geometries:
        B `CropGeometry`, one per image.
    """

    pixels: torch.Tensor
    originals: list[np.ndarray] = field(default_factory=list)
    geometries: list[CropGeometry] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def _check_size(height: int, width: int, name: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageError(f"{name}: empty image ({height}x{width} pixels)")
    if height * width > MAX_PIXELS:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {height * width / 1e6:.1f} megapixels; "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels)"
        )


def _composite_on_white(rgb: np.ndarray, alpha01: np.ndarray) -> np.ndarray:
    """rgb: (H, W, 3) float in [0, 255]; alpha01: (H, W) float in [0, 1] -> float (H, W, 3)."""
    a = alpha01[..., None]
    return rgb * a + 255.0 * (1.0 - a)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _scale_to_8bit(array: np.ndarray, name: str) -> np.ndarray:
    """Map an array of any supported dtype to float values in [0, 255] by the dtype's range."""
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if array.dtype == np.bool_:
        return array.astype(np.float64) * 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) * (255.0 / 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ImageError(f"{name}: float image contains NaN or infinite values")
        lo, hi = float(values.min()), float(values.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageError(
                f"{name}: float images must have values in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
            )
        return np.clip(values, 0.0, 1.0) * 255.0
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{name}: integer image of dtype {array.dtype} must have values in [0, 255] "
                f"(use uint16 for 16-bit data), got range [{lo}, {hi}]"
            )
        return array.astype(np.float64)
    raise ImageError(f"{name}: unsupported array dtype {array.dtype}")


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W) | (H, W, C) with C in {1, 2, 3, 4} of any supported dtype -> uint8 (H, W, 3)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(
            f"{name}: expected an (H, W) or (H, W, C) image with C in 1..4, got shape {tuple(array.shape)}"
        )
    _check_size(array.shape[0], array.shape[1], name)
    values = _scale_to_8bit(array, name)
    channels = values.shape[2]
    if channels in (1, 2):
        rgb = np.repeat(values[:, :, :1], 3, axis=2)
    else:
        rgb = values[:, :, :3]
    if channels in (2, 4):
        rgb = _composite_on_white(rgb, values[:, :, -1] / 255.0)
    return _to_uint8(rgb)


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """Any PIL mode -> uint8 (H, W, 3); transparency is composited on white, 16-bit is rescaled."""
    width, height = image.size
    _check_size(height, width, name)
    mode = image.mode
    if mode in ("P", "L", "RGB", "1") and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    elif mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        array = np.asarray(image).astype(np.uint16)
        return _array_to_rgb(array, name)
    if mode == "I":
        # 32-bit integer mode: Pillow's representation of 16-bit greyscale files (e.g. PNG).
        array = np.asarray(image)
        return _array_to_rgb(np.clip(array, 0, 65535).astype(np.uint16), name)
    if mode == "F":
        return _array_to_rgb(np.asarray(image, dtype=np.float32), name)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        if mode in ("RGBa", "La"):  # premultiplied alpha
            image = image.convert("RGBA" if mode == "RGBa" else "LA")
        return _array_to_rgb(np.asarray(image), name)
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in ("1", "L"):
        return _array_to_rgb(np.asarray(image.convert("L")), name)
    # CMYK, YCbCr, LAB, HSV, P without transparency, ...: let Pillow convert.
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _load_file(path: Path) -> np.ndarray:
    name = str(path)
    if not path.exists():
        raise ImageError(f"{name}: file not found")
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            # We enforce our own (stricter) pixel limit below, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                _check_size(height, width, name)
                image.load()
                image = ImageOps.exif_transpose(image)
                return _pil_to_rgb(image, name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image file (unknown or unsupported format)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image too large (over {MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error) or type(error).__name__
        raise ImageError(f"{name}: cannot decode image ({reason})") from None


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W, C) or (H, W) tensor -> numpy (H, W[, C]) keeping the dtype's meaning."""
    array = tensor.detach().cpu()
    if array.dtype == torch.bfloat16:
        array = array.float()
    array = array.numpy()
    if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, 2)
    elif array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] in (1, 2, 3, 4):
        # Ambiguous tiny image: torch convention is channels first.
        array = np.moveaxis(array, 0, 2)
    return array


def load_image(image: ImageInput) -> np.ndarray:
    """Decode any supported input into an RGB uint8 array (H, W, 3).

    Accepted inputs:
        * a file path (str / os.PathLike): EXIF orientation is applied;
        * a PIL image of any mode;
        * a numpy array (H, W) or (H, W, C), C in {1, 2, 3, 4}, dtype uint8, uint16, bool,
          float in [0, 1], or another integer type with values in [0, 255];
        * a torch tensor (C, H, W) or (H, W, C) with the same dtype rules.

    Greyscale is replicated to 3 channels; alpha (RGBA, LA, palette transparency) is composited
    on white; 16-bit data is scaled by the dtype range (65535 -> 255), not by its min/max;
    CMYK and other colour spaces are converted by Pillow.

    Raises
    ------
    ImageError
        Unreadable / corrupt / non-image file, empty image, image larger than
        `MAX_PIXELS`, or an array of unsupported shape or dtype. The message names the input.
    """
    if isinstance(image, (str, os.PathLike)):
        return _load_file(Path(image))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "PIL image")
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(_tensor_to_array(image), "image tensor")
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, "image array")
    raise ImageError(
        f"unsupported image input of type {type(image).__name__}; "
        "expected a path, PIL image, numpy array or torch tensor"
    )


# ----------------------------------------------------------------------------------------------
# timm-exact evaluation transform
# ----------------------------------------------------------------------------------------------


def _resized_size(height: int, width: int, config: DataConfig) -> tuple[int, int]:
    """Size (h1, w1) after the resize step of timm's eval transform for an (height, width) image."""
    target_h, target_w = config.input_size
    scale_h = math.floor(target_h / config.crop_pct)
    scale_w = math.floor(target_w / config.crop_pct)
    if config.crop_mode == "squash":
        return scale_h, scale_w
    if config.crop_mode == "center" and scale_h == scale_w:
        # torchvision Resize(int): shorter side to `scale`, longer side truncated.
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(scale_h * long / short)
        return (new_long, scale_h) if width <= height else (scale_h, new_long)
    # timm ResizeKeepRatio: longest=0 ("center", non-square) or longest=1 ("border").
    longest = 1.0 if config.crop_mode == "border" else 0.0
    ratio_h, ratio_w = height / scale_h, width / scale_w
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(height / ratio), round(width / ratio)


def _crop_offset(size: int, crop: int) -> int:
    """Offset of a centre crop of length `crop` in a length `size` (negative when padding)."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def _prepare_one(rgb: np.ndarray, config: DataConfig) -> tuple[torch.Tensor, CropGeometry]:
    """uint8 (H0, W0, 3) -> normalised float32 (3, H, W) and its geometry."""
    height0, width0 = rgb.shape[:2]
    resized_h, resized_w = _resized_size(height0, width0, config)
    if resized_h <= 0 or resized_w <= 0:
        raise ImageError(f"image of {width0}x{height0} pixels is too thin to resize to the model input")
    if (resized_h, resized_w) == (height0, width0):
        resized = rgb
    else:
        pil = Image.fromarray(rgb).resize((resized_w, resized_h), _PIL_RESAMPLE[config.interpolation])
        resized = np.asarray(pil)

    crop_h, crop_w = config.input_size
    top, left = _crop_offset(resized_h, crop_h), _crop_offset(resized_w, crop_w)
    if config.crop_mode == "border":
        fill = np.array([round(255 * v) for v in config.mean], dtype=np.uint8)
    else:  # torchvision CenterCrop pads with black
        fill = np.zeros(3, dtype=np.uint8)
    canvas = np.empty((crop_h, crop_w, 3), dtype=np.uint8)
    canvas[:] = fill
    src_y0, src_x0 = max(top, 0), max(left, 0)
    src_y1, src_x1 = min(top + crop_h, resized_h), min(left + crop_w, resized_w)
    canvas[src_y0 - top : src_y1 - top, src_x0 - left : src_x1 - left] = resized[src_y0:src_y1, src_x0:src_x1]

    pixels = torch.from_numpy(canvas).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    pixels = pixels.sub(mean).div(std)

    scale_y, scale_x = height0 / resized_h, width0 / resized_w
    geometry = CropGeometry(
        original_size=(height0, width0),
        box=(top * scale_y, left * scale_x, crop_h * scale_y, crop_w * scale_x),
    )
    return pixels, geometry


def _as_input_list(inputs: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    elif isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
        items = list(inputs)  # a batch (B, ...) of images
    else:
        items = [inputs]
    if not items:
        raise ValueError("prepare() needs at least one image")
    return items


def prepare(
    inputs: ImageInput | Sequence[ImageInput], config: DataConfig | dict[str, Any]
) -> PreparedBatch:
    """Decode images and apply the model's eval transform, identical to timm's.

    Parameters
    ----------
    inputs:
        One image input (see `load_image`), a list/tuple of them, or a 4-D array/tensor
        holding a batch of images.
    config:
        A `DataConfig`, or a timm ``resolve_data_config`` dict.

    Returns
    -------
    PreparedBatch
        `PreparedBatch` with pixels (B, 3, H, W) float32, the uint8 originals and the geometries.

    Raises
    ------
    ImageError
        If any input cannot be decoded.
    """
    if isinstance(config, dict):
        config = DataConfig.from_timm(config)
    originals, tensors, geometries = [], [], []
    for item in _as_input_list(inputs):
        rgb = load_image(item)
        pixels, geometry = _prepare_one(rgb, config)
        originals.append(rgb)
        tensors.append(pixels)
        geometries.append(geometry)
    return PreparedBatch(pixels=torch.stack(tensors), originals=originals, geometries=geometries)
