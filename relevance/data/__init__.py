"""Synthetic data with known ground truth (the shapes world)."""

from relevance.data.shapes import (
    COLOURS,
    SHAPE_CLASSES,
    ObjectSpec,
    Scene,
    ShapesDataset,
    caption_for,
    draw_objects,
    looks_like_shapes_scene,
    multi_hot,
    render_scene,
    sample_objects,
)

__all__ = [
    "COLOURS",
    "SHAPE_CLASSES",
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
