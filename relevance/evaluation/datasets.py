"""Readers for the datasets of the CVPR 2021 evaluation (spec §5.2, §5.3), from paths on disk.

Nothing is downloaded. Both readers apply the papers' preprocessing: a **squash** resize to
``size x size`` (no crop; bilinear for images, nearest for masks) and ``ToTensor`` scaling to
[0, 1]; normalisation is left to the caller (the perturbation test removes pixels *before* it).

* ImageNet validation in the folder layout of ``torchvision.datasets.ImageNet`` after its
  preparation: ``<root>/val/<wnid>/*.JPEG`` (``<root>`` may also be the ``val`` folder itself).
  Class indices are the positions of the wnids in sorted order (the standard ImageNet-1k order
  when all 1000 folders are present), or in the ``wnids`` list you pass.
* ImageNet-Segmentation (Guillaumin et al. 2014) ``gtsegs_ijcv.mat``, a MATLAB v7.3 (HDF5) file
  with ``value/img`` (N, 1) references to uint8 images stored as (3, W, H), and ``value/gt`` (N, 1)
  references to 1x1 cells that reference the (W, H) binary masks, read as the reference's
  ``data/Imagenet.py`` does. Needs ``h5py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

__all__ = [
    "ImageNetVal",
    "ImageNetSegmentation",
    "imagenet_val_batches",
    "segmentation_batches",
    "to_tensor01",
]

_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def to_tensor01(image: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """Squash-resize an RGB image to (size, size) bilinearly and scale to [0, 1]: (3, size, size) float32."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


@dataclass(frozen=True)
class _Item:
    path: Path
    label: int


class ImageNetVal(torch.utils.data.Dataset):
    """ImageNet validation images as ``(image01 (3, size, size), label)``.

    Parameters
    ----------
    root:
        The dataset root containing ``val/`` or the ``val`` folder itself.
    size:
        Side of the squash resize (224 for ViT-B/16).
    wnids:
        Optional class order (e.g. the 1000 ImageNet wnids); default: sorted folder names.
    limit:
        Keep only the first ``limit`` images (in sorted path order).
    """

    def __init__(self, root: str | Path, size: int = 224, *, wnids: Sequence[str] | None = None, limit: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageNet root not found or not a folder: {root}")
        folder = root / "val" if (root / "val").is_dir() else root
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if not class_dirs:
            raise FileNotFoundError(f"no class folders (<wnid>/*.JPEG) under {folder}")
        order = list(wnids) if wnids is not None else [p.name for p in class_dirs]
        index = {w: i for i, w in enumerate(order)}
        items: list[_Item] = []
        for d in class_dirs:
            if d.name not in index:
                raise ValueError(f"folder {d.name!r} is not in the given wnids list")
            for f in sorted(d.iterdir()):
                if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES:
                    items.append(_Item(f, index[d.name]))
        if not items:
            raise FileNotFoundError(f"no images (*.JPEG/*.jpg/*.png) under {folder}")
        self.items = items[:limit] if limit is not None else items
        self.size = int(size)
        self.wnids = order

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        with Image.open(item.path) as img:
            return to_tensor01(img, self.size), item.label


class ImageNetSegmentation(torch.utils.data.Dataset):
    """ImageNet-Segmentation ``gtsegs_ijcv.mat`` as ``(image01 (3, size, size), mask (size, size) bool)``.

    The file is opened lazily (and per worker); call :meth:`close` or use it as a context manager.
    """

    def __init__(self, path: str | Path, size: int = 224, *, limit: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet-Segmentation file not found: {path}")
        try:
            import h5py
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("reading gtsegs_ijcv.mat needs h5py: pip install h5py") from exc
        self.path = path
        self.size = int(size)
        self._file = None
        with h5py.File(path, "r") as f:
            if "value/img" not in f or "value/gt" not in f:
                raise ValueError(f"{path} is not ImageNet-Segmentation's gtsegs_ijcv.mat (no value/img, value/gt)")
            n = int(f["value/img"].shape[0])
            if int(f["value/gt"].shape[0]) != n:
                raise ValueError(f"{path}: value/img and value/gt differ in length")
        self.length = min(n, limit) if limit is not None else n

    def _h5(self):
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ImageNetSegmentation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The original image uint8 (H, W, 3) and mask (H, W) at their stored resolution."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        f = self._h5()
        img = np.asarray(f[f["value/img"][index, 0]]).transpose(2, 1, 0)
        cell = f[f["value/gt"][index, 0]]
        gt = np.asarray(f[cell[0, 0]]).transpose(1, 0)
        return np.ascontiguousarray(img.astype(np.uint8)), np.ascontiguousarray(gt)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, gt = self.raw(index)
        mask = Image.fromarray(gt.astype(np.uint8)).resize((self.size, self.size), Image.Resampling.NEAREST)
        return to_tensor01(img, self.size), torch.from_numpy(np.asarray(mask) > 0)

    def __getstate__(self):  # h5py handles do not pickle; reopen in each worker
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def _batches(dataset: torch.utils.data.Dataset, batch_size: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for i in range(start, len(dataset), batch_size):
        xs, ys = zip(*(dataset[j] for j in range(i, min(i + batch_size, len(dataset)))))
        yield torch.stack(xs), torch.stack([torch.as_tensor(y) for y in ys])


def imagenet_val_batches(
    root: str | Path, batch_size: int = 16, size: int = 224, *, limit: int | None = None, wnids: Sequence[str] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images01 (B, 3, size, size), labels (B,))`` for :func:`perturbation_test`."""
    return _batches(ImageNetVal(root, size, wnids=wnids, limit=limit), batch_size)


def segmentation_batches(
    path: str | Path, batch_size: int = 16, size: int = 224, *, limit: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images01 (B, 3, size, size), masks (B, size, size) bool)`` for :func:`segmentation_test`."""
    dataset = ImageNetSegmentation(path, size, limit=limit)  # fails now, not at the first batch

    def generate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            yield from _batches(dataset, batch_size)
        finally:
            dataset.close()

    return generate()
