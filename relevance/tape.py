"""The tape: everything one explanation records, kept off the model.

A :class:`Tape` lives for one call of :func:`relevance.explain`. It is made current with :func:`recording`
(a context variable, so every thread and every call has its own) and the LRP-aware layers write to it while the
model runs forward: the attention probabilities of each block, each block's input, and the token layout. The
model itself keeps nothing, so two threads can explain with one model at once, and no hooks are ever
registered on modules.

While a tape with a :class:`~relevance.rules.RuleSet` is current, the layers build their graph from rule
operations (:mod:`relevance.ops`) whose backward pass computes either the ordinary gradient or LRP relevance,
depending on :attr:`Tape.mode`. One forward pass therefore serves both the gradient ``dy_t/dA`` and the
relevance ``R_A`` that the CVPR 2021 method multiplies.
"""

from __future__ import annotations

import contextlib
import enum
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from torch import Tensor

from relevance.rules import RuleSet


class Mode(enum.Enum):
    """What the backward pass of the rule operations computes."""

    GRADIENT = "gradient"
    RELEVANCE = "relevance"


@dataclass(frozen=True)
class TokenLayout:
    """How a model's tokens map to the image, recorded by the model during its forward pass.

    Attributes
    ----------
    num_prefix_tokens:
        Tokens before the patch tokens (class, distillation and register tokens).
    grid_size:
        (h, w) of the patch grid; patch token ``k`` is grid cell ``divmod(k, w)``, row-major.
    readout:
        (N,) weights of the tokens whose final state feeds the classifier: one-hot on the class token for
        class-token pooling, 1/2 on class and distillation tokens for DeiT-distilled, uniform over patches
        for average pooling. Maps that read "the [CLS] row" (spec §2.1 step 8) read ``readout @ matrix``.
    """

    num_prefix_tokens: int
    grid_size: tuple[int, int]
    readout: Tensor


@dataclass(eq=False)
class Tape:
    """Per-call record of one explained forward pass (see the module docstring)."""

    rules: RuleSet | None = None
    mode: Mode = Mode.GRADIENT
    attention: list[Tensor] = field(default_factory=list)
    block_inputs: list[Tensor] = field(default_factory=list)
    layout: TokenLayout | None = None

    def clear(self) -> None:
        """Drop every recorded tensor (breaks the reference cycle tape -> graph -> tape)."""
        self.attention.clear()
        self.block_inputs.clear()
        self.layout = None


_CURRENT: ContextVar[Tape | None] = ContextVar("relevance_tape", default=None)


def current_tape() -> Tape | None:
    """The tape of the explanation running in this thread/context, or ``None`` (plain inference)."""
    return _CURRENT.get()


@contextlib.contextmanager
def recording(rules: RuleSet | None = None) -> Iterator[Tape]:
    """Make a fresh :class:`Tape` current for the duration of the block; always restored, even on error."""
    tape = Tape(rules=rules)
    token = _CURRENT.set(tape)
    try:
        yield tape
    finally:
        _CURRENT.reset(token)
        tape.mode = Mode.GRADIENT
