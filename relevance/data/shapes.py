"""A procedural "shapes world" whose ground truth is known.

Each scene holds one to three objects of distinct shape classes (:data:`SHAPE_CLASSES`),
each in a named colour, random size, position and rotation, drawn over a textured or
noisy background with clutter (thin lines, small dots, speckles) that belongs to no class.
Everything is deterministic from one integer seed (``numpy.random.Generator(seed)``) and
rendered on the fly with PIL; nothing is stored on disk.

For every object the scene returns the mask of its *visible* part (after occlusion by
objects drawn later), which is the ground truth for the localisation metrics of
:mod:`relevance.evaluation.localisation`, and a caption naming the objects with their
colours ("a red circle and a blue star").

Rendering uses supersampling: every object is drawn as a binary silhouette at
``SUPERSAMPLE`` times the output size and box-filtered down, which gives its coverage
``alpha`` in [0, 1] per output pixel. The objects are alpha-composited in order; the weight
of object ``i`` in a pixel is ``alpha_i * prod_{j drawn later} (1 - alpha_j)``, and the mask
of object ``i`` is where that weight is at least 0.5 (so masks are disjoint and each masked
pixel is at least half the object's colour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

__all__ = [
    "SHAPE_CLASSES",
    "COLOURS",
    "ObjectSpec",
    "Scene",
    "ShapesDataset",
    "caption_for",
    "draw_objects",
    "looks_like_shapes_scene",
    "multi_hot",
    "render_scene",
    "sample_objects",
]

#: Shape classes; the index in this tuple is the class id.
SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")

#: Named object colours (saturated, so that they stand out from the greyish backgrounds).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 185, 50),
    "blue": (40, 70, 235),
    "yellow": (240, 220, 30),
    "orange": (250, 135, 20),
    "purple": (145, 45, 205),
    "cyan": (30, 210, 220),
    "magenta": (230, 40, 180),
}

#: Supersampling factor of the antialiased renderer.
SUPERSAMPLE = 4
_MIN_SIZE, _MAX_SIZE = 32, 512
_MAX_OBJECTS = 3
_MIN_VISIBLE = 0.6  # an object keeps at least this share of its silhouette visible
_RADIUS = (0.15, 0.25)  # circumradius as a fraction of the image side


@dataclass(frozen=True)
class ObjectSpec:
    """Geometry and colour of one object, in output-pixel units.

    ``radius`` is the radius of the circumscribed circle (the square's half diagonal,
    the star's outer points); ``angle`` is the rotation in radians.
    """

    shape: int
    colour: str
    cx: float
    cy: float
    radius: float
    angle: float

    @property
    def name(self) -> str:
        return SHAPE_CLASSES[self.shape]


@dataclass
class Scene:
    """One rendered scene.

    Attributes
    ----------
    image:
        Uint8 array (H, W, 3).
    labels:
        Class id of each object, in drawing order (distinct within a scene).
    masks:
        Bool array (n_objects, H, W), the visible part of each object, disjoint.
    colours:
        Colour name of each object.
    caption:
        "a red circle and a blue star" (objects in drawing order).
    seed:
        The seed the scene was rendered from.
    objects:
        The geometry of each object.
    """

    image: np.ndarray
    labels: list[int]
    masks: np.ndarray
    colours: list[str]
    caption: str
    seed: int
    objects: list[ObjectSpec] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The class names of the objects, in drawing order."""
        return [SHAPE_CLASSES[c] for c in self.labels]

    def mask_for(self, label: int) -> np.ndarray:
        """The visible mask (H, W) of the object of class ``label``; ValueError if absent."""
        if label not in self.labels:
            raise ValueError(f"class {label} is not in this scene (labels {self.labels})")
        return self.masks[self.labels.index(label)]


def multi_hot(labels: Sequence[int], num_classes: int = len(SHAPE_CLASSES)) -> np.ndarray:
    """Multi-hot float32 vector (num_classes,) with ones at ``labels``."""
    out = np.zeros(num_classes, dtype=np.float32)
    for c in labels:
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"label {c} outside 0..{num_classes - 1}")
        out[int(c)] = 1.0
    return out


def caption_for(colours: Sequence[str], labels: Sequence[int]) -> str:
    """Caption naming each object with its colour: 'a red circle, a blue star and an orange ring'."""
    if len(colours) != len(labels) or not labels:
        raise ValueError("caption_for needs one colour per label and at least one object")
    parts = []
    for colour, label in zip(colours, labels):
        article = "an" if colour[0] in "aeiou" else "a"
        parts.append(f"{article} {colour} {SHAPE_CLASSES[label]}")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------- geometry


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (k, 2) of a shape inscribed in the unit circle, before rotation."""
    if shape == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        a, w = 0.95, 0.32  # arm half-length and half-width, scaled so corners fit the circle
        pts = [(w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a),
               (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w), (-w, -a)]
        return np.array(pts, dtype=np.float64)
    raise ValueError(f"no polygon for shape {shape!r}")


def _silhouette(obj: ObjectSpec, size: int) -> np.ndarray:
    """Coverage alpha (size, size) float32 in [0, 1] of one object (supersampled)."""
    s = SUPERSAMPLE
    big = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(big)
    cx, cy, r = obj.cx * s, obj.cy * s, obj.radius * s
    name = obj.name
    if name in ("circle", "ring"):
        rr = r * 0.85 if name == "circle" else r
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=255)
        if name == "ring":
            ri = r * 0.55
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    else:
        pts = _rotate(_unit_polygon(name), obj.angle) * r + np.array([cx, cy])
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A greyish textured/noisy background, float32 (size, size, 3) in [0, 255]."""
    base = rng.uniform(55, 175)
    tint = rng.normal(0, 10, size=3)  # low saturation
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # smooth blotches: bicubic upsampled random grid
        g = int(rng.integers(3, 7))
        grid = rng.uniform(-1, 1, size=(g, g)).astype(np.float32)
        img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        tex = np.asarray(img) * rng.uniform(15, 35)
    elif kind == 1:  # stripes
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(3, 8)
        tex = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy)) * rng.uniform(8, 20)
    else:  # linear gradient
        theta = rng.uniform(0, 2 * np.pi)
        tex = ((np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5))) * rng.uniform(30, 70)
    noise = rng.normal(0, rng.uniform(3, 12), size=(size, size, 3))
    img = base + tint[None, None, :] + tex[..., None] + noise
    return np.clip(img, 0, 255).astype(np.float32)


def _clutter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Draw clutter that is no shape class: thin lines, short polylines, tiny dots."""
    size = img.shape[0]
    s = SUPERSAMPLE
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize(
        (size * s, size * s), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(canvas)
    palette = list(COLOURS.values()) + [(235, 235, 235), (20, 20, 20)]

    def colour() -> tuple[int, int, int]:
        c = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float64)
        # clutter is muted: halfway to the local grey, so it never looks like an object
        return tuple(int(v) for v in 0.5 * c + 0.5 * 128)

    width = max(1, int(round(0.9 * s * size / 64)))
    for _ in range(int(rng.integers(1, 5))):  # lines and polylines
        n = int(rng.integers(2, 4))
        pts = rng.uniform(0, size * s, size=(n, 2))
        draw.line([tuple(p) for p in pts.tolist()], fill=colour(), width=width)
    for _ in range(int(rng.integers(2, 10))):  # tiny dots
        x, y = rng.uniform(0, size * s, size=2)
        r = rng.uniform(0.6, 1.6) * s * size / 64
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour())
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


# --------------------------------------------------------------------------- scenes


def sample_objects(rng: np.random.Generator, size: int, n_objects: int | None = None) -> list[ObjectSpec]:
    """Sample 1..3 objects of distinct classes and colours with limited overlap."""
    n = int(rng.integers(1, _MAX_OBJECTS + 1)) if n_objects is None else int(n_objects)
    if not 1 <= n <= min(_MAX_OBJECTS, len(SHAPE_CLASSES)):
        raise ValueError(f"n_objects must be in 1..{_MAX_OBJECTS}, got {n}")
    classes = rng.choice(len(SHAPE_CLASSES), size=n, replace=False)
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    objs: list[ObjectSpec] = []
    for cls, colour in zip(classes.tolist(), colours.tolist()):
        for _attempt in range(100):
            r = rng.uniform(*_RADIUS) * size
            cx, cy = rng.uniform(r * 0.8, size - r * 0.8, size=2)
            # centres far enough apart that most of each object stays visible
            if all(math.hypot(cx - o.cx, cy - o.cy) > 0.9 * (r + o.radius) for o in objs):
                break
        objs.append(ObjectSpec(int(cls), str(colour), float(cx), float(cy), float(r), float(rng.uniform(0, 2 * np.pi))))
    return objs


def draw_objects(
    background: np.ndarray, objects: Sequence[ObjectSpec]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Composite objects over a background.

    Parameters
    ----------
    background:
        Float or uint8 (S, S, 3).
    objects:
        Drawn in this order (later ones occlude earlier ones).

    Returns
    -------
    tuple[np.ndarray, np.ndarray, np.ndarray]
        image uint8 (S, S, 3), masks bool (n, S, S) of the visible parts, and
        alphas float32 (n, S, S), each object's own coverage before occlusion.
    """
    bg = np.asarray(background, dtype=np.float32)
    if bg.ndim != 3 or bg.shape[2] != 3 or bg.shape[0] != bg.shape[1]:
        raise ValueError(f"background must be (S, S, 3), got {bg.shape}")
    size = bg.shape[0]
    img = bg.copy()
    n = len(objects)
    alphas = np.zeros((n, size, size), dtype=np.float32)
    weights = np.zeros((n, size, size), dtype=np.float32)
    for i, obj in enumerate(objects):
        a = _silhouette(obj, size)
        alphas[i] = a
        weights[:i] *= 1.0 - a
        weights[i] = a
        img = img * (1.0 - a[..., None]) + np.array(COLOURS[obj.colour], np.float32) * a[..., None]
    masks = weights >= 0.5
    for i in range(n - 1, 0, -1):  # ties (two weights of exactly 0.5): the later object wins
        masks[:i] &= ~masks[i]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks, alphas


def render_scene(
    seed: int,
    size: int = 64,
    *,
    n_objects: int | None = None,
    background: str = "textured",
    clutter: bool = True,
) -> Scene:
    """Render the scene of ``seed``; the same arguments always give identical bytes.

    Parameters
    ----------
    seed:
        Non-negative integer; seeds the ``numpy.random.Generator``.
    size:
        Side of the square image in pixels (32..512; the embedded model uses 64).
    n_objects:
        Force 1..3 objects (default: uniform in 1..3).
    background:
        "textured" (noise, blotches, stripes or gradient) or "flat" (uniform
        grey, for tests that need to see each object's drawn pixels).
    clutter:
        Draw non-object clutter (lines, dots). Ignored for "flat".
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not _MIN_SIZE <= int(size) <= _MAX_SIZE:
        raise ValueError(f"size must be in {_MIN_SIZE}..{_MAX_SIZE}, got {size}")
    if background not in ("textured", "flat"):
        raise ValueError(f"background must be 'textured' or 'flat', got {background!r}")
    size = int(size)
    rng = np.random.default_rng(int(seed))
    objects = sample_objects(rng, size, n_objects)
    if background == "flat":
        bg = np.full((size, size, 3), 128.0, dtype=np.float32)
    else:
        bg = _background(rng, size)
        if clutter:
            bg = _clutter(rng, bg)
    image, masks, alphas = draw_objects(bg, objects)
    visible = masks.sum((1, 2)) / np.maximum((alphas >= 0.5).sum((1, 2)), 1)
    if np.any(visible < _MIN_VISIBLE):
        # too much occlusion: drop the occluded objects rather than resample (keeps determinism simple)
        keep = [i for i in range(len(objects)) if visible[i] >= _MIN_VISIBLE]
        objects = [objects[i] for i in keep]
        image, masks, _ = draw_objects(bg, objects)
    labels = [o.shape for o in objects]
    colours = [o.colour for o in objects]
    return Scene(
        image=image,
        labels=labels,
        masks=masks,
        colours=colours,
        caption=caption_for(colours, labels),
        seed=int(seed),
        objects=list(objects),
    )


# --------------------------------------------------------------------------- torch dataset


class ShapesDataset(Dataset):
    """A torch ``Dataset`` of scenes ``seed_offset + index``, rendered on the fly.

    Items are ``(pixels, target)``: pixels float32 (3, S, S) normalised with ``mean``/``std``
    (from [0, 1]), target the float32 multi-hot vector (num_classes,). Training and held-out
    splits differ by ``seed_offset`` (the training script uses 0; evaluation defaults to
    10_000_000).
    """

    def __init__(
        self,
        length: int,
        *,
        seed_offset: int = 0,
        size: int = 64,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        cache: bool = False,
    ) -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if seed_offset < 0:
            raise ValueError(f"seed_offset must be non-negative, got {seed_offset}")
        self.length = int(length)
        self.seed_offset = int(seed_offset)
        self.size = int(size)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        """The full :class:`Scene` behind item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        return render_scene(self.seed_offset + index, self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            img, target = self._cache[index]
        else:
            scene = self.scene(index)
            img, target = scene.image, multi_hot(scene.labels)
            if self._cache is not None:
                self._cache[index] = (img, target)
        x = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x), torch.from_numpy(target.copy())


# --------------------------------------------------------------------------- domain check

#: Side of the square the domain check resamples every image to (the embedded model's input size).
_CHECK_SIZE = 64
#: A pixel within this RGB distance of a named colour counts as object colour.
_NEAR_COLOUR = 30.0
#: Saturation (max - min over RGB) from which a pixel counts as strongly coloured ...
_STRONG_SATURATION = 100.0
#: ... and, after a 3x3 blur that averages the background noise out, below which it counts as greyish
#: (the background's tint may reach a saturation of about 50).
_GREYISH_SATURATION = 75.0


def looks_like_shapes_scene(image: np.ndarray) -> bool:
    """Whether ``image`` (uint8 RGB (H, W, 3)) looks like a scene of the shapes world, by three of its traits.

    A scene is flat-coloured objects (the :data:`COLOURS`, exactly, inside each object) over a greyish
    background (plain, or textured with grey noise, blotches, stripes or a gradient, and muted clutter). After
    resampling the image to 64 x 64 (box filter), it looks like one when

    1. at least 0.5% of its pixels lie within RGB distance 30 of a named colour (the objects' insides; the
       smallest object of a scene covers about 3% of it, a JPEG copy still keeps over 1%),
    2. at least 30% of its strongly saturated pixels (max - min >= 100) are such object pixels (in a scene,
       over 70%, the rest being antialiased edges; over 38% in a JPEG copy; in a photo, about none: its
       saturated colours are anything but these eight, exactly), and
    3. at least 30% of it is greyish (saturation below 75) once a 3x3 blur has averaged the noise out (the
       background: over 60% of a scene).

    Rendered scenes of any size pass, also as JPEG copies (quality 75 and up); photographs, noise, blank and
    single-colour images do not. A heuristic for a warning, not a classifier: it says nothing about the objects.
    """
    import cv2

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be a uint8 (H, W, 3) RGB array, got {array.dtype} {tuple(array.shape)}")
    resampled = Image.fromarray(array).resize((_CHECK_SIZE, _CHECK_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(resampled, dtype=np.float32)
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    distance = np.sqrt(((pixels[:, :, None, :] - palette) ** 2).sum(-1)).min(-1)
    object_colour = distance < _NEAR_COLOUR
    saturation = pixels.max(-1) - pixels.min(-1)
    strong = saturation >= _STRONG_SATURATION
    blurred = cv2.blur(pixels, (3, 3), borderType=cv2.BORDER_REPLICATE)
    greyish = (blurred.max(-1) - blurred.min(-1)) < _GREYISH_SATURATION
    return bool(
        object_colour.mean() >= 0.005
        and (object_colour & strong).sum() >= 0.3 * strong.sum()
        and greyish.mean() >= 0.3
    )
