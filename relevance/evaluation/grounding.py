"""Grounding of captions in held-out scenes of the shapes world, for image-text models (e.g. ``shapes-clip``).

For a scene and one of its objects, the caption names that object ("a photo of a red circle"); each method
explains the pair (``relevance.explain(model, image, texts=caption, method=m)``) and its maps are scored:

* image side (:mod:`relevance.evaluation.localisation`, maps upsampled bilinearly to the image, raw values): the
  pointing game (strict, and within half a patch), the share of the positive relevance inside the named object,
  and the specificity against the scene's other objects (scenes with several objects only);
* text side: the share of the positive text relevance that lands on the colour and shape words, among the
  caption's words (word pieces summed; start and end tokens left out). In "a photo of a red circle" two words of
  six carry the match: chance is 1/3.

A ``random`` row scores uniform noise on the model's patch grid and on the words (drawn per sample from ``seed``
and the sample's number). :func:`evaluate_grounding` returns a :class:`GroundingResult` with
:meth:`~GroundingResult.table` (Markdown) and :meth:`~GroundingResult.figure` (scenes x captions x methods); it is
:func:`grounding_rows` (one row per sample, the unit of ``relevance evaluate --model shapes-clip``'s shards) and
:func:`result_from_rows`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from relevance.data.shapes import COLOURS, SHAPE_CLASSES, Scene, render_scene
from relevance.data.shapes_captions import object_caption
from relevance.evaluation.localisation import class_specificity, mass_inside, pointing_game

__all__ = ["RANDOM", "METRICS", "GroundingSample", "GroundingResult", "grounding_samples", "evaluate_grounding",
           "grounding_rows", "method_names", "result_from_rows", "text_share"]

RANDOM = "random"
#: (key, column title): every metric is "higher is better", in percent.
METRICS: tuple[tuple[str, str], ...] = (
    ("pointing", "Pointing"),
    ("pointing_tolerant", "Pointing ±½ patch"),
    ("mass", "Mass in object"),
    ("specificity", "Specificity"),
    ("text_share", "Colour+shape words"),
)
_TARGET_WORDS = frozenset(COLOURS) | frozenset(SHAPE_CLASSES)
#: Short method names for the figure's titles.
_SHORT = {"attention": "attn", "rollout": "rollout", "attention_gradcam": "Grad-CAM", "partial_lrp": "part. LRP",
          "transformer_attribution": "TA", "gradient_rollout": "GAE", "attnlrp": "AttnLRP", "cp_lrp": "CP-LRP",
          "legrad": "LeGrad", "lrp": "LRP", RANDOM: "random"}


@dataclass(frozen=True)
class GroundingSample:
    """One (scene, named object) pair and its caption."""

    scene: Scene
    index: int
    template: str = "a photo of {}"

    @property
    def caption(self) -> str:
        return object_caption(self.scene.colours[self.index], self.scene.labels[self.index], self.template)

    @property
    def target_mask(self) -> np.ndarray:
        return self.scene.masks[self.index]

    @property
    def other_mask(self) -> np.ndarray:
        others = [m for i, m in enumerate(self.scene.masks) if i != self.index]
        return np.any(np.stack(others), 0) if others else np.zeros_like(self.target_mask)


def grounding_samples(samples: int, seed: int, size: int = 64, template: str = "a photo of {}") -> list[GroundingSample]:
    """The first ``samples`` (scene, object) pairs of the scenes with seeds ``seed, seed + 1, ...``: every object of
    each scene in turn, so that scenes with several objects give several captions."""
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    out: list[GroundingSample] = []
    current = seed
    while len(out) < samples:
        scene = render_scene(current, size)
        out.extend(GroundingSample(scene, i, template) for i in range(len(scene.labels)))
        current += 1
    return out[:samples]


def text_share(words: Sequence[tuple[str, float]]) -> float:
    """Share of the positive relevance of a caption's words (``(word, value)``) on colour and shape words; NaN when
    no word has positive relevance."""
    positive = [(word.lower(), max(float(value), 0.0)) for word, value in words]
    total = sum(value for _, value in positive)
    if not total > 0:
        return float("nan")
    return sum(value for word, value in positive if word in _TARGET_WORDS) / total


@dataclass
class GroundingResult:
    """Per method and metric, one value per sample (NaN where undefined), and the maps of the first samples."""

    methods: list[str]
    values: dict[str, dict[str, list[float]]]
    samples: list[GroundingSample]
    seed: int
    start_layers: dict[str, dict[str, int]]
    figure_maps: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    figure_text: dict[str, list[list[tuple[str, float]]]] = field(default_factory=dict, repr=False)

    def summary(self, method: str) -> dict[str, tuple[float, float | None, int]]:
        """metric -> (mean in percent, 95% confidence half-width or None, number of defined samples)."""
        out = {}
        for key, _ in METRICS:
            values = np.asarray(self.values[method].get(key, []), dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                out[key] = (float("nan"), None, 0)
                continue
            half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else None
            out[key] = (100 * float(values.mean()), None if half_width is None else 100 * half_width, int(values.size))
        return out

    def table(self) -> str:
        """Markdown: one row per method (as :func:`relevance.list_methods` names it, then ``random``), one column per
        metric, mean ± 95% confidence interval in percent; the best non-random value per column in bold."""
        summaries = {m: self.summary(m) for m in self.methods}
        best = {}
        for key, _ in METRICS:
            candidates = [(summaries[m][key][0], m) for m in self.methods
                          if m != RANDOM and np.isfinite(summaries[m][key][0])]
            if candidates:
                best[key] = max(candidates)[1]
        rows = ["| Method | " + " | ".join(title for _, title in METRICS) + " |",
                "|---|" + "---|" * len(METRICS)]
        for method in self.methods:
            cells = []
            for key, _ in METRICS:
                mean, half_width, _ = summaries[method][key]
                text = "–" if not np.isfinite(mean) else f"{mean:.1f}" + ("" if half_width is None else
                                                                            f" ± {half_width:.1f}")
                cells.append(f"**{text}**" if best.get(key) == method else text)
            rows.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def figure(self, rows: int | None = None, tile: int = 112) -> np.ndarray:
        """uint8 RGB grid: one row per (scene, caption) of the first samples, the scene with the named object
        outlined, then each method's map on it; titles give the method (TA: transformer attribution, GAE: gradient
        rollout) and the caption's most relevant word."""
        from PIL import Image

        from relevance.render import mask_edge, overlay, side_by_side

        count = min(rows or len(next(iter(self.figure_maps.values()))), len(next(iter(self.figure_maps.values()))))
        tiles, titles = [], []
        for i, sample in enumerate(self.samples[:count]):
            big = np.asarray(Image.fromarray(sample.scene.image).resize((tile, tile), Image.Resampling.NEAREST))
            mask = np.asarray(Image.fromarray(sample.target_mask.astype(np.uint8) * 255).resize(
                (tile, tile), Image.Resampling.NEAREST)) > 0
            outlined = big.copy()
            outlined[mask_edge(mask)] = (255, 255, 255)
            tiles.append(outlined)
            titles.append(sample.caption.replace("a photo of ", ""))
            for method in self.methods:
                values = self.figure_maps[method][i]
                signed = bool((values < 0).any())
                tiles.append(overlay(big, values, colormap="bwr" if signed else "jet", alpha=0.5, signed=signed))
                words = [w for w in self.figure_text[method][i] if np.isfinite(w[1])]
                top = max(words, key=lambda w: w[1])[0] if words else ""
                titles.append(f"{_SHORT.get(method, method)}: {top}")
        return side_by_side(tiles, titles, columns=len(self.methods) + 1, tile_height=tile)


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    maps = maps.detach().double().cpu()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _grid_size(model: Any) -> tuple[int, int]:
    config = getattr(model, "config", None)
    vision = getattr(config, "vision", None)
    return tuple(vision.grid_size) if vision is not None else (8, 8)


def _sample_generator(seed: int, index: int) -> torch.Generator:
    """The ``random`` reference's generator of sample ``index``: the same numbers however the samples are batched or
    sharded."""
    state = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(state)


def _score_batch(model: Any, batch: Sequence[GroundingSample], indices: Sequence[int], names: Sequence[str], seed: int,
                 start_layer: int | None) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, int]],
                                                   dict[str, torch.Tensor], dict[str, list[list[tuple[str, float]]]]]:
    """Every method on one batch of samples (``indices``: their sample numbers): (metric values per method, start
    layers per method, maps (B, H, W) per method, caption words per method)."""
    import relevance

    size = tuple(model.data_config.input_size)
    grid = _grid_size(model)
    tolerance = 0.5 * size[0] / grid[0]
    images = [s.scene.image for s in batch]
    captions = [s.caption for s in batch]
    target = torch.from_numpy(np.stack([s.target_mask for s in batch]))
    other = torch.from_numpy(np.stack([s.other_mask for s in batch]))
    values: dict[str, dict[str, list[float]]] = {}
    start_layers: dict[str, dict[str, int]] = {}
    all_maps: dict[str, torch.Tensor] = {}
    all_texts: dict[str, list[list[tuple[str, float]]]] = {}
    words = None
    for method in names:
        if method == RANDOM:
            generators = [_sample_generator(seed, index) for index in indices]
            maps = _upsample(torch.stack([torch.rand(*grid, generator=g) for g in generators]), size)
            words = words or relevance.explain(model, images, texts=captions, method="attention")
            texts = [[(w, float(torch.rand((), generator=g))) for w, _ in words.maps["text"].words(i)]
                     for i, g in enumerate(generators)]
        else:
            explanation = relevance.explain(model, images, texts=captions, method=method, start_layer=start_layer)
            start_layers[method] = dict(explanation.start_layers)
            maps = _upsample(explanation.image_relevance, size)
            texts = [explanation.maps["text"].words(i) for i in range(len(batch))]
            words = words or explanation
        values[method] = {
            "pointing": pointing_game(maps, target).tolist(),
            "pointing_tolerant": pointing_game(maps, target, tolerance=tolerance).tolist(),
            "mass": mass_inside(maps, target).tolist(),
            "specificity": class_specificity(maps, target, other).tolist(),
            "text_share": [text_share(t) for t in texts],
        }
        all_maps[method], all_texts[method] = maps.float(), texts
    return values, start_layers, all_maps, all_texts


def evaluate_grounding(model: Any, samples: int = 200, seed: int = 2_000_000, methods: Sequence[str] | None = None, *,
                       template: str = "a photo of {}", start_layer: int | None = None, batch_size: int = 32,
                       random_reference: bool = True, figure_rows: int = 8, progress: bool = False) -> GroundingResult:
    """Score each method's grounding of single-object captions on held-out scenes (see the module docstring).

    Parameters
    ----------
    model:
        An image-text model of :mod:`relevance.models.clip` (``relevance.models.create("shapes-clip")``).
    samples:
        Number of (scene, object) pairs, from the scenes with seeds ``seed, seed + 1, ...``.
    methods:
        Method names (default: every method of :func:`relevance.list_methods`), each at its own default start
        layer; ``random`` is added unless ``random_reference`` is false.
    template:
        The caption template; ``{}`` becomes "a red circle".
    start_layer:
        Passed to :func:`relevance.explain` (``None``: each method's own default).

    Returns
    -------
    GroundingResult
    """
    from tqdm import tqdm

    names = method_names(methods, random_reference)
    chosen = grounding_samples(samples, seed, tuple(model.data_config.input_size)[0], template)
    bar = tqdm(total=len(chosen), desc="grounding", disable=not progress, file=sys.stderr)
    rows = grounding_rows(model, range(len(chosen)), seed, names, template=template, start_layer=start_layer,
                          batch_size=batch_size, advance=bar.update, samples=chosen)
    bar.close()
    return result_from_rows(model, rows, names, chosen, seed, start_layer=start_layer, figure_rows=figure_rows)


def method_names(methods: Sequence[str] | None = None, random_reference: bool = True) -> list[str]:
    """Canonical method names (default: every method of :func:`relevance.list_methods`), then ``random`` unless
    ``random_reference`` is false. Raises ValueError for an unknown method."""
    import relevance

    names = list(dict.fromkeys(relevance.get_method(m).name for m in (methods or relevance.list_methods())
                               if m != RANDOM))
    return names + [RANDOM] if random_reference or RANDOM in (methods or ()) else names


def grounding_rows(model: Any, indices: range, seed: int, methods: Sequence[str], *, template: str = "a photo of {}",
                   start_layer: int | None = None, batch_size: int = 32, advance: Any = None,
                   samples: Sequence[GroundingSample] | None = None) -> dict[str, np.ndarray]:
    """The metric values of samples ``indices`` (numbers in :func:`grounding_samples` order) as rows, one per sample:
    ``"<method>.<metric>"`` (float64, NaN where undefined), ``"index"``, ``"scene_seed"`` and ``"object"`` (int64).
    Each sample's values do not depend on the others, so that shards of a run (:mod:`relevance.evaluation.sharding`)
    concatenate to the whole run; ``advance(n)`` reports progress."""
    chosen = list(samples) if samples is not None else grounding_samples(
        indices.stop, seed, tuple(model.data_config.input_size)[0], template)
    rows: dict[str, list[float]] = {f"{m}.{key}": [] for m in methods for key, _ in METRICS}
    for start in range(indices.start, indices.stop, batch_size):
        part = range(start, min(start + batch_size, indices.stop))
        values, _, _, _ = _score_batch(model, [chosen[i] for i in part], list(part), methods, seed, start_layer)
        for method, metrics in values.items():
            for key, column in metrics.items():
                rows[f"{method}.{key}"].extend(column)
        if advance is not None:
            advance(len(part))
    out = {key: np.asarray(column, dtype=np.float64) for key, column in rows.items()}
    out["index"] = np.arange(indices.start, indices.stop, dtype=np.int64)
    out["scene_seed"] = np.asarray([chosen[i].scene.seed for i in indices], dtype=np.int64)
    out["object"] = np.asarray([chosen[i].index for i in indices], dtype=np.int64)
    return out


def result_from_rows(model: Any, rows: dict[str, np.ndarray], methods: Sequence[str],
                     samples: Sequence[GroundingSample], seed: int, *, start_layer: int | None = None,
                     figure_rows: int = 8) -> GroundingResult:
    """A :class:`GroundingResult` from the rows of :func:`grounding_rows` (all samples, in order), with the maps of
    the first ``figure_rows`` samples (explained again, with the start layers each method used)."""
    values = {m: {key: rows[f"{m}.{key}"].tolist() for key, _ in METRICS} for m in methods}
    shown = list(samples[:max(figure_rows, 1)])
    _, start_layers, maps, texts = _score_batch(model, shown, list(range(len(shown))), methods, seed, start_layer)
    return GroundingResult(methods=list(methods), values=values, samples=list(samples), seed=seed,
                           start_layers=start_layers, figure_maps={m: maps[m][:figure_rows] for m in methods},
                           figure_text={m: texts[m][:figure_rows] for m in methods})
