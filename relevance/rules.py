"""Layer-wise relevance propagation rules, as pure functions of a layer's inputs and its output relevance.

Every rule follows the specification (``relevance-spec.md`` §1) of Chefer, Gur & Wolf, "Transformer
Interpretability Beyond Attention Visualization", CVPR 2021 (arXiv 2012.09838), and of the LRP baseline
layer set the paper compares against. A rule maps the relevance ``R`` of a layer's output (same shape as the
output) to the relevance of each input (same shape as that input).

All rules are batch-first and per-sample: nothing sums across the batch axis (the reference code's
``Add`` does, which is its batch-1 quirk, spec §6.1 #1). At batch 1 the numbers equal the reference.

A :class:`RuleSet` says which rule each kind of operation uses (:mod:`relevance.rule_sets` holds the presets).
Rule sets are configuration: the model code never chooses a rule (see :mod:`relevance.ops`). Every rule object
has one entry point, :meth:`Rule.propagate`, called by the operation's autograd node during the relevance pass;
the plain functions and ``__call__`` methods here are the rules' mathematics, tested against explicit sums.

Two kinds of rule sets exist. *Relevance* rule sets (the CVPR 2021 rules and the LRP baselines) pass relevance
itself backwards. *Gradient* rule sets (AttnLRP, CP-LRP) pass a modified gradient, as Achtibat et al. (2024)
implement LRP "as Gradient x Input with modified backward functions"; the relevance of a tensor ``x`` is then
``x * g``. :class:`Gradient` is the ordinary vector-Jacobian product, which in that form is the LRP-0 / epsilon
rule with the bias absorbing its share.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # the operations call the rules; the rules only read their inputs
    from relevance.ops import Operation

#: The stabiliser of :func:`safe_divide` (spec §1.2).
STABILIZER = 1e-9


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Element-wise ``numerator / (denominator + 1e-9)``, and 0 where ``denominator == 0`` (spec §1.2).

    The stabiliser is added whatever the sign of the denominator, as in the reference code; a denominator of
    exactly ``-1e-9`` is divided by ``1e-9`` instead of zero.
    """
    stabilized = denominator + STABILIZER
    stabilized.masked_fill_(stabilized == 0, STABILIZER)
    return (numerator / stabilized).masked_fill_(denominator == 0, 0.0)


def per_sample_sum(tensor: Tensor) -> Tensor:
    """Sum over every axis but the first: (B, ...) -> (B, 1, ..., 1), ready to broadcast back."""
    dims = tuple(range(1, tensor.dim()))
    return tensor.sum(dim=dims, keepdim=True) if dims else tensor


def reduce_to_shape(tensor: Tensor, shape: torch.Size) -> Tensor:
    """Sum a broadcast result back to an operand's ``shape`` (what autograd does for broadcasting)."""
    if tensor.shape == shape:
        return tensor
    leading = tensor.dim() - len(shape)
    tensor = tensor.sum(dim=tuple(range(leading))) if leading else tensor
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and tensor.shape[i] != 1)
    return tensor.sum(dim=dims, keepdim=True) if dims else tensor


# ----------------------------------------------------------------------------------------------- dispatch
class Rule:
    """How relevance (or, in a gradient rule set, the modified gradient) passes through one operation.

    :meth:`propagate` receives the operation (which knows its own gradient and hyper-parameters), its inputs in
    the order the operation was called with (``None`` for absent optional tensors), its output when
    :attr:`needs_output`, and what arrived from above; it returns one tensor (or ``None``) per input.
    """

    needs_output: bool = False

    def propagate(self, op: "Operation", inputs: Sequence[Tensor | None], output: Tensor | None,
                  upstream: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError


class Identity(Rule):
    """The identity rule: everything goes to the first input (LayerNorm, GELU, softmax and scaling in the CVPR
    2021 rules, spec §1.3; the score branch of an attention-mask addition, spec §1.5)."""

    def propagate(self, op, inputs, output, upstream):
        return (upstream,) + (None,) * (len(inputs) - 1)


class Gradient(Rule):
    """The operation's own vector-Jacobian product. In a gradient rule set this is Gradient x Input's rule for
    the operation: for a linear map the LRP-0 rule with the bias absorbing its share (epsilon -> 0, as lxt's
    efficient AttnLRP and CP-LRP implement it); for the softmax AttnLRP's rule with its bias term (Achtibat et
    al. 2024, Prop. 3.1: ``R_x = x (R - s sum R)`` is ``x`` times the softmax's gradient of ``R / s``)."""

    def propagate(self, op, inputs, output, upstream):
        return op.gradient(inputs, upstream, output)


@dataclass(frozen=True)
class Uniform(Rule):
    """AttnLRP's uniform rule for a product of ``n`` activations (Achtibat et al. 2024, Prop. 3.2-3.3):
    the epsilon rule, then each operand keeps ``share = 1/n`` of it. Gradient form: the gradient of
    ``share * upstream``."""

    share: float = 0.5

    def propagate(self, op, inputs, output, upstream):
        return op.gradient(inputs, upstream * self.share, output)


class ConstantAttention(Rule):
    """CP-LRP's rule for ``A V`` (Ali et al., ICML 2022, the "AH" rule): the attention probabilities are held
    constant, so everything flows to the values ``V`` and none to ``A`` (gradient form)."""

    def propagate(self, op, inputs, output, upstream):
        gradients = op.gradient(inputs, upstream, output)
        return (None,) + tuple(gradients[1:])


class ConstantScale(Rule):
    """Normalisation with its scale held constant (AttnLRP's identity rule on ``1/std``, Achtibat et al. 2024
    Prop. 3.4; CP-LRP's "LN" rule, Ali et al. 2022): gradient form, the gradient of the normalisation with the
    standard deviation (or norm) detached. The operation supplies that gradient."""

    def propagate(self, op, inputs, output, upstream):
        return op.gradient_with_constant_scale(inputs, upstream)


class IdentityGradient(Rule):
    """The identity rule for an element-wise non-linearity ``y = f(x)`` in gradient form (Achtibat et al. 2024,
    Eq. 9): ``g_x = g_y f(x) / x``, so that ``x g_x = y g_y`` (0 where ``x = 0``)."""

    needs_output = True

    def propagate(self, op, inputs, output, upstream):
        # every activation here has f(0) = 0, so 0 / 0 = NaN marks exactly the zeros of x; three passes, one buffer
        gradient = (upstream * output).div_(inputs[0]).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        return (gradient,) + (None,) * (len(inputs) - 1)


class ZRule(Rule):
    """The z-rule of a linear operation of one input (token selection, token mean; spec §1.3 "IndexSelect",
    "Avg pool"): ``R_x = x * J^T (R / z)`` with :func:`safe_divide`."""

    needs_output = True

    def propagate(self, op, inputs, output, upstream):
        scaled = op.gradient(inputs, safe_divide(upstream, output), output)[0]
        return (inputs[0] * scaled,) + (None,) * (len(inputs) - 1)


class Fanout(Rule):
    """Clone (one tensor used by several branches, spec §1.3): ``R_x = x * (sum_c R_c) / x``, 0 where x = 0.
    Autograd has already summed the branches' relevance."""

    def propagate(self, op, inputs, output, upstream):
        return (inputs[0] * safe_divide(upstream, inputs[0]),)


# --------------------------------------------------------------------------------------------- linear layers
@dataclass(frozen=True)
class AlphaBeta(Rule):
    """The alpha-beta rule for a linear layer ``z = W x + b`` (spec §1.3 "Linear", Bach et al. 2015).

    With ``alpha = 1`` (so ``beta = alpha - 1 = 0``) this is the z+ rule of the CVPR 2021 method: only the
    positive contributions ``x_j^+ w_ij^+ + x_j^- w_ij^-`` carry relevance, the bias is ignored, and
    ``R_j = sum_i z+_ij R_i / sum_j' z+_ij'``.

    Parameters
    ----------
    alpha:
        Weight of the activating contributions; the inhibiting ones get ``beta = alpha - 1``.
    shared_denominator:
        ``True`` (the paper's ``layers_ours``): both positive parts share one denominator, which conserves
        relevance. ``False`` (the baselines' ``layers_lrp``, spec §1.4): each part is normalised on its own,
        which roughly doubles relevance per layer (spec §6.1 #6).
    """

    alpha: float = 1.0
    shared_denominator: bool = True
    needs_output = True  # the shared z+ rule reuses the forward's x @ W^T

    def propagate(self, op, inputs, output, upstream):
        x, weight, bias = inputs
        product = output if bias is None else output - bias
        return self(x, weight, upstream, product), None, None

    def __call__(self, x: Tensor, weight: Tensor, relevance: Tensor, product: Tensor | None = None) -> Tensor:
        """``x`` (..., in), ``weight`` (out, in), ``relevance`` (..., out) -> relevance of ``x`` (..., in).

        ``product`` may pass ``x @ weight.T`` (the forward output without bias) to save a matrix product.
        """
        if self.alpha == 1.0 and self.shared_denominator:
            return _zplus_shared(x, weight, relevance, product)
        beta = self.alpha - 1.0
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
        result = self._part(w_pos, w_neg, x_pos, x_neg, relevance)
        if self.alpha != 1.0:
            result = self.alpha * result
        if beta != 0.0:
            result = result - beta * self._part(w_neg, w_pos, x_pos, x_neg, relevance)
        return result

    def _part(self, w1: Tensor, w2: Tensor, x1: Tensor, x2: Tensor, relevance: Tensor) -> Tensor:
        z1, z2 = F.linear(x1, w1), F.linear(x2, w2)
        if self.shared_denominator:
            s1 = s2 = safe_divide(relevance, z1.add_(z2))
        else:
            s1, s2 = safe_divide(relevance, z1), safe_divide(relevance, z2)
        return torch.addcmul(x1 * (s1 @ w1), x2, s2 @ w2)


def _zplus_shared(x: Tensor, weight: Tensor, relevance: Tensor, product: Tensor | None) -> Tensor:
    """The z+ rule with one denominator, in three matrix products instead of four.

    With ``|.|`` element-wise, ``x+ W+^T + x- W-^T = (x W^T + |x| |W|^T) / 2`` and
    ``x+ (S W+) + x- (S W-) = (x (S W) + |x| (S |W|)) / 2``; ``x W^T`` is the forward's product. Both sides
    equal the reference's sums up to rounding of the same order (bounded by ``sum_j |x_j w_ij|``); an input
    without positive contribution gets zero up to that rounding (about 1e-16 of the largest relevance in float64)
    rather than an exact zero. Only ``|W|`` is cached (see :func:`weight_magnitude`).
    """
    magnitude = weight_magnitude(weight)
    x_abs = x.abs()
    if product is None:
        product = F.linear(x, weight)
    z = F.linear(x_abs, magnitude).add_(product).mul_(0.5).clamp_(min=0)
    s = (relevance / (z + STABILIZER)).masked_fill_(z == 0, 0.0)  # safe_divide for z >= 0, in fewer passes
    return torch.addcmul(x * (s @ weight), x_abs, s @ magnitude).mul_(0.5)


#: Upper bound of the bytes that :func:`weight_magnitude` keeps (least recently used entries go first).
MAGNITUDE_CACHE_BYTES = 1 << 30

_MAGNITUDE_CACHE: OrderedDict[int, tuple] = OrderedDict()


def weight_magnitude(weight: Tensor) -> Tensor:
    """``|W|``, cached per weight tensor.

    At batch 1 a pass over every weight matrix costs a sizeable share of an explanation, so ``|W|`` is kept
    while the weight is unchanged (same object, storage, dtype, device and in-place version counter: an optimiser
    step or ``load_state_dict`` invalidates it). An entry is freed with its weight (a weak reference), and the
    whole cache holds at most :data:`MAGNITUDE_CACHE_BYTES` (least recently used entries are dropped first), on
    every device. It holds no explanation state.
    """
    key = (weight.data_ptr(), weight.dtype, weight.device, weight._version)
    identity = id(weight)
    cached = _MAGNITUDE_CACHE.get(identity)
    if cached is not None and cached[0]() is weight and cached[1] == key:
        _MAGNITUDE_CACHE.move_to_end(identity)
        return cached[2]
    magnitude = weight.detach().abs()
    size = magnitude.numel() * magnitude.element_size()
    if size > MAGNITUDE_CACHE_BYTES:
        return magnitude
    reference = weakref.ref(weight, lambda _: _MAGNITUDE_CACHE.pop(identity, None))
    _MAGNITUDE_CACHE[identity] = (reference, key, magnitude)
    while sum(m.numel() * m.element_size() for _, _, m in _MAGNITUDE_CACHE.values()) > MAGNITUDE_CACHE_BYTES:
        _MAGNITUDE_CACHE.popitem(last=False)
    return magnitude


def clear_weight_cache() -> None:
    """Free every cached ``|W|`` (see :func:`weight_magnitude`)."""
    _MAGNITUDE_CACHE.clear()


@dataclass(frozen=True)
class ZBox(Rule):
    """The z^B (box) rule for the first convolution, on pixels (spec §1.3 "Conv2d, input layer").

    Bounds are the per-sample minimum ``l`` and maximum ``h`` of the input over channels, height and width
    (Montavon et al. 2017). ``Z = conv(x, W) - conv(l, W+) - conv(h, W-) + 1e-9`` (no bias, plain division) and
    ``R_x = x * conv^T(S, W) - l * conv^T(S, W+) - h * conv^T(S, W-)`` with ``S = R / Z``.
    """

    def propagate(self, op, inputs, output, upstream):
        x, weight, _ = inputs
        return self(x, weight, upstream, op.stride, op.padding), None, None

    def __call__(self, x: Tensor, weight: Tensor, relevance: Tensor, stride: tuple[int, int],
                 padding: tuple[int, int]) -> Tensor:
        """``x`` (B, C, H, W), ``weight`` (D, C, kh, kw), ``relevance`` (B, D, h, w) -> (B, C, H, W)."""
        low = x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
        high = x.amax(dim=(1, 2, 3), keepdim=True).expand_as(x)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)

        def conv(inputs: Tensor, kernel: Tensor) -> Tensor:
            return F.conv2d(inputs, kernel, stride=stride, padding=padding)

        z = conv(x, weight) - conv(low, w_pos) - conv(high, w_neg) + STABILIZER
        s = relevance / z
        output_padding = _transposed_output_padding(x.shape[-2:], z.shape[-2:], weight.shape[-2:], stride, padding)

        def conv_t(kernel: Tensor) -> Tensor:
            return F.conv_transpose2d(s, kernel, stride=stride, padding=padding, output_padding=output_padding)

        return x * conv_t(weight) - low * conv_t(w_pos) - high * conv_t(w_neg)


def _transposed_output_padding(in_size, out_size, kernel, stride, padding) -> tuple[int, int]:
    return tuple(i - ((o - 1) * s - 2 * p + k) for i, o, k, s, p in zip(in_size, out_size, kernel, stride, padding))


# ------------------------------------------------------------------------------------- two-operand products
@dataclass(frozen=True)
class BilinearSplit(Rule):
    """z-rule for a product of two activations, ``Z = U V`` (spec §1.3 "einsum / MatMul").

    Each operand gets ``R_U = U * J_U^T (R / Z)`` and ``R_V = V * J_V^T (R / Z)``, which each carry the full
    total, then both are multiplied by ``share`` (the paper's halving for binary operators, spec §1.5).
    """

    share: float = 0.5
    needs_output = True  # Z = U V from the forward pass, not recomputed

    def propagate(self, op, inputs, output, upstream):
        return self(*inputs, upstream, output)

    def __call__(self, u: Tensor, v: Tensor, relevance: Tensor, product: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``u`` (..., n, k), ``v`` (..., k, m), ``relevance`` (..., n, m) -> (R_u, R_v); ``product`` may pass
        ``u @ v`` from the forward pass."""
        s = safe_divide(relevance, u @ v if product is None else product)
        return u * (s @ v.transpose(-2, -1)) * self.share, v * (u.transpose(-2, -1) @ s) * self.share


# ----------------------------------------------------------------------------------------------- additions
@dataclass(frozen=True)
class RenormalizedAdd(Rule):
    """The CVPR 2021 rule for ``z = a + b`` (spec §1.3 "Add"): z-rule split, then per-sample renormalisation.

    ``rho_a = a R / z`` and ``rho_b = b R / z``; with per-sample totals ``s_a``, ``s_b`` and ``T = sum R``,
    ``R_a = rho_a * (|s_a| / (|s_a| + |s_b|) T) / s_a`` and likewise for ``b``, so each sample keeps its total.
    """

    def propagate(self, op, inputs, output, upstream):
        return self(*inputs, upstream)

    def __call__(self, a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """Operands broadcastable to ``relevance`` (B, ...); returns relevance shaped like ``a`` and ``b``."""
        s = safe_divide(relevance, a + b)
        rho_a, rho_b = a * s, b * s
        sum_a, sum_b, total = per_sample_sum(rho_a), per_sample_sum(rho_b), per_sample_sum(relevance)
        magnitude = sum_a.abs() + sum_b.abs()
        factor_a = safe_divide(sum_a.abs(), magnitude) * total
        factor_b = safe_divide(sum_b.abs(), magnitude) * total
        rho_a = rho_a * safe_divide(factor_a, sum_a)
        rho_b = rho_b * safe_divide(factor_b, sum_b)
        return reduce_to_shape(rho_a, a.shape), reduce_to_shape(rho_b, b.shape)


@dataclass(frozen=True)
class ZAdd(Rule):
    """Plain z-rule for ``z = a + b`` (the baselines' ``layers_lrp`` Add, spec §1.4): ``R_a = a R / z``."""

    def propagate(self, op, inputs, output, upstream):
        return self(*inputs, upstream)

    def __call__(self, a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """Operands broadcastable to ``relevance``; returns relevance shaped like ``a`` and ``b``."""
        s = safe_divide(relevance, a + b)
        return reduce_to_shape(a * s, a.shape), reduce_to_shape(b * s, b.shape)
