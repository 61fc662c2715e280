"""Regenerate the demo's bundled shapes examples (``assets/examples/*.png``).

The examples are held-out scenes of the shapes world (seeds far from the training and
evaluation ranges), rendered at 128 px so they are small to ship and large enough to see the
overlay; the embedded model resizes them to its 64 px input. Run::

    .venv/bin/python -m demos.app_examples
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from PIL import Image

from relevance.data.shapes import Scene, render_scene

__all__ = ["EXAMPLE_SEEDS", "EXAMPLE_SIZE", "EXAMPLES_DIR", "example_filename", "write_examples"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
#: Scenes that together show every shape class, with one, two and three objects.
EXAMPLE_SEEDS: tuple[int, ...] = (20_000_004, 20_000_001, 20_000_014, 20_000_002, 20_000_011)
EXAMPLE_SIZE = 128


def example_filename(scene: Scene) -> str:
    """'scene-20000004_green-square_magenta-triangle_red-circle.png'."""
    objects = "_".join(f"{colour}-{name}" for colour, name in zip(scene.colours, scene.names))
    return f"scene-{scene.seed}_{objects}.png"


def write_examples(
    directory: str | Path = EXAMPLES_DIR, seeds: Sequence[int] = EXAMPLE_SEEDS, size: int = EXAMPLE_SIZE
) -> list[Path]:
    """Render ``seeds`` at ``size`` px into ``directory`` as PNG; returns the written paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        scene = render_scene(seed, size)
        path = directory / example_filename(scene)
        Image.fromarray(scene.image).save(path, format="PNG", optimize=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR, help="output folder")
    args = parser.parse_args(argv)
    for path in write_examples(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
