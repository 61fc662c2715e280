"""TensorBoard logging of relevance maps and attention grids of fixed probe inputs during training.

:class:`RelevanceLogger` explains a few fixed inputs every N steps and writes, per probe, the relevance
overlay (image streams, ``SummaryWriter.add_image``), the token heatmap (text streams, ``add_text`` as a
Markdown table and ``add_image`` as a picture) and the layers x heads attention grid
(:func:`relevance.views.attention_grid`). Watching the maps change while a model learns is the use the CVPR 2021
paper's figures suggest (Chefer, Gur & Wolf 2021); the grid follows Vig 2019. Training is left exactly as it
would be without logging: explanations keep nothing on the model, never touch its parameters' gradients or its
mode, and the random number generators are restored after each log.

Usage in a training loop::

    logger = RelevanceLogger("runs/exp1", probes, every=100, target=probe_labels)
    for step, batch in enumerate(loader):
        logger(model, step)        # logs at steps 0, 100, 200, ...
        ...                        # the training step
    logger.log(model, step + 1)    # the final state
    logger.close()

Models trained in another library's form (a timm ``VisionTransformer``) are explained through ``explainable``,
a function that returns an LRP-aware copy (e.g. ``relevance.models.vit.from_timm`` plus the model's metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["RelevanceLogger", "token_table"]


def token_table(tokens: Sequence[str], scores: Sequence[float] | np.ndarray, *, title: str = "") -> str:
    """A token heatmap as Markdown for ``add_text``: one row per token with its score and a bar.

    Parameters
    ----------
    tokens:
        (n,) token strings.
    scores:
        (n,) relevance per token.
    title:
        A line above the table.

    Returns
    -------
    str
        Markdown (TensorBoard's text plugin renders tables).
    """
    values = np.asarray(scores, dtype=np.float64)
    top = float(np.abs(values).max()) or 1.0
    rows = [f"{title}\n" if title else "", "| token | relevance | |", "|---|---:|---|"]
    for token, value in zip(tokens, values.tolist()):
        escaped = str(token).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        bar = ("\u2588" * max(0, round(12 * abs(value) / top))) or "\u00b7"
        rows.append(f"| `{escaped}` | {value:.4f} | {'-' if value < 0 else ''}{bar} |")
    return "\n".join(row for row in rows if row != "")


class RelevanceLogger:
    """Log relevance maps and attention grids of fixed probe inputs to TensorBoard every ``every`` steps.

    Parameters
    ----------
    writer:
        A ``torch.utils.tensorboard.SummaryWriter``, or a folder for a new one.
    probes:
        The fixed inputs, in any form the model's adapter takes (image paths or arrays, texts).
    every:
        Log when ``step % every == 0`` (:meth:`__call__`); :meth:`log` logs at once.
    method:
        The explanation method (:func:`relevance.list_methods`).
    target:
        What is explained, as for :func:`relevance.explain` (default: each probe's top class at that step); fixed
        classes (e.g. the probes' labels) make the maps comparable across steps.
    grids:
        Also log each probe's layers x heads attention grid.
    explainable:
        ``model -> LRP-aware model`` for models trained in another form (default: the model itself).
    tag:
        Prefix of the tags: ``{tag}/{method}/probe_{i}`` and ``{tag}/attention/probe_{i}``.
    """

    def __init__(self, writer: Any, probes: Sequence[Any], *, every: int = 100,
                 method: str = "transformer_attribution", target: Any = None, grids: bool = True,
                 explainable: Callable[[Any], Any] | None = None, tag: str = "relevance"):
        import relevance

        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        if not probes:
            raise ValueError("give at least one probe input")
        self.method = relevance.get_method(method).name
        self.writer = writer if hasattr(writer, "add_image") else _summary_writer(writer)
        self.probes = list(probes)
        self.every, self.target, self.grids = int(every), target, bool(grids)
        self.explainable = explainable or (lambda model: model)
        self.tag = tag

    def __call__(self, model: Any, step: int) -> bool:
        """Log when ``step`` is a multiple of ``every``; returns whether it logged."""
        if step % self.every:
            return False
        self.log(model, step)
        return True

    def log(self, model: Any, step: int) -> None:
        """Explain the probes with ``model`` as it is now and write everything at ``step``."""
        import relevance
        from relevance.explanation import ImageMap
        from relevance.views import attention_grid, capture

        with torch.random.fork_rng(devices=[]):
            explainable = self.explainable(model)
            result = relevance.explain(explainable, self.probes, method=self.method, target=self.target)
            captured = capture(explainable, self.probes) if self.grids else None
        names = result.info.class_names
        for index in range(len(self.probes)):
            label = int(result.target[index]) if result.target is not None else None
            caption = names[label] if names is not None and label is not None else str(label)
            for stream, stream_map in result.maps.items():
                name = f"{self.tag}/{self.method}/probe_{index}" + ("" if stream == next(iter(result.maps)) else f"/{stream}")
                if isinstance(stream_map, ImageMap):
                    self.writer.add_image(name, stream_map.overlay(index), step, dataformats="HWC")
                else:
                    self._text(name, stream_map, index, caption, step)
            if captured is not None:
                for stream in captured.streams:
                    grid = attention_grid(captured, sample=index, stream=stream).image
                    suffix = "" if stream == next(iter(captured.streams)) else f"/{stream}"
                    self.writer.add_image(f"{self.tag}/attention/probe_{index}{suffix}", grid, step,
                                          dataformats="HWC")
        self.writer.flush()

    def _text(self, name: str, stream_map: Any, index: int, caption: str, step: int) -> None:
        from relevance.render.text import text_heatmap_image

        tokens = stream_map.tokens(index)
        scores = stream_map.scores(index).detach().cpu().float().numpy()
        self.writer.add_text(name, token_table(tokens, scores, title=f"**{caption}** ({self.method})"), step)
        self.writer.add_image(name + "/heatmap", text_heatmap_image(tokens, scores, width=640), step,
                              dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _summary_writer(folder: str | Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # tensorboard is an optional dependency
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install 'relevance[tensorboard]'"
                          ) from error
    return SummaryWriter(log_dir=str(folder))
