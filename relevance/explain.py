"""``explain``: one call for every method and every model family, batched with per-sample targets.

The model's adapter (:mod:`relevance.adapter`) prepares the inputs and runs one forward pass, during which the
model records its attention sites, token spaces and input sites on a per-call tape (:mod:`relevance.tape`). The
target gives the seed; gradients ``dy_t/dA`` and relevance are then at most two backward passes over the one
graph (see :mod:`relevance.ops`), and each token stream's record goes to the method. Nothing is left on the model:
no hooks, no attributes, unchanged ``requires_grad`` and training mode.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from relevance import methods as M
from relevance.adapter import Adapter, Batch, adapter_for, check_finite
from relevance.explanation import Explanation, ImageMap, TextMap
from relevance.tape import AttentionKey, Mode, Tape, TokenSpace, recording, suspended
from relevance.targets import Target, TargetLike, as_target

LayersLike = Sequence[int] | Mapping[str, Sequence[int]] | None
StartLike = int | Mapping[str, int] | None
LayerOutput = Callable[[str, int, Tensor], Tensor]


class AttentionNotCapturedError(RuntimeError):
    """The model ran without recording attention probabilities (e.g. fused SDPA attention)."""


def explain(model: Any, inputs: Any = None, *, texts: Any = None, method: str = "transformer_attribution",
            target: TargetLike = None, start_layer: StartLike = None, start_layer_text: int | None = None,
            layers: LayersLike = None, row_normalize: bool | None = None,
            gradcam_weights: str | None = None, **method_options: Any) -> Explanation:
    """Explain a model's output for a batch, with one map per token stream.

    Parameters
    ----------
    model:
        An LRP-aware model (``relevance.models.create(name)``, ``relevance.models.vit.from_timm(m)``, ...) or its
        :class:`~relevance.adapter.Adapter`, in evaluation mode or not: dropout is skipped while explaining, and
        the model's mode is never changed.
    inputs:
        What the model family takes: images (a path, PIL image, numpy array, uint8 tensor, a list of these, or a
        preprocessed float tensor (B, C, H, W)), texts (a string or a list of strings, tokenized with the model's
        tokenizer, or a dict with ``input_ids`` and optionally ``attention_mask``), or images for an image-text
        model.
    texts:
        The texts of an image-text model (strings or token ids (B, L)). B images and B texts are B pairs; one
        image with B texts, or B images with one text, broadcast; with a ``target``, the texts are prompts and
        the target picks one per image (zero-shot classification, see the family's adapter).
    method:
        One of :func:`relevance.list_methods` (aliases: ``transatt``, ``gae``, ...).
    target:
        What is explained. ``None``: each sample's argmax class (or, for image-text pairs, each pair's
        similarity); an int: that class for every sample; one class per sample (list, tuple, array, tensor); a
        :class:`~relevance.targets.Target`; or any callable ``output -> (B,) scores``. Image-text models read
        an int or a sequence as the prompt of each image (zero-shot).
    start_layer:
        First block used by ``transformer_attribution``, ``gradient_rollout``, ``rollout`` and ``legrad``
        (negative counts from the end: -1 is the last block). An int applies to every stream; a dict gives one
        per stream (``{"image": 0, "text": -1}``). ``None``: the family's convention for the method (the CLIP
        notebook's -1 for ``gradient_rollout``, spec §4.7), else the method's own default (LeGrad's last two
        blocks), else 0. The CVPR 2021 notebooks use 0, its quantitative scripts 1 (spec §2.1).
    start_layer_text:
        The text stream's start layer (image-text models), as ``start_layer``.
    layers:
        The blocks used, explicitly (overrides ``start_layer``): indices, or a dict of indices per stream.
    row_normalize:
        Row-normalise transformer attribution's ``I + M_b`` (``None``: the family's convention; the BERT
        reference does, the ViT reference does not).
    gradcam_weights:
        ``"readout_row"`` or ``"whole_map"``: where ``attention_gradcam`` averages the gradient into head
        weights (``None``: the family's convention).
    **method_options:
        Options of the gradient and perturbation methods (``saliency``, ``input_x_gradient``,
        ``integrated_gradients``, ``smoothgrad``, ``occlusion``, ``lime``, ``kernel_shap``; computed by captum, see
        :mod:`relevance.attribution`), e.g. ``n_steps=32, baseline="zero", internal_batch_size=64`` or
        ``features="superpixels", n_samples=500, seed=1``. Each method checks its own (an unknown name is a
        ``TypeError`` listing them; :data:`relevance.attribution.ATTRIBUTION_METHODS` holds them with their
        defaults); the other methods take none. ``start_layer``, ``layers``, ``row_normalize`` and
        ``gradcam_weights`` do not apply to them.

    Returns
    -------
    Explanation
        ``maps`` per stream (``relevance`` is the first stream's: (B, h, w) for images, (B, L) for texts),
        ``output``, ``scores``, ``target``, overlays and token heatmaps.
    """
    adapter = adapter_for(model)
    spec = M.get_method(method)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("explain() needs autograd: call it outside torch.inference_mode()")
    if spec.attribution is not None:
        return _explain_by_attribution(adapter, spec, inputs, texts, target, method_options)
    if method_options:
        raise TypeError(f"method {spec.name!r} takes no option {', '.join(sorted(method_options))} (only the "
                        "gradient and perturbation methods take method options)")
    conventions = adapter.info.conventions
    options = M.Options(row_normalize=row_normalize, gradcam_weights=gradcam_weights).resolve(conventions)
    depths = adapter.depths()
    blocks = _blocks_used(spec, depths, start_layer, start_layer_text, layers, conventions)
    batch, target = adapter.prepare(inputs, texts=texts, target=target)
    warnings = adapter.domain_warnings(batch)

    with recording(spec.rules) as tape:
        try:
            with torch.set_grad_enabled(spec.needs_backward):
                output = adapter.forward(batch)
            _check_recorded(tape, depths, adapter)
            check_finite(output.detach(), "the model's outputs")
            bound = as_target(target, adapter.info.output).bind(output.detach(), adapter.info.class_names)
            records = _backward_passes(spec, tape, output, bound, blocks, options, conventions,
                                       layer_output=_layer_output(adapter, batch, output))
            results = {stream: spec.compute(record) for stream, record in records.items()}
            spaces = dict(tape.spaces)
        finally:
            tape.clear()

    maps, matrices = {}, {}
    for stream, result in results.items():
        row, matrix = result if isinstance(result, tuple) else (result, None)
        maps[stream] = _stream_map(spec, spaces[stream], batch, stream, row.detach())
        if matrix is not None:
            matrices[stream] = matrix.detach()
    scores = bound.score(output.detach()).detach()
    starts = {stream: used[0] for stream, used in blocks.items() if spec.uses_start_layer and used}
    extras = {key: value for key, value in batch.extras.items() if not key.startswith("_")}
    return Explanation(method=spec.name, maps=maps, output=output.detach(), scores=scores, target=bound.classes,
                       start_layers=starts, info=adapter.info, matrices=matrices, warnings=warnings, extras=extras)


def _explain_by_attribution(adapter: Adapter, spec: M.Method, inputs: Any, texts: Any, target: TargetLike,
                            options: dict[str, Any]) -> Explanation:
    """The gradient and perturbation methods: captum on a plain forward function, no tape record."""
    from relevance.attribution.run import explain_attribution

    return explain_attribution(adapter, spec.name, spec.attribution, inputs, texts=texts, target=target,
                               options=options)


# ------------------------------------------------------------------------------------------------ blocks
def _resolve_layer(value: int, depth: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -depth <= value < depth:
        raise ValueError(f"{what} must be an int in [{-depth}, {depth - 1}] for this {depth}-block stream "
                         f"(negative counts from the end), got {value!r}")
    return value % depth


def _blocks_used(spec: M.Method, depths: dict[str, int], start_layer: StartLike, start_layer_text: int | None,
                 layers: LayersLike, conventions: M.Conventions) -> dict[str, list[int]]:
    """The blocks each stream's method reads, oldest first."""
    if isinstance(start_layer, Mapping):
        unknown = set(start_layer) - set(depths)
        if unknown:
            raise ValueError(f"start_layer names unknown streams {sorted(unknown)}; streams: {sorted(depths)}")
    if start_layer_text is not None and "text" not in depths:
        raise ValueError("start_layer_text applies to models with a text stream")
    used: dict[str, list[int]] = {}
    for stream, depth in depths.items():
        if spec.blocks == "none":
            used[stream] = []
        elif spec.blocks == "last":
            used[stream] = [depth - 1]
        elif layers is not None:
            chosen = layers.get(stream, range(depth)) if isinstance(layers, Mapping) else layers
            indices = sorted({_resolve_layer(int(i), depth, "layers") for i in chosen})
            if not indices:
                raise ValueError("layers must name at least one block")
            used[stream] = indices
        else:
            if stream == "text" and start_layer_text is not None:
                start = start_layer_text
            elif isinstance(start_layer, Mapping) and stream in start_layer:
                start = start_layer[stream]
            elif start_layer is not None and not isinstance(start_layer, Mapping):
                start = start_layer
            else:
                start = _default_start(spec, depth, conventions)
            used[stream] = list(range(_resolve_layer(start, depth, "start_layer"), depth))
    return used


def _default_start(spec: M.Method, depth: int, conventions: M.Conventions) -> int:
    """The family's convention for the method, else the method's own default (clamped to the depth), else 0."""
    if spec.name in conventions.start_layer:
        return conventions.start_layer[spec.name]
    if spec.default_start_layer is not None:
        return max(spec.default_start_layer, -depth)
    return 0


def _check_recorded(tape: Tape, depths: dict[str, int], adapter: Adapter) -> None:
    name = type(adapter.module).__name__
    for stream, depth in depths.items():
        recorded = len(tape.attention_of(stream))
        if recorded != depth:
            raise AttentionNotCapturedError(
                f"{name} recorded {recorded} attention maps for the {depth} blocks of its {stream!r} stream: its "
                "attention probabilities were not captured (fused/SDPA attention, or a model not built from "
                "relevance.layers). Convert models with relevance.models (e.g. relevance.models.vit.from_timm).")
        if stream not in tape.spaces or not tape.spaces[stream].readouts:
            raise AttentionNotCapturedError(f"{name} recorded no token space or pooling for its {stream!r} stream")


# -------------------------------------------------------------------------------------- backward passes
def _columns(space: TokenSpace) -> Tensor:
    """(B, N) the tokens a map is made of: the patch tokens of an image, the valid tokens of a text."""
    columns = space.valid.clone()
    columns[:, :space.num_prefix_tokens] = False
    return columns


def _input_site(tape: Tape, stream: str, spec: M.Method, conventions: M.Conventions) -> Tensor:
    sites = tape.inputs.get(stream, {})
    if not sites:
        raise AttentionNotCapturedError(f"the {stream!r} stream marked no input site for input-level relevance")
    name = conventions.input_site.get(spec.name) or next(iter(sites))
    if name not in sites:
        raise KeyError(f"the {stream!r} stream has no input site {name!r} (it has {', '.join(sites)})")
    return sites[name]


def _grad(outputs: Tensor, wanted: list[Tensor], seed: Tensor, retain: bool) -> list[Tensor]:
    results = torch.autograd.grad(outputs, wanted, seed, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(w) if r is None else r for w, r in zip(wanted, results)]


def _layer_output(adapter: Adapter, batch: Batch, output: Tensor) -> LayerOutput:
    """``(stream, block, tokens) -> output`` recomputed from a block's output tokens by the adapter, with no tape
    current (the model's layers then compute plain tensors and record nothing)."""

    def compute(stream: str, block: int, tokens: Tensor) -> Tensor:
        with suspended():
            return adapter.output_from_layer(stream, block, tokens, batch, output.detach())

    return compute


def _layer_gradients(tape: Tape, stream: str, used: list[int], target: Target,
                     layer_output: LayerOutput) -> list[Tensor]:
    """Per block ``b`` used: ``d score(output from b's tokens) / d A_b`` (B, H, N, N), one backward pass each (only
    the part of the graph between ``A_b`` and ``b``'s output is traversed)."""
    outputs = tape.block_inputs.get(stream, [])
    if len(outputs) <= max(used, default=-1) + 1:
        raise AttentionNotCapturedError(f"the {stream!r} stream did not record its blocks' outputs "
                                        "(record_block_input before every block and after the last)")
    gradients = []
    for block in used:
        scores = target.score(layer_output(stream, block, outputs[block + 1]))
        attention = tape.attention[AttentionKey(stream, block)]
        (gradient,) = torch.autograd.grad(scores.sum(), attention, retain_graph=True, allow_unused=True)
        gradients.append(torch.zeros_like(attention) if gradient is None else gradient)
    return gradients


def _backward_passes(spec: M.Method, tape: Tape, output: Tensor, target: Target, blocks: dict[str, list[int]],
                     options: M.Options, conventions: M.Conventions,
                     layer_output: LayerOutput | None = None) -> dict[str, M.StreamRecord]:
    streams = list(blocks)
    attention = {s: [tape.attention[AttentionKey(s, b)] for b in blocks[s]] for s in streams}
    flat = [a for s in streams for a in attention[s]]
    seed = target.seed(output).to(output.dtype)
    gradients = relevance = inputs = layer_gradients = None
    if spec.needs_layer_gradients:
        tape.mode = Mode.GRADIENT
        layer_gradients = {s: [g.detach() for g in _layer_gradients(tape, s, blocks[s], target, layer_output)]
                           for s in streams}
    if spec.needs_gradients:
        tape.mode = Mode.GRADIENT
        gradients = _grad(output, flat, seed, retain=spec.needs_attention_relevance or spec.needs_input_relevance)
    if spec.needs_attention_relevance:
        tape.mode = Mode.RELEVANCE
        relevance = _grad(output, flat, seed, retain=False)
    elif spec.needs_input_relevance:
        tape.mode = Mode.RELEVANCE
        sites = [_input_site(tape, s, spec, conventions) for s in streams]
        propagated = _grad(output, sites, seed, retain=False)
        gradient_form = spec.rules.propagates == "gradient"
        inputs = [site.detach() * p if gradient_form else p for site, p in zip(sites, propagated)]
    records, offset = {}, 0
    for index, stream in enumerate(streams):
        count = len(attention[stream])
        space = tape.space(stream)

        def part(values: list[Tensor] | None) -> list[Tensor] | None:
            return None if values is None else values[offset:offset + count]

        records[stream] = M.StreamRecord(
            attention=[a.detach() for a in attention[stream]], readout=space.readout.detach(),
            valid=space.valid, columns=_columns(space), options=options, gradients=part(gradients),
            attention_relevance=part(relevance), input_relevance=None if inputs is None else inputs[index],
            layer_gradients=None if layer_gradients is None else layer_gradients[stream])
        offset += count
    return records


def _stream_map(spec: M.Method, space: TokenSpace, batch: Batch, stream: str, values: Tensor) -> ImageMap | TextMap:
    if space.modality == "image":
        if values.dim() == 2:  # a readout row over the tokens: the patch tokens, on the grid
            height, width = space.grid_size
            values = values[:, space.num_prefix_tokens:].reshape(values.shape[0], height, width)
        return ImageMap(values=values, inputs=batch.streams[stream], signed=spec.signed)
    values = values * space.valid.to(values.dtype)  # exactly zero on padding
    return TextMap(values=values, inputs=batch.streams[stream], signed=spec.signed)


# ---------------------------------------------------------------------------------------- conservation
def relevance_per_block(model: Any, inputs: Any, target: TargetLike = None,
                        method: str = "transformer_attribution", stream: str | None = None,
                        texts: Any = None) -> Tensor:
    """Total relevance entering each block of a stream and leaving its last one, per sample: (B, L + 1).

    Starting from the one-hot of the target logit, the CVPR 2021 rules conserve relevance, so every column is
    about 1 (spec §1.6, §8.5); the LRP baselines' rules do not. For the Gradient x Input rule sets (``attnlrp``,
    ``cp_lrp``) the relevance of a block input ``x`` is ``x * g`` and the totals are about the target logit.
    ``method`` names the rule set to check; ``stream`` the stream (default: the model's first).
    """
    adapter = adapter_for(model)
    spec = M.get_method(method)
    if spec.rules is None:
        raise ValueError(f"method {spec.name!r} propagates no relevance")
    depths = adapter.depths()
    stream = stream or next(iter(depths))
    batch, target = adapter.prepare(inputs, texts=texts, target=target)
    with recording(spec.rules) as tape:
        try:
            with torch.enable_grad():
                output = adapter.forward(batch)
                _check_recorded(tape, depths, adapter)
                bound = as_target(target, adapter.info.output).bind(output.detach(), adapter.info.class_names)
                tape.mode = Mode.RELEVANCE
                block_inputs = tape.block_inputs[stream]
                results = _grad(output, block_inputs, bound.seed(output).to(output.dtype), retain=False)
                if spec.rules.propagates == "gradient":
                    results = [x.detach() * r for x, r in zip(block_inputs, results)]
        finally:
            tape.clear()
    return torch.stack([r.sum(dim=tuple(range(1, r.dim()))) for r in results], dim=1).detach()
