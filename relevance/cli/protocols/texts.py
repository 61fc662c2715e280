"""What the text protocols' runners share (``reviews``, ``eraser``): the text classifier, the methods and their start
layers, the Markdown of token-F1 tables, and a loop that explains a shard batch by batch."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from relevance.cli.protocols.images import UsageError

__all__ = ["UsageError", "check_text_classifier", "confidence", "methods_of", "rows_in_batches", "start_layers_of"]


def check_text_classifier(model: Any, name: str) -> None:
    """Refuse anything but a classifier with a ``"text"`` token stream (an image model, a bare encoder)."""
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    if "text" not in adapter.depths() or adapter.info.output != "class_logits":
        raise UsageError(f"{name!r} is not a text classifier; this protocol explains a text classifier's classes "
                         "(e.g. --model reviews-bert)")


def methods_of(args: argparse.Namespace) -> list[str]:
    """``--methods`` as canonical names (default: every method of :func:`relevance.list_methods`)."""
    import relevance

    if not args.methods:
        return list(relevance.list_methods())
    try:
        names = [relevance.get_method(m.strip()).name for m in args.methods.split(",") if m.strip()]
    except ValueError as problem:
        raise UsageError(str(problem)) from None
    return list(dict.fromkeys(names))


def start_layers_of(model: Any, methods: Sequence[str], override: int | None,
                    defaults: Mapping[str, int] | None = None) -> dict[str, int]:
    """The first block of every method that chains blocks: ``override`` (``--start-layer``; negative counts from the
    end), else ``defaults``, else the model family's convention (0 for BERT), else the method's own default."""
    import relevance
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    depth = adapter.depths()["text"]
    layers = {}
    for method in methods:
        if not relevance.get_method(method).uses_start_layer:
            continue
        if override is not None:
            start = override
        elif defaults and method in defaults:
            start = defaults[method]
        else:  # the family's convention, else the method's own default (LeGrad: the last two blocks), else 0
            own = relevance.get_method(method).default_start_layer
            start = adapter.info.conventions.start_layer.get(method, 0 if own is None else own)
        if not -depth <= start < depth:
            raise UsageError(f"--start-layer must lie in 0..{depth - 1} (or -{depth}..-1) for this {depth}-block "
                             f"model, got {start}")
        layers[method] = start % depth
    return layers


def rows_in_batches(indices: range, batch_size: int, advance: Callable[[int], Any],
                    compute: Callable[[range], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute`` on consecutive batches of a shard's ``indices`` (so that the progress bar moves), concatenated, with
    ``index``: each row's sample index."""
    parts = []
    for start in range(indices.start, indices.stop, batch_size):
        part = range(start, min(start + batch_size, indices.stop))
        parts.append(compute(part))
        advance(len(part))
    rows = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    rows["index"] = np.arange(indices.start, indices.stop, dtype=np.int64)
    return rows


def confidence(values: np.ndarray) -> float:
    """Half the width of the normal 95 % confidence interval of the mean of ``values``, in their unit."""
    values = np.asarray(values, dtype=np.float64)
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
