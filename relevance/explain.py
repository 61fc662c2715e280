"""``explain``: one call for every method, batched with per-sample targets.

The model must be built from :mod:`relevance.layers` / :mod:`relevance.ops` (``models.vit`` models are), so
that its forward pass records attention probabilities on the current tape. One forward pass builds one graph;
gradients ``dy_t/dA`` and LRP relevance are then two backward passes over it (see :mod:`relevance.ops`).
Nothing is left on the model: no hooks, no attributes, unchanged ``requires_grad`` and training mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from relevance import methods as M
from relevance.tape import Mode, Tape, recording

TargetLike = int | Sequence[int] | Tensor | None


class AttentionNotCapturedError(RuntimeError):
    """The model ran without recording attention probabilities (e.g. fused SDPA attention)."""


@dataclass
class Explanation:
    """The result of :func:`explain` for a batch of B images.

    Attributes
    ----------
    relevance:
        (B, h, w) on the patch grid, or (B, H, W) on pixels for ``lrp``: the raw values the method defines.
    logits:
        (B, C) the model's output.
    target:
        (B,) the explained class of each sample.
    method, start_layer:
        What was computed.
    pixels:
        (B, C, H, W) the model input.
    originals, geometries:
        The images as given (uint8 RGB) and where the model input lies in each, when raw images were passed.
    """

    relevance: Tensor
    logits: Tensor
    target: Tensor
    method: str
    start_layer: int
    pixels: Tensor
    originals: list[np.ndarray] | None = None
    geometries: list[Any] | None = None
    class_names: list[str] | None = field(default=None, repr=False)
    multi_label: bool = False

    @property
    def probabilities(self) -> Tensor:
        """(B, C) class probabilities: softmax, or one sigmoid per class for multi-label models."""
        return class_probabilities(self.logits, self.multi_label)

    def heatmaps(self, size: tuple[int, int] | None = None) -> Tensor:
        """(B, H, W) maps in [0, 1]: upsampled bilinearly to ``size`` (default: the model input's size) and
        min-max normalised per map (a constant map gives zeros), as the papers display them (spec §2.1 step 9)."""
        from relevance.render import normalize, upsample

        size = tuple(size) if size is not None else tuple(self.pixels.shape[-2:])
        maps = self.relevance
        if tuple(maps.shape[-2:]) != size:
            maps = upsample(maps, size)
        return normalize(maps)

    def overlay(self, index: int = 0, colormap: str = "jet", alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB overlay of sample ``index``'s map on its original image, at the original's resolution
        (on the model input when no original is known)."""
        from relevance.images import CropGeometry
        from relevance.render import overlay

        if self.originals is not None:
            original, geometry = self.originals[index], self.geometries[index]
        else:
            original = _pixels_to_uint8(self.pixels[index])
            geometry = CropGeometry.full(original.shape[:2])
        return overlay(original, self.relevance[index], geometry, colormap=colormap, alpha=alpha)

    def class_name(self, index: int = 0) -> str:
        """Name of sample ``index``'s explained class (its number when the model has no names)."""
        target = int(self.target[index])
        return self.class_names[target] if self.class_names else str(target)


def class_probabilities(logits: Tensor, multi_label: bool = False) -> Tensor:
    """(B, C) probabilities of logits: softmax, or independent sigmoids for a multi-label model (one trained with
    one binary cross-entropy per class, which says so with ``model.multi_label = True``)."""
    return logits.sigmoid() if multi_label else logits.softmax(dim=-1)


def _pixels_to_uint8(pixels: Tensor) -> np.ndarray:
    image = pixels.detach().float().cpu()
    image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def explain(model: nn.Module, images: Any, *, method: str = "transformer_attribution", target: TargetLike = None,
            start_layer: int = 0) -> Explanation:
    """Explain the classification of each image in a batch.

    Parameters
    ----------
    model:
        An LRP-aware model (e.g. ``models.vit.from_timm(timm_model)``) in evaluation mode or not: dropout is
        skipped while explaining, and the model's mode is never changed.
    images:
        A float tensor (B, C, H, W) (or (C, H, W)) already preprocessed for the model, or raw images (a path,
        PIL image, numpy array, uint8 tensor, or a list of these), which are prepared with the model's
        ``data_config`` (:func:`relevance.images.prepare`) and kept for :meth:`Explanation.overlay`.
    method:
        One of :func:`relevance.list_methods` (aliases: ``transatt``, ``gae``).
    target:
        ``None`` (each sample's own argmax), an int (that class for every sample), or one class per sample.
    start_layer:
        First block of the product for ``transformer_attribution``, ``gradient_rollout`` and ``rollout``.
        The CVPR 2021 notebooks use 0, its quantitative scripts 1 (spec §2.1).

    Returns
    -------
    Explanation
        ``relevance`` (B, h, w) on the patch grid ((B, H, W) pixels for ``lrp``), ``logits``, ``target``...
    """
    spec = M.get_method(method)
    pixels, originals, geometries = _model_input(model, images)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("explain() needs autograd: call it outside torch.inference_mode()")
    depth = _depth(model)
    if not isinstance(start_layer, int) or not 0 <= start_layer < depth:
        raise ValueError(f"start_layer must be an int in [0, {depth - 1}] for this {depth}-block model, "
                         f"got {start_layer!r}")
    if spec.needs_backward:  # a graph even when every parameter is frozen
        pixels = pixels.detach().requires_grad_(True)

    with recording(spec.rules) as tape:
        try:
            with torch.set_grad_enabled(spec.needs_backward):
                logits = model(pixels)
            _check_recorded(tape, depth, model)
            targets = _resolve_targets(target, logits)
            record = _backward_passes(spec, tape, logits, targets, pixels, start_layer)
            maps = spec.compute(record)
        finally:
            tape.clear()
    if maps.dim() == 2:
        maps = maps.reshape(maps.shape[0], *record.layout.grid_size)
    return Explanation(relevance=maps.detach(), logits=logits.detach(), target=targets, method=spec.name,
                       start_layer=start_layer, pixels=pixels.detach(), originals=originals,
                       geometries=geometries, class_names=getattr(model, "class_names", None),
                       multi_label=bool(getattr(model, "multi_label", False)))


def _depth(model: nn.Module) -> int:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"{type(model).__name__} is not an LRP-aware model (no `blocks`); convert timm models "
                        "with models.vit.from_timm")
    return len(blocks)


def _model_input(model: nn.Module, images: Any) -> tuple[Tensor, list | None, list | None]:
    parameter = next(model.parameters())
    if isinstance(images, Tensor) and images.is_floating_point() and images.dim() in (3, 4):
        pixels = images if images.dim() == 4 else images.unsqueeze(0)
        return pixels.to(device=parameter.device, dtype=parameter.dtype), None, None
    from relevance.images import prepare

    config = getattr(model, "data_config", None)
    if config is None:
        raise ValueError("raw images need the model's data_config (how to resize and normalise); "
                         "pass a preprocessed float tensor (B, C, H, W) instead")
    batch = prepare(images, config)
    return batch.pixels.to(device=parameter.device, dtype=parameter.dtype), batch.originals, batch.geometries


def _check_recorded(tape: Tape, depth: int, model: nn.Module) -> None:
    if len(tape.attention) != depth or tape.layout is None:
        raise AttentionNotCapturedError(
            f"{type(model).__name__} recorded {len(tape.attention)} attention maps for {depth} blocks: its "
            "attention probabilities were not captured (fused/SDPA attention or a model not built from "
            "relevance.layers). Convert timm models with models.vit.from_timm.")


def _resolve_targets(target: TargetLike, logits: Tensor) -> Tensor:
    batch, classes = logits.shape
    if target is None:
        targets = logits.argmax(dim=-1)
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        targets = torch.full((batch,), int(target), dtype=torch.long)
    else:
        targets = torch.as_tensor(target).reshape(-1)
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"target must hold class indices (ints), got dtype {targets.dtype}")
        if targets.numel() != batch:
            raise ValueError(f"got {targets.numel()} targets for a batch of {batch} images")
    targets = targets.to(device=logits.device, dtype=torch.long)
    if (targets < 0).any() or (targets >= classes).any():
        raise ValueError(f"target classes must lie in [0, {classes - 1}], got {targets.tolist()}")
    return targets


def _backward_passes(spec: M.Method, tape: Tape, logits: Tensor, targets: Tensor, pixels: Tensor,
                     start_layer: int) -> M.Record:
    if spec.blocks == "last":
        blocks = [len(tape.attention) - 1]
    elif spec.blocks == "from_start":
        blocks = list(range(start_layer, len(tape.attention)))
    else:
        blocks = []
    attention = [tape.attention[b] for b in blocks]
    one_hot = torch.zeros_like(logits)
    one_hot[torch.arange(len(targets)), targets] = 1.0
    gradients = attention_relevance = input_relevance = None
    if spec.needs_gradients:
        tape.mode = Mode.GRADIENT
        gradients = torch.autograd.grad(logits, attention, one_hot, retain_graph=spec.needs_attention_relevance)
    if spec.needs_attention_relevance or spec.needs_input_relevance:
        tape.mode = Mode.RELEVANCE
        wanted = attention if spec.needs_attention_relevance else [pixels]
        results = torch.autograd.grad(logits, wanted, one_hot)
        if spec.needs_attention_relevance:
            attention_relevance = results
        else:
            (input_relevance,) = results
    detached = [a.detach() for a in attention]
    return M.Record(attention=detached, layout=tape.layout, gradients=gradients,
                    attention_relevance=attention_relevance, input_relevance=input_relevance)


def relevance_per_block(model: nn.Module, images: Tensor, target: TargetLike = None,
                        method: str = "transformer_attribution") -> Tensor:
    """Total relevance entering each block and leaving the last one, per sample: (B, L + 1).

    Starting from the one-hot of the target logit, the paper's rules conserve relevance, so every column is
    about 1 (spec §1.6, §8.5); the LRP baselines' rules do not. ``method`` names the rule set to check
    (``transformer_attribution`` or ``lrp``).
    """
    spec = M.get_method(method)
    if spec.rules is None:
        raise ValueError(f"method {spec.name!r} propagates no relevance")
    pixels, _, _ = _model_input(model, images)
    pixels = pixels.detach().requires_grad_(True)
    with recording(spec.rules) as tape:
        try:
            with torch.enable_grad():
                logits = model(pixels)
                _check_recorded(tape, _depth(model), model)
                targets = _resolve_targets(target, logits)
                one_hot = torch.zeros_like(logits)
                one_hot[torch.arange(len(targets)), targets] = 1.0
                tape.mode = Mode.RELEVANCE
                results = torch.autograd.grad(logits, tape.block_inputs, one_hot)
        finally:
            tape.clear()
    return torch.stack([r.sum(dim=tuple(range(1, r.dim()))) for r in results], dim=1).detach()
