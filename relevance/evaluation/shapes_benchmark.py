"""Compare explanation methods on held-out scenes of the shapes world, where the truth is known.

For every scene and every object class present in it, each method explains that class
(``relevance.explain(model, pixels, method=m, target=t)``); the map is scored with

* localisation against the explained object's visible mask (``relevance.evaluation.localisation``):
  pointing game (strict, and with a tolerance of half a patch), share of the positive relevance mass inside the object, class specificity (mass on
  the explained object against the other objects; scenes with several objects only). Mass measures
  use the raw relevance upsampled bilinearly to the input and clamped at 0;
* the segmentation protocol of spec §5.2 with the explained object as foreground (per-map min-max,
  mean threshold; pixel accuracy and mIoU accumulated over all maps; mAP the mean per-map 2-class AP);
* the perturbation tests of spec §5.3 (positive and negative, steps 0..0.9, removed pixels set to 0
  before normalisation) for the explained class, a hit being "the class is still predicted"
  (logit > 0). AUC = 100 x trapz.

A "random" reference row (uniform noise on the patch grid, upsampled) shows what chance scores. Next to the scores,
each method's time per explanation (wall clock of its ``explain`` calls, batched, divided by the explained objects):
the gradient and perturbation methods (captum) run with their default options unless ``method_options`` says.
Times are measurements of one run on one machine, not results: they are kept apart from the scores.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from relevance.data.shapes import SHAPE_CLASSES, Scene, render_scene
from relevance.evaluation.localisation import class_specificity, mass_inside, pointing_game
from relevance.evaluation.paper_numbers import PAPER_START_LAYER  # 1 for TA and rollout, 0 for gradient rollout
from relevance.evaluation.perturbation import (
    STEPS,
    make_normalize,
    multilabel_present,
    perturbation_auc,
    perturbation_hits,
)
from relevance.evaluation.segmentation import SegmentationAccumulator, segmentation_statistics

RANDOM = "random"


#: Short column titles for the figure.
SHORT_NAMES = {
    "attention": "raw attention",
    "rollout": "rollout",
    "attention_gradcam": "attn Grad-CAM",
    "lrp": "full LRP",
    "partial_lrp": "partial LRP",
    "transformer_attribution": "transformer attr.",
    "gradient_rollout": "grad. rollout",
    "attnlrp": "AttnLRP",
    "cp_lrp": "CP-LRP",
    "legrad": "LeGrad",
    "saliency": "saliency",
    "input_x_gradient": "input x grad.",
    "integrated_gradients": "integrated grad.",
    "smoothgrad": "SmoothGrad",
    "occlusion": "occlusion",
    "lime": "LIME",
    "kernel_shap": "Kernel SHAP",
    RANDOM: "random",
}

#: The cost column: (key, title), shown after the metrics; milliseconds per explained object.
TIME_COLUMN = ("ms_per_explanation", "ms / explanation")

#: (key, column title, higher is better, has a per-sample confidence interval)
METRICS: tuple[tuple[str, str, bool, bool], ...] = (
    ("pointing", "Pointing game ↑", True, True),
    ("pointing_tolerant", "Pointing ±½ patch ↑", True, True),
    ("mass", "Mass in object ↑", True, True),
    ("specificity", "Specificity ↑", True, True),
    ("pixel_accuracy", "Pixel acc. ↑", True, False),
    ("miou", "mIoU ↑", True, False),
    ("map", "mAP ↑", True, True),
    ("auc_positive", "Pos. AUC ↓", False, True),
    ("auc_negative", "Neg. AUC ↑", True, True),
)


@dataclass
class Sample:
    """One (scene, explained object) pair."""

    scene: Scene
    index: int  # object index within the scene

    @property
    def label(self) -> int:
        return self.scene.labels[self.index]

    @property
    def target_mask(self) -> np.ndarray:
        return self.scene.masks[self.index]

    @property
    def other_mask(self) -> np.ndarray:
        others = [m for i, m in enumerate(self.scene.masks) if i != self.index]
        return np.any(np.stack(others), 0) if others else np.zeros_like(self.target_mask)

    @property
    def title(self) -> str:
        return f"{self.scene.colours[self.index]} {SHAPE_CLASSES[self.label]}"


@dataclass
class MethodScores:
    """Per-sample values (NaN where undefined) and the §5.2 accumulator of one method."""

    values: dict[str, list[float]] = field(default_factory=dict)
    segmentation: SegmentationAccumulator = field(default_factory=SegmentationAccumulator)
    hits_positive: list[torch.Tensor] = field(default_factory=list)
    hits_negative: list[torch.Tensor] = field(default_factory=list)
    seconds: float = 0.0
    explanations: int = 0

    def add(self, key: str, values: torch.Tensor | Sequence[float]) -> None:
        self.values.setdefault(key, []).extend(float(v) for v in torch.as_tensor(values).flatten())

    def summary(self) -> dict[str, tuple[float, float | None]]:
        """metric -> (mean, 95% CI half-width or None), in percent (AUCs in their own unit)."""
        out: dict[str, tuple[float, float | None]] = {}
        for key, vals in self.values.items():
            arr = np.asarray(vals, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
            if arr.size == 0:
                out[key] = (float("nan"), None)
                continue
            scale = 1.0 if key.startswith("auc") else 100.0
            ci = 1.96 * arr.std(ddof=1) / math.sqrt(arr.size) if arr.size > 1 else None
            out[key] = (scale * float(arr.mean()), None if ci is None else scale * float(ci))
        if self.segmentation.images:
            seg = self.segmentation.compute()
            out["pixel_accuracy"] = (seg.pixel_accuracy, None)
            out["miou"] = (seg.miou, None)
        return out

    def milliseconds(self) -> float:
        """Wall-clock milliseconds of the method's ``explain`` calls per explained object (NaN when untimed)."""
        return 1000.0 * self.seconds / self.explanations if self.explanations else float("nan")

    def curves(self) -> dict[str, list[float]]:
        return {
            "positive": torch.cat(self.hits_positive).float().mean(0).tolist(),
            "negative": torch.cat(self.hits_negative).float().mean(0).tolist(),
        }


@dataclass
class EvaluationResult:
    methods: list[str]
    scores: dict[str, MethodScores]
    samples: list[Sample]
    scenes: int
    seed: int
    start_layers: dict[str, int]
    unperturbed_accuracy: float
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self, timing: bool = True) -> str:
        """Markdown table of methods x metrics (mean ± 95% CI where per-sample values exist) and, with ``timing``,
        the time per explanation."""
        head = "| Method | " + " | ".join(title for _, title, _, _ in METRICS) + (
            f" | {TIME_COLUMN[1]} |" if timing else " |")
        rule = "|---|" + "---|" * len(METRICS) + ("---:|" if timing else "")
        rows = [head, rule]
        summaries = {m: self.scores[m].summary() for m in self.methods}
        best: dict[str, str] = {}
        for key, _, higher, _ in METRICS:
            candidates = [(summaries[m][key][0], m) for m in self.methods if m != RANDOM and key in summaries[m]
                          and np.isfinite(summaries[m][key][0])]
            if candidates:
                best[key] = (max if higher else min)(candidates)[1]
        for m in self.methods:
            cells = []
            for key, _, _, _ in METRICS:
                mean, ci = summaries[m].get(key, (float("nan"), None))
                text = "–" if not np.isfinite(mean) else (f"{mean:.1f}" if ci is None else f"{mean:.1f} ± {ci:.1f}")
                cells.append(f"**{text}**" if best.get(key) == m else text)
            if timing:
                milliseconds = self.scores[m].milliseconds()
                cells.append(f"{milliseconds:.1f}" if np.isfinite(milliseconds) else "–")
            name = f"{m} (start {self.start_layers[m]})" if m in self.start_layers else m
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def held_out_samples(n_scenes: int, seed: int, size: int) -> list[Sample]:
    """All (scene, object) pairs of scenes ``seed .. seed + n_scenes - 1``."""
    samples = []
    for s in range(seed, seed + n_scenes):
        scene = render_scene(s, size)
        samples.extend(Sample(scene, i) for i in range(len(scene.labels)))
    return samples


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    maps = maps.detach().float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def relevance_maps(model: torch.nn.Module, pixels: torch.Tensor, targets: torch.Tensor, method: str,
                   start_layer: int, generator: torch.Generator | None = None,
                   options: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Raw relevance (B, H, W) at the input resolution for ``method`` (or the random reference); ``options`` are
    the method's options (gradient and perturbation methods)."""
    import relevance

    size = tuple(pixels.shape[-2:])
    if method == RANDOM:
        h, w = getattr(getattr(model, "config", None), "grid_size", (8, 8))  # noise on the patch grid
        noise = torch.rand(pixels.shape[0], h, w, generator=generator)
        return _upsample(noise, size)
    explanation = relevance.explain(model, pixels, method=method, target=targets, start_layer=start_layer,
                                    **(options or {}))
    return _upsample(explanation.relevance, size)


def resolve_methods(model: torch.nn.Module, methods: Sequence[str] | None, start_layer: int | None,
                    random_reference: bool) -> tuple[list[str], dict[str, int]]:
    """Canonical method names (plus the random reference) and the start layer of those that chain blocks (the
    papers' scripts, else the method's own default, unless ``start_layer``; clipped to the model's depth)."""
    import relevance

    names = list(methods) if methods else relevance.list_methods()
    names = [relevance.get_method(m).name for m in names]
    if random_reference and RANDOM not in names:
        names.append(RANDOM)
    depth = len(model.blocks)
    start_layers = {}
    for m in names:
        spec = relevance.get_method(m) if m != RANDOM else None
        if spec is not None and spec.uses_start_layer:
            own = spec.default_start_layer or 0  # the method's own default (LeGrad: the last two blocks)
            sl = PAPER_START_LAYER.get(m, own if own >= 0 else depth + own) if start_layer is None else int(start_layer)
            start_layers[m] = min(max(sl, 0), depth - 1)
    return names, start_layers


def evaluate_scenes(
    model: torch.nn.Module,
    scenes: range,
    *,
    seed: int,
    methods: Sequence[str],
    start_layers: dict[str, int],
    batch_size: int = 32,
    advance=None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample results on the held-out scenes ``seed + scenes.start .. seed + scenes.stop - 1``.

    Parameters
    ----------
    model:
        The shapes model.
    scenes:
        Scene offsets from ``seed`` (a shard of the evaluation).
    seed:
        Seed of scene 0.
    methods, start_layers:
        From :func:`resolve_methods` (the random reference draws its noise from a generator seeded with
        ``seed + scenes.start``).
    batch_size:
        Samples per batch (batches never cross ``scenes``).
    advance:
        Called with the number of scenes done after each batch (a progress bar's ``update``).
    method_options:
        A method's options by its name (e.g. ``{"lime": {"n_samples": 64}}``; default: the methods' defaults).

    Returns
    -------
    dict
        One row per explained object: ``scene``, ``label``, ``unperturbed`` (the class is predicted) and per method
        ``"<method>.<key>"`` for the per-sample metrics (:data:`METRICS` but pixel accuracy and mIoU), the §5.2
        counts (``correct``, ``labelled``, ``intersection``, ``union``) and the hits of both perturbation tests
        (``hits_positive``, ``hits_negative``: (n, 10) bool); ``"<method>.seconds"`` is the wall-clock time of
        the batch's explanation divided by its size (a measurement, not a result).
    """
    config = model.data_config
    size = tuple(config.input_size)
    if size[0] != size[1]:
        raise ValueError(f"the shapes world is square; the model expects {size}")
    normalize = make_normalize(config.mean, config.std)
    device = next(model.parameters()).device
    samples = held_out_samples(len(scenes), seed + scenes.start, size[0])
    grid = getattr(getattr(model, "config", None), "grid_size", (8, 8))
    tolerance = 0.5 * size[0] / grid[0]  # half a patch
    generator = torch.Generator().manual_seed(seed + scenes.start)
    parts: dict[str, list[np.ndarray]] = {}

    def add(key: str, values) -> None:
        parts.setdefault(key, []).append(np.asarray(torch.as_tensor(values).cpu().numpy()))

    @torch.no_grad()
    def classify(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device)).float().cpu()

    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        images01 = torch.stack([torch.from_numpy(s.scene.image.transpose(2, 0, 1).copy()) for s in batch]).float() / 255
        targets = torch.tensor([s.label for s in batch])
        target_masks = torch.from_numpy(np.stack([s.target_mask for s in batch]))
        other_masks = torch.from_numpy(np.stack([s.other_mask for s in batch]))
        pixels = normalize(images01).to(device)
        add("scene", [s.scene.seed - seed for s in batch])
        add("label", targets)
        add("unperturbed", multilabel_present(classify(pixels), targets))
        for m in methods:
            started = time.perf_counter()
            maps = relevance_maps(model, pixels, targets.to(device), m, start_layers.get(m, 0), generator,
                                  (method_options or {}).get(m)).cpu()
            add(f"{m}.seconds", [(time.perf_counter() - started) / len(batch)] * len(batch))
            add(f"{m}.pointing", pointing_game(maps, target_masks))
            add(f"{m}.pointing_tolerant", pointing_game(maps, target_masks, tolerance=tolerance))
            add(f"{m}.mass", mass_inside(maps, target_masks))
            add(f"{m}.specificity", class_specificity(maps, target_masks, other_masks))
            statistics = segmentation_statistics(maps, target_masks)
            for key in ("correct", "labelled", "intersection", "union"):
                add(f"{m}.{key}", statistics[key])
            add(f"{m}.map", statistics["ap"])
            for positive, test in ((True, "positive"), (False, "negative")):
                hits = perturbation_hits(classify, images01, maps, targets, normalize=normalize, positive=positive,
                                         correct=multilabel_present)
                add(f"{m}.hits_{test}", hits)
                add(f"{m}.auc_{test}", [perturbation_auc(h.float()) for h in hits])
        if advance is not None:
            done = {s.scene.seed for s in batch} - {s.scene.seed for s in samples[start + batch_size:]}
            advance(len(done))
    return {key: np.concatenate(values) for key, values in parts.items()}


def result_from_rows(rows: dict[str, np.ndarray], *, methods: Sequence[str], scenes: int, seed: int,
                     start_layers: dict[str, int], size: int,
                     method_options: Mapping[str, Mapping[str, Any]] | None = None) -> EvaluationResult:
    """The :class:`EvaluationResult` of the merged per-sample rows of :func:`evaluate_scenes`."""
    samples = held_out_samples(scenes, seed, size)
    if len(samples) != len(rows["label"]) or [s.label for s in samples] != rows["label"].tolist():
        raise ValueError("the rows do not belong to these scenes")
    scores = {}
    for m in methods:
        sc = MethodScores()
        for key in ("pointing", "pointing_tolerant", "mass", "specificity", "map", "auc_positive", "auc_negative"):
            sc.add(key, rows[f"{m}.{key}"])
        sc.segmentation = SegmentationAccumulator(
            correct=int(rows[f"{m}.correct"].sum()), labelled=int(rows[f"{m}.labelled"].sum()),
            intersection=rows[f"{m}.intersection"].sum(0).astype(np.int64),
            union=rows[f"{m}.union"].sum(0).astype(np.int64),
            ap_sum=float(sum(rows[f"{m}.map"].tolist())), images=len(samples))
        sc.hits_positive = [torch.from_numpy(rows[f"{m}.hits_positive"])]
        sc.hits_negative = [torch.from_numpy(rows[f"{m}.hits_negative"])]
        if f"{m}.seconds" in rows:
            sc.seconds, sc.explanations = float(rows[f"{m}.seconds"].sum()), len(samples)
        scores[m] = sc
    return EvaluationResult(methods=list(methods), scores=scores, samples=samples, scenes=scenes, seed=seed,
                            start_layers=dict(start_layers),
                            unperturbed_accuracy=float(np.mean(rows["unperturbed"])),
                            method_options={m: dict(o) for m, o in (method_options or {}).items()})


def evaluate(
    model: torch.nn.Module,
    *,
    scenes: int = 200,
    seed: int = 10_000_000,
    methods: Sequence[str] | None = None,
    batch_size: int = 32,
    start_layer: int | None = None,
    random_reference: bool = True,
    progress: bool = True,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvaluationResult:
    """Score every method on the held-out scenes (see the module docstring), in this process. ``method_options``
    maps a method's name to its options (e.g. ``{"lime": {"n_samples": 64}}``; default: the methods' defaults).

    ``relevance evaluate`` runs the same computation in shards over processes (:func:`evaluate_scenes` per shard,
    :func:`result_from_rows` on the merged rows); with one shard the two agree exactly.
    """
    from tqdm import tqdm

    import relevance

    names, start_layers = resolve_methods(model, methods, start_layer, random_reference)
    options = {relevance.get_method(m).name: dict(o) for m, o in (method_options or {}).items()}
    bar = tqdm(total=scenes, desc="evaluate", unit="scene", disable=not progress, file=sys.stderr)
    rows = evaluate_scenes(model, range(scenes), seed=seed, methods=names, start_layers=start_layers,
                           batch_size=batch_size, advance=bar.update, method_options=options)
    bar.close()
    return result_from_rows(rows, methods=names, scenes=scenes, seed=seed, start_layers=start_layers,
                            size=int(model.data_config.input_size[-1]), method_options=options)


def figure(model: torch.nn.Module, result: EvaluationResult, rows: int = 6, tile: int = 128) -> np.ndarray:
    """A grid: one row per explained object (scenes with several objects first, two classes per scene, so
    that class-specific and class-agnostic maps can be told apart), one column per method."""
    from PIL import Image

    from relevance.render import mask_edge, overlay, side_by_side

    by_scene: dict[int, list[Sample]] = {}
    for s in result.samples:
        by_scene.setdefault(s.scene.seed, []).append(s)
    chosen: list[Sample] = []
    for group in sorted(by_scene.values(), key=lambda g: -min(len(g), 2)):
        chosen.extend(group[:2])
        if len(chosen) >= rows:
            break
    chosen = chosen[:rows]
    config = model.data_config
    normalize = make_normalize(config.mean, config.std)
    device = next(model.parameters()).device
    images01 = torch.stack([torch.from_numpy(s.scene.image.transpose(2, 0, 1).copy()) for s in chosen]).float() / 255
    pixels = normalize(images01).to(device)
    targets = torch.tensor([s.label for s in chosen], device=device)
    generator = torch.Generator().manual_seed(result.seed)
    maps = {m: relevance_maps(model, pixels, targets, m, result.start_layers.get(m, 0), generator,
                              result.method_options.get(m)).cpu()
            for m in result.methods}
    tiles, titles = [], []
    for i, s in enumerate(chosen):
        big = np.asarray(Image.fromarray(s.scene.image).resize((tile, tile), Image.Resampling.NEAREST))
        outline = big.copy()
        edge = mask_edge(np.asarray(Image.fromarray(s.target_mask.astype(np.uint8) * 255).resize(
            (tile, tile), Image.Resampling.NEAREST)) > 0)
        outline[edge] = (255, 255, 255)
        tiles.append(outline)
        titles.append(f"explain: {s.title}")
        for m in result.methods:
            tiles.append(overlay(big, maps[m][i], colormap="jet", alpha=0.5))
            titles.append(SHORT_NAMES.get(m, m))
    return side_by_side(tiles, titles, columns=len(result.methods) + 1, tile_height=tile)


def markdown_report(result: EvaluationResult, model_name: str) -> str:
    """``results.md``: settings, the table, and the perturbation curves."""
    objects = len(result.samples)
    multi = sum(1 for s in result.samples if len(s.scene.labels) > 1)
    lines = [
        f"# Explanation methods on the shapes world ({model_name})",
        "",
        f"{result.scenes} held-out scenes (seeds {result.seed}..{result.seed + result.scenes - 1}), "
        f"{objects} explained objects ({multi} in scenes with several objects, used for specificity). "
        f"Each object's class is explained; the model still predicts it on "
        f"{100 * result.unperturbed_accuracy:.1f}% of them unperturbed. "
        "Values in percent (AUC: 100 x trapz over 0..0.9, max 90), mean ± 95% confidence interval; "
        "pixel accuracy and mIoU are accumulated over all maps (spec §5.2). "
        "Best non-random value per column in bold. The last column is the wall-clock time of each method's "
        "explain() calls per explained object (batches of up to 32, this machine, whatever else it was running; "
        "the gradient and perturbation methods with their default options"
        + (f", except {_options_text(result.method_options)}" if result.method_options else "") + ").",
        "",
        result.table(),
        "",
        "## By number of objects in the scene",
        "",
        "Class-agnostic maps (raw attention, rollout) can only point at the right object by chance once a scene "
        "holds several objects; with a single object they compete on equal terms.",
        "",
        by_objects(result),
        "",
        "## Perturbation curves (share of explained classes still predicted)",
        "",
        "| Method | test | " + " | ".join(f"{p:.1f}" for p in STEPS) + " |",
        "|---|---|" + "---|" * len(STEPS),
    ]
    for m in result.methods:
        curves = result.scores[m].curves()
        for test in ("positive", "negative"):
            lines.append(f"| {m} | {test} | " + " | ".join(f"{100 * v:.1f}" for v in curves[test]) + " |")
    return "\n".join(lines) + "\n"


def _options_text(options: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{m}: " + ", ".join(f"{k}={v!r}" for k, v in o.items()) for m, o in options.items())


def by_objects(result: EvaluationResult) -> str:
    """Markdown table: pointing game and perturbation AUCs per number of objects in the scene."""
    counts = np.array([len(s.scene.labels) for s in result.samples])
    present = sorted(set(counts.tolist()))
    keys = (("pointing", "Pointing", 100.0), ("pointing_tolerant", "Pointing ±½ patch", 100.0),
            ("auc_positive", "Pos. AUC", 1.0), ("auc_negative", "Neg. AUC", 1.0))
    head = "| Method | " + " | ".join(f"{title} ({n} obj.)" for _, title, _ in keys for n in present) + " |"
    rows = [head, "|---|" + "---|" * (len(keys) * len(present))]
    for m in result.methods:
        values = result.scores[m].values
        cells = []
        for key, _, scale in keys:
            arr = np.asarray(values[key], dtype=np.float64)
            cells.extend(f"{scale * arr[counts == n].mean():.1f}" for n in present)
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    objects = ", ".join(f"{int((counts == n).sum())} in {n}-object scenes" for n in present)
    return "\n".join(rows) + f"\n\n(Explained objects: {objects}.)"


def result_dict(result: EvaluationResult) -> dict:
    """A JSON-serialisable summary (``results.json``)."""
    return {
        "scenes": result.scenes,
        "seed": result.seed,
        "objects": len(result.samples),
        "unperturbed_accuracy": result.unperturbed_accuracy,
        "start_layers": result.start_layers,
        "method_options": {m: {k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
                               for k, v in o.items()} for m, o in result.method_options.items()},
        "milliseconds_per_explanation": {m: result.scores[m].milliseconds() for m in result.methods},
        "methods": {
            m: {
                "metrics": {k: {"mean": v[0], "ci95": v[1]} for k, v in result.scores[m].summary().items()},
                "curves": result.scores[m].curves(),
            }
            for m in result.methods
        },
    }

