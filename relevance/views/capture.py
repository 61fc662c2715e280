"""One forward pass's attention, kept for drawing: :func:`capture` and :class:`TokenAttention`.

The views (:mod:`relevance.views`) and the attention flows (:mod:`relevance.flows`) draw what a model's
forward pass recorded on a :mod:`relevance.tape`: every self-attention map of every token stream, the stream's
token space (modality, patch grid, prefix tokens, padding, readout) and, on request, the query and key vectors
(:func:`relevance.ops.record_query_key`) and the gradients of a target score with respect to the attention.
Nothing here knows a model family: the adapter prepares the inputs and runs the model, and the tape says what
the tokens are. One sample of one stream, with its padding removed, is a :class:`TokenAttention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from relevance.adapter import Adapter, Batch, ImageInputs, ModelInfo, TextInputs, adapter_for, check_finite
from relevance.tape import AttentionKey, Tape, TokenSpace, recording
from relevance.targets import TargetLike, as_target

__all__ = ["AttentionCapture", "QueryKeyNotRecordedError", "TokenAttention", "capture"]


class QueryKeyNotRecordedError(RuntimeError):
    """The model recorded no query/key vectors (its attention does not call ``relevance.ops.record_query_key``)."""


@dataclass(frozen=True)
class TokenAttention:
    """The attention of one sample in one token stream, padding removed: what every view draws.

    Attributes
    ----------
    stream, modality:
        The stream's name (``"image"``, ``"text"``) and modality (``"image"`` or ``"text"``).
    tokens:
        (n,) display labels: word pieces for text; ``[CLS]``, prefix tokens and ``"row,col"`` patches for images.
    special:
        (n,) whether a token is special ([CLS], [SEP], prefix tokens).
    attention:
        (L, H, n, n) float32 attention probabilities, ``attention[l, h, i, j]``: how much query ``i`` attends to
        key ``j`` in head ``h`` of block ``l``.
    readout:
        (n,) the weights of the tokens whose final state feeds the output (the [CLS] one-hot), or ``None``.
    positions:
        (n,) the tokens' positions in the padded sequence.
    grid_size, num_prefix_tokens:
        Image streams: the patch grid (h, w) and the number of tokens before the patches.
    picture:
        Image streams: the model input as uint8 RGB (H, W, 3), un-normalised with the model's data config.
    queries, keys, scales:
        (L, H, n, d) query and key vectors and, per block, the factor of the scores (``None`` unless captured
        with ``query_key=True``).
    gradients:
        (L, H, n, n) gradient of the target score with respect to the attention (``None`` unless captured with
        ``gradients=True``).
    target, score:
        The explained class and its score when gradients were taken.
    model:
        The model's name, for captions.
    """

    stream: str
    modality: str
    tokens: list[str]
    special: list[bool]
    attention: np.ndarray
    readout: np.ndarray | None
    positions: np.ndarray
    grid_size: tuple[int, int] | None = None
    num_prefix_tokens: int = 0
    picture: np.ndarray | None = None
    queries: np.ndarray | None = None
    keys: np.ndarray | None = None
    scales: tuple[float, ...] | None = None
    gradients: np.ndarray | None = None
    target: int | None = None
    score: float | None = None
    model: str | None = None

    @property
    def num_layers(self) -> int:
        return int(self.attention.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.attention.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(self.attention.shape[2])

    def readout_index(self) -> int:
        """The token the output reads (the [CLS] token; the first valid token when the readout is spread)."""
        if self.readout is None or not np.any(self.readout > 0):
            return 0
        return int(np.argmax(self.readout))

    def require_query_key(self) -> None:
        """Raise :class:`QueryKeyNotRecordedError` unless the query and key vectors were captured."""
        if self.queries is None or self.keys is None:
            raise QueryKeyNotRecordedError(
                f"no query/key vectors of the {self.stream!r} stream: capture with query_key=True, and make the "
                "family's attention call relevance.ops.record_query_key(q, k, stream=..., layer=..., scale=...)")


@dataclass(frozen=True)
class AttentionCapture:
    """What :func:`capture` recorded: per stream, one :class:`TokenAttention` per sample, and the model output."""

    streams: dict[str, list[TokenAttention]]
    output: Tensor
    info: ModelInfo

    @property
    def size(self) -> int:
        return int(self.output.shape[0])

    def sample(self, index: int = 0, stream: str | None = None) -> TokenAttention:
        """Sample ``index`` of ``stream`` (default: the model's first stream)."""
        name = stream if stream is not None else next(iter(self.streams))
        if name not in self.streams:
            raise KeyError(f"no stream {name!r}; streams: {', '.join(self.streams)}")
        samples = self.streams[name]
        if not -len(samples) <= index < len(samples):
            raise IndexError(f"sample {index} out of range for a batch of {len(samples)}")
        return samples[index]


def capture(model: Any, inputs: Any = None, *, texts: Any = None, query_key: bool = False,
            gradients: bool = False, target: TargetLike = None) -> AttentionCapture:
    """Run the model once and keep what the attention views draw.

    Parameters
    ----------
    model:
        An LRP-aware model or its :class:`~relevance.adapter.Adapter` (see :func:`relevance.explain`).
    inputs, texts:
        What the model family takes (images, texts, ...), as for :func:`relevance.explain`.
    query_key:
        Also keep the query and key vectors (the neuron view needs them; the family's attention must call
        :func:`relevance.ops.record_query_key`).
    gradients:
        Also keep the gradient of the target score with respect to every attention map (for gradient-weighted
        attention flows, Chefer et al. ICCV 2021).
    target:
        What the gradients explain (as for :func:`relevance.explain`; default: each sample's top class).

    Returns
    -------
    AttentionCapture
        Per stream and sample, a :class:`TokenAttention`.
    """
    adapter = adapter_for(model)
    if gradients and torch.is_inference_mode_enabled():
        raise RuntimeError("gradients need autograd: call capture() outside torch.inference_mode()")
    depths = adapter.depths()
    batch, target = adapter.prepare(inputs, texts=texts, target=target)
    with recording(None, query_key=query_key) as tape:
        try:
            with torch.set_grad_enabled(gradients):
                output = adapter.forward(batch)
                check_finite(output.detach(), "the model's outputs")
                grads, classes, scores = {}, None, None
                if gradients:
                    bound = as_target(target, adapter.info.output).bind(output.detach(), adapter.info.class_names)
                    score = bound.score(output)
                    grads = _attention_gradients(tape, depths, score)
                    classes, scores = bound.classes, score.detach()
            streams = {stream: _stream_samples(tape, adapter, batch, stream, depth, grads.get(stream),
                                               classes, scores)
                       for stream, depth in depths.items()}
        finally:
            tape.clear()
    return AttentionCapture(streams=streams, output=output.detach(), info=adapter.info)


def _attention_gradients(tape: Tape, depths: dict[str, int], score: Tensor) -> dict[str, Tensor]:
    maps = {stream: [tape.attention[AttentionKey(stream, layer)] for layer in range(depth)]
            for stream, depth in depths.items() if len(tape.attention_of(stream)) == depth}
    flat = [a for stream in maps for a in maps[stream]]
    if not flat:
        return {}
    results = torch.autograd.grad(score.sum(), flat, allow_unused=True)
    results = [torch.zeros_like(a) if g is None else g for a, g in zip(flat, results)]
    grads, offset = {}, 0
    for stream, attention in maps.items():
        grads[stream] = torch.stack(results[offset:offset + len(attention)], dim=1).detach()  # (B, L, H, N, N)
        offset += len(attention)
    return grads


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


def _stream_samples(tape: Tape, adapter: Adapter, batch: Batch, stream: str, depth: int, grads: Tensor | None,
                    classes: Tensor | None, scores: Tensor | None) -> list[TokenAttention]:
    from relevance.explain import AttentionNotCapturedError

    maps = tape.attention_of(stream)
    if len(maps) != depth or stream not in tape.spaces:
        raise AttentionNotCapturedError(
            f"{type(adapter.module).__name__} recorded {len(maps)} attention maps for the {depth} blocks of its "
            f"{stream!r} stream (fused attention, or a model not built from relevance.layers)")
    space = tape.space(stream)
    attention = torch.stack([a.detach() for a in maps], dim=1)  # (B, L, H, N, N)
    query_key = [tape.query_key.get(AttentionKey(stream, layer)) for layer in range(depth)]
    has_query_key = all(item is not None for item in query_key)
    readout = space.readout.detach() if space.readouts else None
    source = batch.streams.get(stream)
    samples = []
    for index in range(attention.shape[0]):
        positions = torch.nonzero(space.valid[index]).flatten().cpu()
        keep = positions.to(attention.device)
        tokens, special = _labels(space, source, index, positions.tolist(), readout)
        picture = _picture(source, index, adapter.info) if space.modality == "image" else None
        queries = keys = scales = None
        if has_query_key:
            queries = _numpy(torch.stack([item.queries[index][:, keep] for item in query_key]))
            keys = _numpy(torch.stack([item.keys[index][:, keep] for item in query_key]))
            scales = tuple(item.scale for item in query_key)
        samples.append(TokenAttention(
            stream=stream, modality=space.modality, tokens=tokens, special=special,
            attention=_numpy(attention[index][:, :, keep][:, :, :, keep]),
            readout=None if readout is None else _numpy(readout[index][keep]),
            positions=positions.numpy(), grid_size=space.grid_size, num_prefix_tokens=space.num_prefix_tokens,
            picture=picture, queries=queries, keys=keys, scales=scales,
            gradients=None if grads is None else _numpy(grads[index][:, :, keep][:, :, :, keep]),
            target=None if classes is None else int(classes[index]),
            score=None if scores is None else float(scores[index]), model=adapter.info.name))
    return samples


def _labels(space: TokenSpace, source: ImageInputs | TextInputs | None, index: int, positions: list[int],
            readout: Tensor | None) -> tuple[list[str], list[bool]]:
    """Display labels and special flags of the kept tokens."""
    if isinstance(source, TextInputs):
        tokens = source.tokens[index]
        special = source.special[index]
        return ([str(tokens[p]) if p < len(tokens) else f"#{p}" for p in positions],
                [bool(special[p]) if p < len(special) else False for p in positions])
    labels, flags = [], []
    width = space.grid_size[1] if space.grid_size else None
    for p in positions:
        if p < space.num_prefix_tokens:
            reads = readout is not None and float(readout[index, p]) > 0
            labels.append("[CLS]" if p == 0 and reads else f"[P{p}]")
            flags.append(True)
        elif width:
            row, column = divmod(p - space.num_prefix_tokens, width)
            labels.append(f"{row},{column}")
            flags.append(False)
        else:
            labels.append(f"#{p}")
            flags.append(False)
    return labels, flags


def _picture(source: ImageInputs | TextInputs | None, index: int, info: ModelInfo) -> np.ndarray | None:
    """The model input of an image stream as uint8 RGB, un-normalised with the data config when known."""
    if not isinstance(source, ImageInputs):
        return None
    pixels = source.pixels[index].detach().to(device="cpu", dtype=torch.float32)
    config = info.data_config
    if config is not None and pixels.shape[0] == 3:
        mean = torch.tensor(config.mean).view(3, 1, 1)
        std = torch.tensor(config.std).view(3, 1, 1)
        image = (pixels * std + mean).clamp(0, 1)
    else:
        image = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp(min=1e-12)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
