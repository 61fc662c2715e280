"""The shapes world: determinism, masks against the drawn pixels, captions against the objects."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

from relevance.data import (COLOURS, SHAPE_CLASSES, ObjectSpec, ShapesDataset, draw_objects, looks_like_shapes_scene,
                            multi_hot, render_scene)
from relevance.data.shapes import caption_for
from relevance.images import load_image
from relevance.models.embedded import load_config

SEEDS = range(40)
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_classes_and_colours():
    # The class ids are the shipped model's outputs: same names, same order as it was trained with.
    assert SHAPE_CLASSES == ("circle", "square", "triangle", "cross", "star", "ring")
    assert list(SHAPE_CLASSES) == load_config()["class_names"]
    # Eight named colours, saturated so that objects stand out from the greyish backgrounds ...
    assert len(COLOURS) == 8 and len(set(COLOURS.values())) == 8
    for name, rgb in COLOURS.items():
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in rgb), name
        assert max(rgb) - min(rgb) >= 150, f"{name} {rgb} is not saturated enough"
    # ... and far enough apart that the nearest named colour of an object's pixels is its own colour.
    for (a, rgb_a), (b, rgb_b) in itertools.combinations(COLOURS.items(), 2):
        assert np.linalg.norm(np.subtract(rgb_a, rgb_b)) >= 80, f"{a} and {b} are too close"


def test_same_seed_same_bytes_and_different_seeds_differ():
    a, b = render_scene(123), render_scene(123)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert (a.labels, a.colours, a.caption) == (b.labels, b.colours, b.caption)
    images = {render_scene(s).image.tobytes() for s in range(20)}
    assert len(images) == 20


def test_scene_structure():
    counts = set()
    for seed in SEEDS:
        s = render_scene(seed)
        n = len(s.labels)
        counts.add(n)
        assert 1 <= n <= 3
        assert len(set(s.labels)) == n, "classes are distinct within a scene"
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (n, 64, 64) and s.masks.dtype == bool
        assert s.masks.sum((1, 2)).min() >= 20, "every object is visible"
        assert s.masks.sum(0).max() <= 1, "masks are disjoint"
        assert len(s.colours) == n and len(set(s.colours)) == n
    assert counts == {1, 2, 3}
    assert render_scene(3, 96).image.shape == (96, 96, 3)


def _drawn_silhouette(image: np.ndarray, colour: str, bg: float = 128.0) -> np.ndarray:
    """Pixels drawn at least half-way from the flat background towards the object's colour."""
    c = np.array(COLOURS[colour], dtype=np.float64)
    d = c - bg
    t = ((image.astype(np.float64) - bg) @ d) / (d @ d)
    return t >= 0.47  # coverage is a multiple of 1/16; rounding moves t by < 0.01


def test_masks_match_the_drawn_pixels_object_by_object():
    flat = np.full((64, 64, 3), 128.0, dtype=np.float32)
    for seed in SEEDS:
        scene = render_scene(seed, background="flat")
        image, masks, alphas = draw_objects(flat, scene.objects)
        assert np.array_equal(image, scene.image) and np.array_equal(masks, scene.masks)
        silhouettes = []
        for i, obj in enumerate(scene.objects):
            alone, alone_mask, _ = draw_objects(flat, [obj])
            drawn = _drawn_silhouette(alone, obj.colour)
            assert np.array_equal(alone_mask[0], drawn), f"seed {seed}: mask of a lone {obj.name} != drawn pixels"
            silhouettes.append(drawn)
        for i in range(len(scene.objects)):
            later = np.zeros_like(silhouettes[i])
            for j in range(i + 1, len(scene.objects)):
                later |= silhouettes[j]
            visible = silhouettes[i] & ~later
            # the visible mask lies inside the drawn silhouette minus what later objects cover ...
            assert not np.any(scene.masks[i] & ~visible)
            # ... and differs from it at most on antialiased edge pixels
            assert (visible & ~scene.masks[i]).sum() <= 0.1 * visible.sum() + 2
        outside = ~np.any(np.stack(silhouettes), 0) & (alphas.max(0) == 0)
        assert np.all(scene.image[outside] == 128), "background untouched outside the objects"


def test_mask_interiors_have_the_objects_colour_on_textured_backgrounds():
    for seed in SEEDS:
        scene = render_scene(seed)
        for mask, colour in zip(scene.masks, scene.colours):
            inner = binary_erosion(mask, iterations=1)
            assert inner.any()
            exact = np.all(scene.image[inner] == np.array(COLOURS[colour]), axis=1)
            # interior pixels are the pure colour, except on thin parts (star tips) that are antialiased
            assert exact.mean() >= 0.9, f"seed {seed}, {colour}: {exact.mean():.2f}"


def test_captions_name_the_objects_with_their_colours():
    pattern = re.compile(r"an? (\w+) (\w+)")
    for seed in SEEDS:
        scene = render_scene(seed)
        pairs = pattern.findall(scene.caption)
        assert pairs == list(zip(scene.colours, scene.names)), scene.caption
        for mask, colour in zip(scene.masks, scene.colours):  # the named colour is the one drawn
            mean = scene.image[mask].astype(float).mean(0)
            nearest = min(COLOURS, key=lambda c: np.linalg.norm(np.array(COLOURS[c]) - mean))
            assert nearest == colour
    assert caption_for(["red", "blue"], [0, 4]) == "a red circle and a blue star"
    assert caption_for(["orange", "red", "cyan"], [5, 1, 2]) == "an orange ring, a red square and a cyan triangle"
    assert caption_for(["green"], [3]) == "a green cross"


def test_mask_for_and_multi_hot():
    scene = render_scene(11)
    for label, mask in zip(scene.labels, scene.masks):
        assert scene.mask_for(label) is mask or np.array_equal(scene.mask_for(label), mask)
    absent = next(c for c in range(len(SHAPE_CLASSES)) if c not in scene.labels)
    with pytest.raises(ValueError):
        scene.mask_for(absent)
    assert multi_hot([0, 5]).tolist() == [1, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        multi_hot([6])


def test_bad_arguments_raise():
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(ValueError):
            render_scene(seed)
    with pytest.raises(ValueError):
        render_scene(0, size=8)
    with pytest.raises(ValueError):
        render_scene(0, background="plaid")
    with pytest.raises(ValueError):
        render_scene(0, n_objects=4)
    with pytest.raises(ValueError):
        draw_objects(np.zeros((4, 5, 3)), [ObjectSpec(0, "red", 2, 2, 1, 0)])


def test_dataset_items():
    ds = ShapesDataset(5, seed_offset=100, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert len(ds) == 5
    x, y = ds[2]
    scene = render_scene(102)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    expected = torch.from_numpy(scene.image.transpose(2, 0, 1).astype(np.float32) / 255.0 * 2 - 1)
    assert torch.allclose(x, expected, atol=1e-6)
    assert y.tolist() == multi_hot(scene.labels).tolist()
    other = ShapesDataset(5, seed_offset=200)
    assert not torch.equal(other[2][0], x)
    with pytest.raises(IndexError):
        ds.scene(5)
    with pytest.raises(ValueError):
        ShapesDataset(0)


# --------------------------------------------------------------------------- domain check


def _jpeg(image: np.ndarray, quality: int = 85) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_rendered_scenes_look_like_shapes_scenes():
    for seed in range(300):
        assert looks_like_shapes_scene(render_scene(10_000_000 + seed).image), f"seed {10_000_000 + seed}"
    for seed in range(40):  # other sizes, the flat background, JPEG copies
        assert looks_like_shapes_scene(render_scene(seed, 32).image), seed
        assert looks_like_shapes_scene(render_scene(seed, 224).image), seed
        assert looks_like_shapes_scene(render_scene(seed, background="flat").image), seed
        assert looks_like_shapes_scene(_jpeg(render_scene(seed).image, quality=75)), seed
    for example in sorted((ASSETS / "examples").glob("*.png")):  # the demo's examples, as files
        assert looks_like_shapes_scene(load_image(example)), example.name


def test_photos_and_other_images_do_not():
    photos = sorted((ASSETS / "samples").glob("*.jpg"))
    assert len(photos) == 4
    for photo in photos:
        image = load_image(photo)
        assert not looks_like_shapes_scene(image), photo.name
        assert not looks_like_shapes_scene(image[: image.shape[0] // 2, : image.shape[1] // 2]), photo.name
    rng = np.random.default_rng(0)
    assert not looks_like_shapes_scene(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # noise
    assert not looks_like_shapes_scene(np.full((40, 70, 3), 128, np.uint8))  # blank grey: no object
    assert not looks_like_shapes_scene(np.full((64, 64, 3), 200, np.uint8))  # a blank light image
    everything_red = np.zeros((64, 64, 3), np.uint8) + np.array(COLOURS["red"], np.uint8)
    assert not looks_like_shapes_scene(everything_red)  # a named colour but no greyish background
    with pytest.raises(ValueError):
        looks_like_shapes_scene(np.zeros((8, 8), np.uint8))
