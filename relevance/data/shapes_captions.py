"""Captions of shapes-world scenes (:mod:`relevance.data.shapes`) for image-text models: a closed vocabulary,
prompt templates, captions naming some or all of a scene's objects with their colours, and hard negatives that
swap one object's colour or shape for one the scene does not have.

A caption is described by the objects it names, ``[(colour, shape class), ...]``; it *describes* a scene when
every named object is in the scene (:func:`describes`). Everything is drawn from a ``numpy.random.Generator``, so
a seed fixes the captions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from relevance.data.shapes import COLOURS, SHAPE_CLASSES, Scene

__all__ = ["TEMPLATES", "VOCABULARY", "Named", "caption", "describes", "hard_negative", "object_caption",
           "sample_caption", "scene_objects"]

#: Prompt templates; ``{}`` is the list of objects ("a red circle and a blue star").
TEMPLATES: tuple[str, ...] = ("{}", "a photo of {}", "a picture of {}", "an image of {}", "a scene with {}",
                              "there is {}")
#: Every word of every caption, in a fixed order (the shapes CLIP's vocabulary).
VOCABULARY: tuple[str, ...] = ("a", "an", "and", ",", ".", "photo", "picture", "image", "scene", "of", "with",
                               "there", "is", *COLOURS, *SHAPE_CLASSES)

Named = list[tuple[str, int]]  # (colour, shape class) of each object a caption names


def scene_objects(scene: Scene) -> Named:
    """The (colour, shape class) of each object of a scene, in drawing order."""
    return list(zip(scene.colours, scene.labels))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(named: Sequence[tuple[str, int]], template: str = "{}") -> str:
    """'a photo of a red circle, a blue star and an orange ring' for the named objects, in order."""
    if not named:
        raise ValueError("a caption names at least one object")
    parts = [f"{_article(colour)} {colour} {SHAPE_CLASSES[shape]}" for colour, shape in named]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return template.format(listed)


def object_caption(colour: str, shape: int, template: str = "a photo of {}") -> str:
    """The caption of one object, e.g. 'a photo of a red circle'."""
    return caption([(colour, shape)], template)


def describes(named: Sequence[tuple[str, int]], scene_named: Sequence[tuple[str, int]]) -> bool:
    """Whether every object a caption names is in the scene."""
    present = set(scene_named)
    return all(obj in present for obj in named)


def sample_caption(scene: Scene, rng: np.random.Generator, whole: float = 0.5) -> tuple[Named, str]:
    """The objects a caption of the scene names and its template: with probability ``whole`` all the scene's
    objects, else a random non-empty subset, in random order; a random template of :data:`TEMPLATES`."""
    objects = scene_objects(scene)
    if rng.random() < whole or len(objects) == 1:
        count = len(objects)
    else:
        count = int(rng.integers(1, len(objects)))
    chosen = [objects[i] for i in rng.permutation(len(objects))[:count]]
    return chosen, TEMPLATES[int(rng.integers(len(TEMPLATES)))]


def hard_negative(named: Named, scene: Scene, rng: np.random.Generator) -> Named:
    """``named`` with one object's colour or shape swapped, so that the caption is false for the scene (the new
    (colour, shape) pair is not in the scene, nor named twice)."""
    present = set(scene_objects(scene))
    for _ in range(100):
        index = int(rng.integers(len(named)))
        colour, shape = named[index]
        if rng.random() < 0.5:
            colour = str(rng.choice([c for c in COLOURS if c != colour]))
        else:
            shape = int(rng.choice([s for s in range(len(SHAPE_CLASSES)) if s != shape]))
        swapped = list(named)
        swapped[index] = (colour, shape)
        if (colour, shape) not in present and len(set(swapped)) == len(swapped):
            return swapped
    raise RuntimeError("no hard negative found")  # unreachable: 47 other pairs, at most 3 in a scene
