"""Features: which input elements a perturbation method switches on and off together, and how captum's attributions
become a map.

Image streams (input values (B, C, H, W)): ``"pixels"`` (each pixel one feature, all its channels together),
``"patches"`` (the model's patch grid: the map is on the grid, like the attention methods' maps), ``"superpixels"``
(SLIC, Achanta et al. 2012, from scikit-image, on each image's own values: deterministic; a grid of square cells
when scikit-image is missing), or int feature ids (H, W) or (B, H, W). Text streams (input values (B, L, ...)):
``"tokens"`` or int ids (L,) or (B, L) grouping tokens. Positions that never change (special tokens, padding) belong
to no feature (id -1).

Maps: gradient methods give one attribution per element; a feature's value is their sum (over channels for pixels,
over the patch for patches, over the hidden dimension for tokens). Perturbation methods give one coefficient per
feature, repeated on its elements; the map holds that coefficient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

IMAGE_FEATURES = ("pixels", "patches", "superpixels")
TEXT_FEATURES = ("tokens",)


@dataclass(frozen=True)
class Features:
    """The features of a batch's input values.

    Attributes
    ----------
    kind:
        ``"pixels"``, ``"patches"``, ``"superpixels"``, ``"custom"`` or ``"tokens"``.
    ids:
        (B, H, W) or (B, L) long: each position's feature, numbered from 0 per sample; -1 where nothing changes.
    grid:
        (h, w) of the patch grid, for ``"patches"``.
    """

    kind: str
    ids: Tensor
    grid: tuple[int, int] | None = None

    def count(self, index: int) -> int:
        """Number of features of sample ``index``."""
        return int(self.ids[index].max()) + 1 if bool((self.ids[index] >= 0).any()) else 0

    def captum_mask(self, index: int, values: Tensor) -> Tensor:
        """Sample ``index``'s mask for captum's Lime/KernelShap, broadcastable to its values (1, ...): features
        0..F-1, and the never-changing positions as one more feature F (their baseline is the input itself, so
        switching it changes nothing)."""
        ids = self.ids[index:index + 1, :values.shape[1]] if self.kind in ("tokens", "custom_text") else \
            self.ids[index:index + 1]
        ids = torch.where(ids < 0, torch.full_like(ids, self.count(index)), ids)
        if values.dim() == 4:  # images: (1, 1, H, W), the same on every channel
            return ids[:, None].to(values.device)
        return ids.reshape(*ids.shape, *([1] * (values.dim() - 2))).to(values.device)


def _relabel(ids: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Consecutive ids from 0, in the order of the given ids; -1 outside ``keep``."""
    out = np.full(ids.shape, -1, dtype=np.int64)
    where = np.ones(ids.shape, bool) if keep is None else keep
    _, inverse = np.unique(ids[where], return_inverse=True)
    out[where] = inverse.reshape(-1)
    return out


def superpixels(values: Tensor, n_segments: int) -> tuple[np.ndarray, bool]:
    """Superpixels of one image: SLICO (SLIC with adaptive compactness; Achanta et al., TPAMI 2012), from
    scikit-image, on the values min-max scaled (in Lab for 3 channels), deterministic.

    Parameters
    ----------
    values:
        (C, H, W) the image's values at the site.
    n_segments:
        About how many superpixels.

    Returns
    -------
    tuple
        The labels (H, W), and whether SLIC made them (``False``: scikit-image is missing, and the labels are a
        grid of about ``n_segments`` square cells).
    """
    image = values.detach().double().cpu().numpy().transpose(1, 2, 0)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    try:
        from skimage.segmentation import slic
    except ImportError:
        height, width = image.shape[:2]
        side = max(1, round(math.sqrt(height * width / n_segments)))
        rows, cols = np.arange(height)[:, None] // side, np.arange(width)[None, :] // side
        return rows * (-(-width // side)) + cols, False
    labels = slic(image, n_segments=n_segments, slic_zero=True, start_label=0, channel_axis=-1,
                  convert2lab=image.shape[2] == 3)
    return labels, True


def make_features(choice: object, modality: str, values: Tensor, fixed: Tensor | None,
                  grid: tuple[int, int] | None, n_segments: int | None) -> tuple[Features, list[str]]:
    """The features of a batch's input values.

    Parameters
    ----------
    choice:
        ``"pixels"``, ``"patches"``, ``"superpixels"``, ``"tokens"`` or int feature ids (see the module docstring).
    modality:
        ``"image"`` or ``"text"``.
    values:
        (B, C, H, W) or (B, L, ...) the input values.
    fixed:
        (B, L) text positions that never change, or ``None``.
    grid:
        (h, w) the stream's patch grid, or ``None``.
    n_segments:
        Superpixels: about how many (default: h * w).

    Returns
    -------
    tuple
        The :class:`Features` and warnings (a list of str).
    """
    batch = values.shape[0]
    if isinstance(choice, (Tensor, np.ndarray)):
        return _custom(torch.as_tensor(choice), modality, values, fixed), []
    if modality == "text":
        if choice != "tokens":
            raise ValueError(f"features of a text stream are 'tokens' or int ids (L,) or (B, L), got {choice!r}")
        keep = ~fixed
        ids = torch.where(keep, keep.long().cumsum(dim=1) - 1, torch.full_like(keep, -1, dtype=torch.long))
        return Features("tokens", ids.cpu()), []
    if choice not in IMAGE_FEATURES:
        raise ValueError(f"features of an image stream are one of {', '.join(IMAGE_FEATURES)} or int ids (H, W) or "
                         f"(B, H, W), got {choice!r}")
    height, width = values.shape[-2:]
    if choice == "pixels":
        return Features("pixels", torch.arange(height * width).reshape(1, height, width).expand(batch, -1, -1)), []
    if grid is None:
        raise ValueError("this image stream recorded no patch grid: use features='pixels' or 'superpixels'")
    if choice == "patches":
        rows, cols = grid
        if height % rows or width % cols:
            raise ValueError(f"the {height}x{width} input does not divide into the {rows}x{cols} patch grid")
        cell_r = torch.arange(height)[:, None] // (height // rows)
        cell_c = torch.arange(width)[None, :] // (width // cols)
        return Features("patches", (cell_r * cols + cell_c).expand(batch, -1, -1), grid), []
    count = n_segments or grid[0] * grid[1]
    labels, used_slic = zip(*(superpixels(values[i], count) for i in range(batch)))
    ids = torch.from_numpy(np.stack([_relabel(label) for label in labels]))
    warnings = [] if all(used_slic) else ["scikit-image is not installed: superpixels are square grid cells "
                                          "(pip install scikit-image for SLIC)"]
    return Features("superpixels", ids), warnings


def _custom(ids: Tensor, modality: str, values: Tensor, fixed: Tensor | None) -> Features:
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"feature ids must be integers, got dtype {ids.dtype}")
    batch = values.shape[0]
    shape = tuple(values.shape[-2:]) if modality == "image" else (values.shape[1],)
    if tuple(ids.shape) == shape:
        ids = ids.expand(batch, *shape)
    if tuple(ids.shape) != (batch, *shape):
        raise ValueError(f"feature ids must have shape {shape} or {(batch, *shape)}, got {tuple(ids.shape)}")
    ids = ids.cpu().numpy()
    keep = None if fixed is None else (~fixed).cpu().numpy()
    relabelled = np.stack([_relabel(ids[i], None if keep is None else keep[i]) for i in range(batch)])
    return Features("custom" if modality == "image" else "custom_text", torch.from_numpy(relabelled))


def occlusion_window(features: Features, window: tuple[int, int] | None, stride: tuple[int, int] | None,
                     values: Tensor) -> tuple[tuple[int, ...], tuple[int, ...], Features]:
    """Occlusion's sliding window (Zeiler & Fergus 2014) as captum takes it.

    Parameters
    ----------
    features:
        The chosen features: patches (window and stride one patch: the map on the grid), pixels, or tokens.
    window, stride:
        (height, width) in pixels, overriding the features (the map is then on the pixels); ``None``: the feature.
    values:
        (B, C, H, W) or (B, L, ...) the input values.

    Returns
    -------
    tuple
        The window and strides without the batch dimension ((C, h, w) or (1, ...)), and the features of the map.
    """
    if features.kind in ("tokens", "custom_text"):
        if window is not None or stride is not None or features.kind != "tokens":
            raise ValueError("occlusion of a text occludes one token at a time: no window, stride or feature ids")
        shape = (1, *values.shape[2:])
        return shape, shape, features
    channels = values.shape[1]
    if window is not None:
        stride = stride or window
        pixels = Features("pixels", torch.arange(values.shape[-2] * values.shape[-1]).reshape(
            1, *values.shape[-2:]).expand(values.shape[0], -1, -1))
        return (channels, *window), (channels, *stride), pixels
    if stride is not None:
        raise ValueError("occlusion: give stride together with window")
    if features.kind == "patches":
        size = (values.shape[-2] // features.grid[0], values.shape[-1] // features.grid[1])
        return (channels, *size), (channels, *size), features
    if features.kind == "pixels":
        return (channels, 1, 1), (channels, 1, 1), features
    raise ValueError("occlusion slides a window: features must be 'patches' or 'pixels' (or give window= and "
                     "stride= in pixels); lime and kernel_shap take superpixels and feature ids")


def feature_map(attribution: Tensor, features: Features, reduce: str, fixed: Tensor | None) -> Tensor:
    """The map of captum's attributions.

    Parameters
    ----------
    attribution:
        (B, C, H, W) or (B, L, ...) captum's attributions at the input site.
    features:
        The features the map is read on.
    reduce:
        ``"sum"`` (gradient methods: a feature's value is the sum of its elements') or ``"mean"`` (perturbation
        methods: the coefficient repeated on its elements).
    fixed:
        (B, L) text positions that never change (zero in the map), or ``None``.

    Returns
    -------
    Tensor
        (B, h, w) for patches, (B, H, W) for other image features, (B, L) for texts.
    """
    def over(tensor: Tensor, dims: tuple[int, ...]) -> Tensor:
        return tensor.sum(dim=dims) if reduce == "sum" else tensor.mean(dim=dims)

    if features.kind in ("tokens", "custom_text"):
        values = over(attribution, tuple(range(2, attribution.dim()))) if attribution.dim() > 2 else attribution
        return values.masked_fill(fixed.to(values.device), 0) if fixed is not None else values
    if features.kind == "patches":
        rows, cols = features.grid
        batch, channels, height, width = attribution.shape
        cells = attribution.reshape(batch, channels, rows, height // rows, cols, width // cols)
        return over(cells, (1, 3, 5))
    per_pixel = over(attribution, (1,))
    if features.kind == "pixels":
        return per_pixel
    ids = features.ids.to(per_pixel.device).flatten(1)
    flat = per_pixel.flatten(1)
    size = int(ids.max()) + 1
    totals = torch.zeros(flat.shape[0], size, dtype=flat.dtype, device=flat.device).scatter_add_(1, ids, flat)
    if reduce == "mean":
        counts = torch.zeros_like(totals).scatter_add_(1, ids, torch.ones_like(flat))
        totals = totals / counts.clamp(min=1)
    return totals.gather(1, ids).reshape(per_pixel.shape)
