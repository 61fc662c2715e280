"""The tape: everything one explanation records, kept off the model.

A :class:`Tape` lives for one call of :func:`relevance.explain`. It is made current with :func:`recording`
(a context variable, so every thread and every call has its own) and the LRP-aware operations write to it while
the model runs forward:

* **attention sites**: each attention probability tensor (B, H, Nq, Nk) under an :class:`AttentionKey`
  (stream, layer, self or cross, query space, key space), so two towers or a cross-attention never collide;
* **token spaces**: per token stream, how its tokens map to the input (:class:`TokenSpace`: modality, patch
  grid, prefix tokens, per-sample validity) and, recorded by the pooling operations themselves, the per-sample
  **readout** (B, N): the weights of the tokens whose final state feeds the output;
* **input sites**: the tensors where input-level relevance is read (pixels, word embeddings, the encoder input);
* **block inputs** per stream, for conservation checks;
* **query and key vectors** per attention site (:class:`QueryKey`), only when the caller asks for them
  (``recording(query_key=True)``, for the neuron view of :mod:`relevance.views`): explanations record none and
  pay nothing.

A tape may also carry **substitutes**: values that replace an input site during the forward pass (the gradient and
perturbation methods of :mod:`relevance.attribution` evaluate the model on values of one site, e.g. noisy pixels or
interpolated word embeddings, with everything else computed from the batch as usual).

The model itself keeps nothing, so two threads can explain with one model at once, and no hooks are ever
registered on modules.

While a tape with a :class:`~relevance.rules.RuleSet` is current, the layers build their graph from rule
operations (:mod:`relevance.ops`) whose backward pass computes either the ordinary gradient or the rule set's
propagation, depending on :attr:`Tape.mode`. One forward pass therefore serves both the gradient ``dy_t/dA`` and
the relevance ``R_A`` that the CVPR 2021 method multiplies.
"""

from __future__ import annotations

import contextlib
import enum
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor

from relevance.rule_sets import RuleSet


class Mode(enum.Enum):
    """What the backward pass of the rule operations computes."""

    GRADIENT = "gradient"
    RELEVANCE = "relevance"


@dataclass(frozen=True, order=True)
class AttentionKey:
    """Where an attention map was recorded.

    Attributes
    ----------
    stream:
        The token stream whose blocks the attention belongs to (``"image"``, ``"text"``).
    layer:
        Block index within the stream, 0 = closest to the input.
    kind:
        ``"self"`` or ``"cross"``.
    query, key:
        Token spaces of the rows and the columns (both ``stream`` for self-attention).
    """

    stream: str
    layer: int
    kind: str = "self"
    query: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if not self.query:
            object.__setattr__(self, "query", self.stream)
        if not self.key:
            object.__setattr__(self, "key", self.stream)


@dataclass
class TokenSpace:
    """How one token stream maps to the input, recorded by the model during its forward pass.

    Attributes
    ----------
    name:
        The stream's name (``"image"``, ``"text"``).
    modality:
        ``"image"`` or ``"text"``.
    num_tokens:
        N, the sequence length (padding included).
    valid:
        (B, N) bool: ``False`` on padding.
    grid_size:
        Image streams: (h, w) of the patch grid; patch ``k`` is grid cell ``divmod(k, w)``, row-major.
    num_prefix_tokens:
        Image streams: tokens before the patch tokens (class, distillation, register tokens).
    readouts:
        Rows (B, N) recorded by the pooling operations (:func:`relevance.ops.select_token`,
        :func:`relevance.ops.mean_tokens`); :attr:`readout` is their mean.
    """

    name: str
    modality: str
    num_tokens: int
    valid: Tensor
    grid_size: tuple[int, int] | None = None
    num_prefix_tokens: int = 0
    readouts: list[Tensor] = field(default_factory=list)

    @property
    def readout(self) -> Tensor:
        """(B, N) weights of the tokens whose final state feeds the output: the [CLS] row for class-token pooling,
        1/2 on class and distillation tokens for DeiT-distilled, uniform over valid tokens for average pooling, the
        end-of-text token (per sample) for CLIP's text tower. Maps that read "the [CLS] row" (spec §2.1 step 8)
        read ``readout @ matrix``."""
        if not self.readouts:
            raise RuntimeError(f"the {self.name!r} stream recorded no pooling operation, so it has no readout")
        return torch.stack(self.readouts).mean(dim=0)


@dataclass(frozen=True)
class QueryKey:
    """The query and key vectors whose scaled dot products are an attention site's scores.

    Attributes
    ----------
    queries, keys:
        (B, H, Nq, d) and (B, H, Nk, d), after any query/key normalisation, detached.
    scale:
        The factor of the scores: ``scores = scale * queries @ keys^T`` (before masking and softmax).
    """

    queries: Tensor
    keys: Tensor
    scale: float


@dataclass(eq=False)
class Tape:
    """Per-call record of one explained forward pass (see the module docstring)."""

    rules: RuleSet | None = None
    mode: Mode = Mode.GRADIENT
    attention: dict[AttentionKey, Tensor] = field(default_factory=dict)
    spaces: dict[str, TokenSpace] = field(default_factory=dict)
    inputs: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    block_inputs: dict[str, list[Tensor]] = field(default_factory=dict)
    keep_query_key: bool = False
    query_key: dict[AttentionKey, QueryKey] = field(default_factory=dict)
    substitutes: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    substituted: set[tuple[str, str]] = field(default_factory=set)

    def attention_of(self, stream: str, kind: str = "self") -> list[Tensor]:
        """The stream's attention maps of one kind, ordered by layer."""
        keys = sorted(k for k in self.attention if k.stream == stream and k.kind == kind)
        return [self.attention[k] for k in keys]

    def space(self, name: str) -> TokenSpace:
        if name not in self.spaces:
            raise KeyError(f"no token space {name!r} was recorded (recorded: {sorted(self.spaces)})")
        return self.spaces[name]

    def clear(self) -> None:
        """Drop every recorded tensor (breaks the reference cycle tape -> graph -> tape)."""
        self.attention.clear()
        self.spaces.clear()
        self.inputs.clear()
        self.block_inputs.clear()
        self.query_key.clear()
        self.substitutes.clear()
        self.substituted.clear()


_CURRENT: ContextVar[Tape | None] = ContextVar("relevance_tape", default=None)


def current_tape() -> Tape | None:
    """The tape of the explanation running in this thread/context, or ``None`` (plain inference)."""
    return _CURRENT.get()


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """No tape is current for the duration of the block, so the model's layers compute plain tensors and record
    nothing; the tape in force before is restored on exit, even on error. Used while an adapter recomputes an output
    from an intermediate layer (:meth:`relevance.adapter.Adapter.output_from_layer`, for LeGrad)."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def recording(rules: RuleSet | None = None, *, query_key: bool = False) -> Iterator[Tape]:
    """Make a fresh :class:`Tape` current for the duration of the block; always restored, even on error.

    ``query_key=True`` also keeps the query and key vectors of every attention site (:class:`QueryKey`), which the
    neuron view needs; by default they are not kept."""
    tape = Tape(rules=rules, keep_query_key=query_key)
    token = _CURRENT.set(tape)
    try:
        yield tape
    finally:
        _CURRENT.reset(token)
        tape.mode = Mode.GRADIENT
