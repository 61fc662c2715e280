"""LRP-aware tensor operations: the only place where a model's forward pass meets the rules.

Each function here computes an ordinary tensor operation. Without a current tape (plain inference and
training) it is the plain PyTorch call. While :func:`relevance.tape.recording` holds a tape with a rule set,
the operation becomes a :class:`_RuleFunction` node whose backward pass is

* the ordinary vector-Jacobian product when ``tape.mode is Mode.GRADIENT``, and
* the layer's LRP rule (:mod:`relevance.rules`) when ``tape.mode is Mode.RELEVANCE``.

So ``torch.autograd.grad(logits, tensors, one_hot)`` returns gradients or relevance over the same graph, and
structural operations (reshape, permute, split, concatenation, indexing) need no rule: their backward pass
moves relevance exactly as the spec's relprop does. Fan-out is summed, as the Clone rule says.

Which rule applies is configuration (the tape's :class:`~relevance.rules.RuleSet`); model code never chooses.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from relevance import rules as R
from relevance.tape import Mode, Tape, TokenLayout, current_tape


def rewriting_tape() -> Tape | None:
    """The current tape when operations must build rule nodes (a tape with a rule set), else ``None``."""
    tape = current_tape()
    return tape if tape is not None and tape.rules is not None else None


class _Operation:
    """One kind of operation: its forward, its gradient, and its relevance rule.

    ``inputs`` are the tensors given to :meth:`forward` (``None`` stands for an absent optional tensor).
    An operation with ``keeps_output`` also gets its forward output in ``relevance_with_output``.
    """

    keeps_output = False

    def forward(self, *inputs: Tensor | None) -> Tensor:
        raise NotImplementedError

    def gradient(self, inputs: Sequence[Tensor | None], grad: Tensor) -> tuple[Tensor | None, ...]:
        """Default: recompute the forward on a detached first input and take its vector-Jacobian product."""
        with torch.enable_grad():
            first = inputs[0].detach().requires_grad_(True)
            output = self.forward(first, *inputs[1:])
            (grad_first,) = torch.autograd.grad(output, first, grad)
        return (grad_first,) + (None,) * (len(inputs) - 1)

    def relevance(self, inputs: Sequence[Tensor | None], relevance: Tensor,
                  rules: R.RuleSet) -> tuple[Tensor | None, ...]:
        """Default: the identity rule (LayerNorm, GELU, softmax, scaling; spec §1.3)."""
        return (relevance,) + (None,) * (len(inputs) - 1)


class _RuleFunction(torch.autograd.Function):
    """Autograd node whose backward pass is the gradient or the LRP rule, chosen by the tape's mode."""

    @staticmethod
    def forward(ctx, operation: _Operation, tape: Tape, *inputs: Tensor | None) -> Tensor:
        ctx.operation, ctx.tape = operation, tape
        output = operation.forward(*inputs)
        ctx.save_for_backward(*inputs, output if operation.keeps_output else None)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        *inputs, output = ctx.saved_tensors
        if ctx.tape.mode is Mode.RELEVANCE:
            operation = ctx.operation
            results = (operation.relevance_with_output(inputs, output, grad, ctx.tape.rules)
                       if operation.keeps_output else operation.relevance(inputs, grad, ctx.tape.rules))
        else:
            results = ctx.operation.gradient(inputs, grad)
        return (None, None) + tuple(results)


def _apply(operation: _Operation, tape: Tape, *inputs: Tensor | None) -> Tensor:
    return _RuleFunction.apply(operation, tape, *inputs)


# ------------------------------------------------------------------------------------------- linear layers
class _Linear(_Operation):
    keeps_output = True  # the rule reuses x @ W^T

    def forward(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def gradient(self, inputs, grad):
        return grad @ inputs[1], None, None

    def relevance_with_output(self, inputs, output, relevance, rules):
        x, weight, bias = inputs
        product = output if bias is None else output - bias
        return rules.linear(x, weight, relevance, product), None, None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``; relevance by the rule set's linear rule (z+ for the paper)."""
    tape = rewriting_tape()
    return F.linear(x, weight, bias) if tape is None else _apply(_Linear(), tape, x, weight, bias)


class _InputConv(_Operation):
    def __init__(self, stride: tuple[int, int], padding: tuple[int, int]):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias):
        return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)

    def gradient(self, inputs, grad):
        x, weight, _ = inputs
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride=self.stride, padding=self.padding)
        return grad_x, None, None

    def relevance(self, inputs, relevance, rules):
        x, weight, _ = inputs
        return rules.input_conv(x, weight, relevance, self.stride, self.padding), None, None


def input_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                 padding: tuple[int, int] = (0, 0)) -> Tensor:
    """The convolution applied to pixels (patch embedding); relevance by the z^B rule."""
    tape = rewriting_tape()
    if tape is None:
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return _apply(_InputConv(tuple(stride), tuple(padding)), tape, x, weight, bias)


# -------------------------------------------------------------------------------- products and additions
class _Product(_Operation):
    def forward(self, u, v):
        return u @ v

    def gradient(self, inputs, grad):
        u, v = inputs
        return grad @ v.transpose(-2, -1), u.transpose(-2, -1) @ grad

    def relevance(self, inputs, relevance, rules):
        return rules.product(*inputs, relevance)


def matmul(u: Tensor, v: Tensor) -> Tensor:
    """``u @ v`` of two activations (Q K^T, A V); relevance split between both operands."""
    tape = rewriting_tape()
    return u @ v if tape is None else _apply(_Product(), tape, u, v)


class _Add(_Operation):
    def forward(self, a, b):
        return a + b

    def gradient(self, inputs, grad):
        a, b = inputs
        return R.reduce_to_shape(grad, a.shape), R.reduce_to_shape(grad, b.shape)

    def relevance(self, inputs, relevance, rules):
        return rules.add(*inputs, relevance)


def add(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` (residual connections, position embeddings, averaged heads); relevance by the add rule."""
    tape = rewriting_tape()
    return a + b if tape is None else _apply(_Add(), tape, a, b)


# ----------------------------------------------------------------------------- relevance-preserving maps
class _Elementwise(_Operation):
    """An operation whose relevance rule is the identity (LayerNorm, activations, softmax)."""

    def __init__(self, function: Callable[..., Tensor]):
        self.function = function

    def forward(self, x, *parameters):
        return self.function(x, *parameters)


def identity_rule(function: Callable[..., Tensor], x: Tensor, *parameters: Tensor | None) -> Tensor:
    """``function(x, *parameters)`` whose relevance passes through unchanged (spec §1.3).

    Used for LayerNorm, GELU and the softmax; ``parameters`` are tensors the function needs (weights).
    """
    tape = rewriting_tape()
    return function(x, *parameters) if tape is None else _apply(_Elementwise(function), tape, x, *parameters)


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """LayerNorm over the last axis; identity rule."""
    shape = (x.shape[-1],)
    return identity_rule(lambda t, w, b: F.layer_norm(t, shape, w, b, eps), x, weight, bias)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax; identity rule (the relevance of the scores equals that of the probabilities)."""
    return identity_rule(lambda t: t.softmax(dim), x)


class _Scale(_Operation):
    def forward(self, x, factor):
        return x * factor

    def gradient(self, inputs, grad):
        x, factor = inputs
        return R.reduce_to_shape(grad * factor, x.shape), None


def scale(x: Tensor, factor: float | Tensor) -> Tensor:
    """``x * factor`` for a constant or parameter ``factor`` (attention scale, LayerScale); identity rule."""
    tape = rewriting_tape()
    if tape is None:
        return x * factor
    factor = factor if isinstance(factor, Tensor) else torch.tensor(factor, dtype=x.dtype, device=x.device)
    return _apply(_Scale(), tape, x, factor)


# ------------------------------------------------------------------------------------ fan-out and pooling
class _Fanout(_Operation):
    def forward(self, x):
        return x.clone()

    def gradient(self, inputs, grad):
        return (grad,)

    def relevance(self, inputs, relevance, rules):
        return (R.fanout_rule(inputs[0], relevance),)


def fanout(x: Tensor) -> Tensor:
    """Mark a tensor that several branches use (a residual split); the Clone rule sums their relevance."""
    tape = rewriting_tape()
    return x if tape is None else _apply(_Fanout(), tape, x)


class _SelectToken(_Operation):
    def __init__(self, index: int):
        self.index = index

    def forward(self, x):
        return x[:, self.index]

    def gradient(self, inputs, grad):
        result = torch.zeros_like(inputs[0])
        result[:, self.index] = grad
        return (result,)

    def relevance(self, inputs, relevance, rules):
        return (R.selection_rule(inputs[0], relevance, self.index),)


def select_token(x: Tensor, index: int) -> Tensor:
    """``x[:, index]`` of tokens (B, N, D) -> (B, D): class-token pooling, z-rule."""
    tape = rewriting_tape()
    return x[:, index] if tape is None else _apply(_SelectToken(index), tape, x)


class _TokenMean(_Operation):
    def __init__(self, start: int):
        self.start = start

    def forward(self, x):
        return x[:, self.start:].mean(dim=1)

    def gradient(self, inputs, grad):
        x = inputs[0]
        result = torch.zeros_like(x)
        result[:, self.start:] = (grad / (x.shape[1] - self.start)).unsqueeze(1)
        return (result,)

    def relevance(self, inputs, relevance, rules):
        return (R.token_mean_rule(inputs[0], relevance, self.start),)


def mean_tokens(x: Tensor, start: int = 0) -> Tensor:
    """Average of tokens ``start:`` (B, N, D) -> (B, D): global average pooling, z-rule."""
    tape = rewriting_tape()
    return x[:, start:].mean(dim=1) if tape is None else _apply(_TokenMean(start), tape, x)


# --------------------------------------------------------------------------------------------- recording
def record_attention(probabilities: Tensor) -> None:
    """Record a block's attention probabilities (B, H, N, N) on the current tape, if any."""
    tape = current_tape()
    if tape is not None:
        tape.attention.append(probabilities)


def record_block_input(x: Tensor) -> None:
    """Record the tokens entering a block (and, last, those leaving the final block) on the current tape."""
    tape = current_tape()
    if tape is not None:
        tape.block_inputs.append(x)


def record_layout(num_prefix_tokens: int, grid_size: tuple[int, int], readout: Tensor) -> None:
    """Record the token layout of the forward pass (see :class:`relevance.tape.TokenLayout`)."""
    tape = current_tape()
    if tape is not None:
        tape.layout = TokenLayout(num_prefix_tokens, tuple(grid_size), readout)


def explaining() -> bool:
    """Whether an explanation is recording (layers then skip dropout, so maps are deterministic)."""
    return current_tape() is not None
