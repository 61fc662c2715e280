"""What the dataset protocols' runners share: the model, the preprocessing, the methods, the sharded loop.

Each runner (``imagenet_seg``, ``perturbation``) gives a dataset of ``(input, target)`` pairs and a batch function
``(inputs, targets) -> {name: one row per sample}`` (image tensors arrive on the process's device; a text
protocol's strings as they are); :func:`run_sharded` cuts the dataset into shards, computes this process's share
(batches never cross a shard), and returns the merged rows on rank 0.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from relevance.evaluation.sharding import Runtime, ShardPlan, ShardStore, run_shards

#: Version of the shard layout (a change makes older shard folders refuse to mix in).
SHARD_FORMAT = 1


class UsageError(ValueError):
    """A problem with the command's arguments (exit status 2)."""


@dataclass(frozen=True)
class Preprocessing:
    """The papers' preprocessing for a model: squash-resize to its input size, [0, 1], its mean and std."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self) -> Callable[[torch.Tensor], torch.Tensor]:
        from relevance.evaluation import make_normalize

        return make_normalize(self.mean, self.std)


def load_classifier(args: argparse.Namespace, runtime: Runtime) -> tuple[Any, str, Preprocessing]:
    """The model of ``--model`` / ``--checkpoint`` on this process's device, its name and its preprocessing."""
    from relevance.adapter import adapter_for
    from relevance.models import DEFAULT_HUB_MODEL, create

    name = args.model or DEFAULT_HUB_MODEL
    try:
        model = create(name, checkpoint=args.checkpoint, device=str(runtime.device), quiet=not runtime.is_main)
    except (ValueError, FileNotFoundError, RuntimeError) as problem:
        raise UsageError(str(problem)) from problem
    info = adapter_for(model).info
    if info.output != "class_logits" or info.data_config is None:
        raise UsageError(f"{name!r} is not an image classifier; the ImageNet protocols need one")
    config = info.data_config
    size = tuple(int(s) for s in config.input_size[-2:])
    return model, name, Preprocessing(size, tuple(config.mean), tuple(config.std))


def methods_and_start_layers(args: argparse.Namespace, model: Any) -> tuple[list[str], dict[str, int]]:
    """``--methods`` (default: :data:`relevance.evaluation.protocols.DEFAULT_METHODS`) and their start layers."""
    from relevance.adapter import adapter_for
    from relevance.evaluation.protocols import resolve_methods, start_layers_for

    requested = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        methods = resolve_methods(requested)
        depth = adapter_for(model).depths()["image"]
        return methods, start_layers_for(methods, depth, args.start_layer)
    except ValueError as problem:
        raise UsageError(str(problem)) from problem


def _batches(dataset: torch.utils.data.Dataset, indices: range, batch_size: int, workers: int):
    subset = torch.utils.data.Subset(dataset, list(indices))
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers)


def run_sharded(args: argparse.Namespace, runtime: Runtime, dataset: torch.utils.data.Dataset,
                batch: Callable[[Any, torch.Tensor], Mapping[str, np.ndarray]],
                manifest: Mapping[str, Any], out: Path) -> dict[str, np.ndarray] | None:
    """Run ``batch`` over ``dataset`` in shards (``<out>/shards``); the merged rows on rank 0, else ``None``.

    ``args`` supplies ``samples`` (the first N, default all), ``shard_size``, ``batch_size``, ``workers`` and
    ``no_progress``; ``manifest`` the settings that shape the results (``protocol`` names the progress bar).

    Every shard also stores ``index``, the dataset index of each row; the merged rows are checked to cover
    ``0 .. N-1`` in order.
    """
    total = len(dataset) if args.samples is None else min(args.samples, len(dataset))
    plan = ShardPlan(total, args.shard_size)
    workers = args.workers if args.workers is not None else (4 if runtime.device.type == "cuda" else 0)
    settings = dict(manifest, images=total, shard_size=args.shard_size, batch_size=args.batch_size,
                    device=runtime.device.type, format=SHARD_FORMAT)
    store = ShardStore(out / "shards", settings)

    def compute(indices: range, advance: Callable[[int], Any]) -> dict[str, np.ndarray]:
        parts: list[Mapping[str, np.ndarray]] = []
        for inputs, targets in _batches(dataset, indices, args.batch_size, workers):
            if isinstance(inputs, torch.Tensor):  # images; a text protocol's batch gets its strings as they are
                inputs = inputs.to(runtime.device)
            parts.append(batch(inputs, targets))
            advance(len(targets))
        rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        rows["index"] = np.arange(indices.start, indices.stop, dtype=np.int64)
        return rows

    merged = run_shards(plan, store, runtime, compute, progress=not args.no_progress, desc=manifest["protocol"])
    if merged is not None and not np.array_equal(merged["index"], np.arange(total)):
        raise RuntimeError(f"the shards in {store.folder} do not cover images 0..{total - 1} in order")
    return merged


def out_folder(args: argparse.Namespace, protocol: str) -> Path:
    return Path(args.out or f"out/evaluate-{protocol}")


def describe_data(path: str) -> str:
    """The absolute path of ``--data`` (what the manifest records)."""
    return os.path.abspath(path)
