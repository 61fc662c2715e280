"""Model adapters: the one object per model family that the engine talks to.

An adapter owns what differs between families: turning raw inputs into a batch (images through the model's data
config, texts through its tokenizer, image-text pairs), running the forward pass, and the model's metadata
(:class:`ModelInfo`: class names, multi-label, modality, data config, tokenizer, the family's reference
conventions). :func:`relevance.explain` asks the adapter; it never reads attributes off a model, and no method
tests a model's type.

A model built from :mod:`relevance.layers` makes its adapter known by defining ``relevance_adapter()``; an
:class:`Adapter` may also be passed to :func:`relevance.explain` directly.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from relevance.methods import Conventions

#: What a model outputs: class logits (B, C), one score per image-text pair (B,), or embeddings.
OUTPUT_KINDS = ("class_logits", "pair_logits", "embeddings")


@dataclass
class ModelInfo:
    """A model's metadata, set when the model is built or converted (static; it holds no explanation state).

    Attributes
    ----------
    name:
        Registry or hub name (``"shapes-vit"``, a timm name), or ``None``.
    output:
        One of :data:`OUTPUT_KINDS`.
    class_names:
        Names of the output classes, or ``None``.
    multi_label:
        One sigmoid per class (trained with binary cross-entropy) rather than one softmax.
    conventions:
        The family's reference conventions (:class:`relevance.methods.Conventions`).
    data_config:
        How to prepare images (:class:`relevance.images.DataConfig`), for image models.
    tokenizer:
        The tokenizer, for text models.
    domain:
        What the model was trained on, when it is narrow (e.g. ``"the procedural shapes world"``).
    in_domain:
        ``image or text -> bool``: whether an input looks like the training domain; inputs outside it get a
        warning (see :meth:`Adapter.domain_warnings`).
    """

    name: str | None = None
    output: str = "class_logits"
    class_names: list[str] | None = None
    multi_label: bool = False
    conventions: Conventions = field(default_factory=Conventions)
    data_config: Any = None
    tokenizer: Any = None
    domain: str | None = None
    in_domain: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")


@dataclass
class ImageInputs:
    """The images of a batch as the model saw them, and as they were given.

    ``pixels`` (B, C, H, W) is the model input; ``originals`` (uint8 RGB) and ``geometries``
    (:class:`relevance.images.CropGeometry`) are known when raw images were passed.
    """

    pixels: Tensor
    originals: list[np.ndarray] | None = None
    geometries: list[Any] | None = None


@dataclass
class TextInputs:
    """The texts of a batch: ``input_ids`` (B, L), ``valid`` (B, L) bool (False on padding), per-sample token
    strings for display, ``special`` (B, L) bool ([CLS], [SEP], ...), and per-token word indices (``None`` for
    special tokens and padding)."""

    input_ids: Tensor
    valid: Tensor
    tokens: list[list[str]]
    special: Tensor
    word_ids: list[list[int | None]]
    texts: list[str] | None = None


@dataclass
class Batch:
    """One prepared batch of B samples.

    Attributes
    ----------
    inputs:
        The forward pass's keyword arguments (tensors on the model's device).
    size:
        B.
    streams:
        What each token stream came from, by stream name: :class:`ImageInputs` or :class:`TextInputs` (e.g.
        ``{"image": ..., "text": ...}`` for image-text pairs, ``{"text": ..., "text_pair": ...}`` for text pairs).
    extras:
        Anything else the adapter wants to keep with the batch (e.g. zero-shot prompts). Keys without a leading
        underscore are reported to the user (:attr:`relevance.Explanation.extras`); ``_``-keys stay private
        (e.g. the embeddings an image-text adapter keeps for :meth:`Adapter.output_from_layer`).
    """

    inputs: dict[str, Tensor]
    size: int
    streams: dict[str, ImageInputs | TextInputs] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> ImageInputs | None:
        """The ``"image"`` stream's inputs, if any."""
        value = self.streams.get("image")
        return value if isinstance(value, ImageInputs) else None

    @property
    def texts(self) -> TextInputs | None:
        """The ``"text"`` stream's inputs, if any."""
        value = self.streams.get("text")
        return value if isinstance(value, TextInputs) else None


class Adapter(abc.ABC):
    """What the engine needs from a model family (see the module docstring)."""

    def __init__(self, module: nn.Module, info: ModelInfo):
        self.module = module
        self.info = info

    @abc.abstractmethod
    def depths(self) -> dict[str, int]:
        """Number of self-attention blocks per token stream, e.g. ``{"image": 12}``."""

    @abc.abstractmethod
    def prepare(self, inputs: Any, *, texts: Any = None, target: Any = None) -> tuple[Batch, Any]:
        """Turn raw or preprocessed inputs into a :class:`Batch` on the model's device and dtype; returns it with
        the target (which a family may translate, e.g. zero-shot prompts into pairs)."""

    @abc.abstractmethod
    def forward(self, batch: Batch) -> Tensor:
        """Run the model on a prepared batch and return its output (see :attr:`ModelInfo.output`)."""

    def domain_warnings(self, batch: Batch) -> list[str]:
        """Warnings for inputs outside the model's training domain (default: none)."""
        return []

    def output_from_layer(self, stream: str, layer: int, tokens: Tensor, batch: Batch, output: Tensor) -> Tensor:
        """The model output computed from the tokens leaving block ``layer`` of ``stream`` (B, N, D), as if they
        were the last block's, with everything else (the other tower's embedding, say) taken from the full forward
        pass's ``output``. Methods that explain each layer's own prediction (LeGrad) need it; families that support
        them override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot compute its output from intermediate layers")

    # ------------------------------------------------- hooks of the gradient and perturbation methods
    def select_rows(self, batch: Batch, rows: Tensor) -> Batch:
        """The batch made of some of ``batch``'s samples, repeats allowed: the gradient and perturbation methods
        (:mod:`relevance.attribution`) evaluate each sample many times.

        Parameters
        ----------
        batch:
            A prepared batch of B samples.
        rows:
            (B',) long: the sample of each row of the new batch.

        Returns
        -------
        Batch
            B' samples. The default indexes every tensor of ``batch.inputs`` and of the streams whose first dimension
            is B (:func:`select_rows`); a family whose inputs are not per sample (a shared set of prompts, say)
            overrides it.
        """
        return select_rows(batch, rows)

    def with_token_ids(self, batch: Batch, stream: str, input_ids: Tensor) -> Batch:
        """The batch with other token ids in one text stream, for embedding-space baselines ([PAD] or [MASK]
        embeddings) of the gradient and perturbation methods.

        Parameters
        ----------
        batch:
            A prepared batch.
        stream:
            A text stream of the batch.
        input_ids:
            (B, L) the new ids, shaped like the stream's.

        Returns
        -------
        Batch
            A copy whose attention mask, token types and other streams are unchanged. The default replaces the one
            tensor of ``batch.inputs`` that holds the stream's ids (:attr:`TextInputs.input_ids`, by identity, else
            by value); a family whose inputs hold them more than once overrides it.
        """
        ids = batch.streams[stream].input_ids
        keys = [k for k, v in batch.inputs.items() if v is ids]
        if not keys:
            keys = [k for k, v in batch.inputs.items()
                    if isinstance(v, Tensor) and v.shape == ids.shape and v.dtype == ids.dtype and torch.equal(v, ids)]
        if len(keys) != 1:
            raise ValueError(f"cannot tell which model input holds the token ids of stream {stream!r} "
                             f"(candidates: {keys or 'none'}); {type(self).__name__} must override with_token_ids")
        inputs = dict(batch.inputs)
        inputs[keys[0]] = input_ids
        streams = dict(batch.streams)
        streams[stream] = dataclasses.replace(batch.streams[stream], input_ids=input_ids)
        return dataclasses.replace(batch, inputs=inputs, streams=streams)


def select_rows(batch: Batch, rows: Tensor) -> Batch:
    """The default of :meth:`Adapter.select_rows`.

    Parameters
    ----------
    batch:
        A prepared batch of B samples.
    rows:
        (B',) long: the sample of each new row.

    Returns
    -------
    Batch
        B' samples: each tensor (inputs and streams) whose first dimension is B is indexed, lists of B per-sample
        items (originals, token strings) are picked, everything else is shared.
    """
    rows = rows.to(torch.long)
    picked = rows.tolist()

    def pick(value: Any) -> Any:
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch.size:
            return value[rows.to(value.device)]
        if isinstance(value, list) and len(value) == batch.size:
            return [value[i] for i in picked]
        return value

    streams = {name: dataclasses.replace(inputs, **{f.name: pick(getattr(inputs, f.name))
                                                   for f in dataclasses.fields(inputs)})
               for name, inputs in batch.streams.items()}
    return Batch(inputs={k: pick(v) for k, v in batch.inputs.items()}, size=len(picked), streams=streams,
                 extras=dict(batch.extras))


def adapter_for(model: Any) -> Adapter:
    """The adapter of ``model``: the model itself when it is an :class:`Adapter`, else ``model.relevance_adapter()``;
    a clear error for anything else (a timm or Hugging Face model that was not converted)."""
    if isinstance(model, Adapter):
        return model
    make = getattr(model, "relevance_adapter", None)
    if callable(make):
        adapter = make()
        if isinstance(adapter, Adapter):
            return adapter
    raise TypeError(
        f"{type(model).__name__} is not an LRP-aware model: convert it first, e.g. "
        "relevance.models.vit.from_timm(timm_model), or create one with relevance.models.create(name)")


def check_finite(tensor: Tensor, what: str) -> None:
    """A clear error for NaN or infinite values, which would otherwise give a NaN map."""
    if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
        bad = int((~tensor.isfinite()).sum())
        raise ValueError(f"{what} hold {bad} NaN or infinite value(s); explanations need finite inputs")


def as_list(items: Any) -> Sequence[Any]:
    """``items`` as a list (a single item becomes a list of one)."""
    return list(items) if isinstance(items, (list, tuple)) else [items]
