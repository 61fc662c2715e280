"""Tiny datasets in the real on-disk formats, made from shapes scenes so that the embedded model can read them.

* :func:`write_imagenet_val`: ``<root>/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG`` (the layout of
  ``torchvision.datasets.ImageNet`` after its preparation), one-object scenes of assorted sizes, the folder of
  the object's class (wnids sort in class order, so labels are shape classes).
* :func:`write_gtsegs`: ImageNet-Segmentation's ``gtsegs_ijcv.mat`` (MATLAB v7.3 = HDF5 with object references,
  images (3, W, H) uint8, masks behind 1x1 cells), scenes of assorted sizes, the objects' union as foreground.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from relevance.data import SHAPE_CLASSES, render_scene

#: One wnid per shape class, in class order (the reader sorts folder names).
WNIDS = [f"n{index:08d}" for index in range(len(SHAPE_CLASSES))]
#: Original sizes (height, width) the fixtures cycle through: the protocols squash-resize them.
SIZES = [(80, 96), (64, 64), (100, 70), (72, 88)]


def write_imagenet_val(root: Path, count: int, seed: int = 30_000_000,
                       mislabelled: tuple[int, ...] = ()) -> list[tuple[Path, int]]:
    """``count`` one-object scenes as an ImageNet val folder; returns (path, label) in the reader's order. The
    scenes numbered in ``mislabelled`` go to the folder of the next class, so that their label is not what the
    model sees (their target-class maps differ from their predicted-class maps)."""
    items = []
    for wnid in WNIDS:  # every class has its folder, as in the real layout (labels are sorted folder positions)
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scene = render_scene(seed + i, 64, n_objects=1)
        label = (scene.labels[0] + (1 if i in mislabelled else 0)) % len(SHAPE_CLASSES)
        height, width = SIZES[i % len(SIZES)]
        folder = root / "val" / WNIDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ILSVRC2012_val_{seed + i:08d}.JPEG"
        Image.fromarray(scene.image).resize((width, height), Image.Resampling.BICUBIC).save(path, quality=95)
        items.append((path, label))
    return sorted(items, key=lambda item: (item[0].parent.name, item[0].name))


def write_gtsegs(path: Path, count: int, seed: int = 31_000_000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` scenes as ``gtsegs_ijcv.mat``; returns the stored images (H, W, 3) and masks (H, W) in order."""
    images, masks = [], []
    for i in range(count):
        scene = render_scene(seed + i, 64)
        height, width = SIZES[i % len(SIZES)]
        images.append(np.asarray(Image.fromarray(scene.image).resize((width, height), Image.Resampling.BICUBIC)))
        union = scene.masks.any(0).astype(np.uint8)
        masks.append(np.asarray(Image.fromarray(union).resize((width, height), Image.Resampling.NEAREST)))
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        value = f.create_group("value")
        image_refs, mask_refs = [], []
        for i, (image, mask) in enumerate(zip(images, masks)):
            stored = refs.create_dataset(f"img{i}", data=image.transpose(2, 1, 0))  # MATLAB column-major (3, W, H)
            truth = refs.create_dataset(f"gt{i}", data=mask.transpose(1, 0))
            cell = refs.create_dataset(f"cell{i}", shape=(1, 1), dtype=h5py.ref_dtype)
            cell[0, 0] = truth.ref
            image_refs.append(stored.ref)
            mask_refs.append(cell.ref)
        value.create_dataset("img", data=np.array(image_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        value.create_dataset("gt", data=np.array(mask_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        value.create_dataset("target", data=np.arange(count, dtype=np.float64).reshape(-1, 1))
    return images, masks
