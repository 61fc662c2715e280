"""Layer-wise relevance propagation rules, as pure functions of a layer's inputs and its output relevance.

Every rule follows the specification (``relevance-spec.md`` §1) of Chefer, Gur & Wolf, "Transformer
Interpretability Beyond Attention Visualization", CVPR 2021 (arXiv 2012.09838), and of the LRP baseline
layer set the paper compares against. A rule maps the relevance ``R`` of a layer's output (same shape as the
output) to the relevance of each input (same shape as that input).

All rules are batch-first and per-sample: nothing sums across the batch axis (the reference code's
``Add`` does, which is its batch-1 quirk, spec §6.1 #1). At batch 1 the numbers equal the reference.

A :class:`RuleSet` says which rule each kind of layer uses. Rule sets are configuration: the model code never
chooses a rule (see :mod:`relevance.ops`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

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


# --------------------------------------------------------------------------------------------- linear layers
@dataclass(frozen=True)
class AlphaBeta:
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
    s = safe_divide(relevance, z)
    return torch.addcmul(x * (s @ weight), x_abs, s @ magnitude).mul_(0.5)


_MAGNITUDE_CACHE: dict[int, tuple] = {}


def weight_magnitude(weight: Tensor) -> Tensor:
    """``|W|``, cached per weight tensor.

    At batch 1 a pass over every weight matrix costs a sizeable share of an explanation, so ``|W|`` is kept
    while the weight is unchanged (same object, storage, dtype and in-place version counter: an optimiser step
    or ``load_state_dict`` invalidates it) and freed with the weight. It holds no explanation state.
    """
    key = (weight.data_ptr(), weight.dtype, weight.device, weight._version)
    cached = _MAGNITUDE_CACHE.get(id(weight))
    if cached is not None and cached[0]() is weight and cached[1] == key:
        return cached[2]
    magnitude = weight.detach().abs()
    identity = id(weight)
    reference = weakref.ref(weight, lambda _: _MAGNITUDE_CACHE.pop(identity, None))
    _MAGNITUDE_CACHE[identity] = (reference, key, magnitude)
    return magnitude


@dataclass(frozen=True)
class ZBox:
    """The z^B (box) rule for the first convolution, on pixels (spec §1.3 "Conv2d, input layer").

    Bounds are the per-sample minimum ``l`` and maximum ``h`` of the input over channels, height and width
    (Montavon et al. 2017). ``Z = conv(x, W) - conv(l, W+) - conv(h, W-) + 1e-9`` (no bias, plain division) and
    ``R_x = x * conv^T(S, W) - l * conv^T(S, W+) - h * conv^T(S, W-)`` with ``S = R / Z``.
    """

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
class BilinearSplit:
    """z-rule for a product of two activations, ``Z = U V`` (spec §1.3 "einsum / MatMul").

    Each operand gets ``R_U = U * J_U^T (R / Z)`` and ``R_V = V * J_V^T (R / Z)``, which each carry the full
    total, then both are multiplied by ``share`` (the paper's halving for binary operators, spec §1.5).
    """

    share: float = 0.5

    def __call__(self, u: Tensor, v: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` (..., n, k), ``v`` (..., k, m), ``relevance`` (..., n, m) -> (R_u, R_v)."""
        s = safe_divide(relevance, u @ v)
        return u * (s @ v.transpose(-2, -1)) * self.share, v * (u.transpose(-2, -1) @ s) * self.share


# ----------------------------------------------------------------------------------------------- additions
@dataclass(frozen=True)
class RenormalizedAdd:
    """The CVPR 2021 rule for ``z = a + b`` (spec §1.3 "Add"): z-rule split, then per-sample renormalisation.

    ``rho_a = a R / z`` and ``rho_b = b R / z``; with per-sample totals ``s_a``, ``s_b`` and ``T = sum R``,
    ``R_a = rho_a * (|s_a| / (|s_a| + |s_b|) T) / s_a`` and likewise for ``b``, so each sample keeps its total.
    """

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
class ZAdd:
    """Plain z-rule for ``z = a + b`` (the baselines' ``layers_lrp`` Add, spec §1.4): ``R_a = a R / z``."""

    def __call__(self, a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
        """Operands broadcastable to ``relevance``; returns relevance shaped like ``a`` and ``b``."""
        s = safe_divide(relevance, a + b)
        return reduce_to_shape(a * s, a.shape), reduce_to_shape(b * s, b.shape)


# ---------------------------------------------------------------------------------------------- structural
def fanout_rule(x: Tensor, relevance: Tensor) -> Tensor:
    """Clone (one tensor used by several branches, spec §1.3): ``R_x = x * (sum_c R_c) / x``, 0 where x = 0.

    ``relevance`` is the sum of the branch relevances.
    """
    return x * safe_divide(relevance, x)


def selection_rule(x: Tensor, relevance: Tensor, index: int) -> Tensor:
    """IndexSelect along the token axis (CLS pooling, spec §1.3): z-rule, relevance only at ``index``.

    ``x`` (B, N, D), ``relevance`` (B, D) -> (B, N, D).
    """
    result = torch.zeros_like(x)
    selected = x[:, index]
    result[:, index] = selected * safe_divide(relevance, selected)
    return result


def token_mean_rule(x: Tensor, relevance: Tensor, start: int) -> Tensor:
    """Average pooling over tokens ``start:`` (generic z-rule, spec §1.3 "Avg pool").

    ``x`` (B, N, D), ``relevance`` (B, D) -> (B, N, D); tokens before ``start`` get none.
    """
    tokens = x[:, start:]
    mean = tokens.mean(dim=1)
    result = torch.zeros_like(x)
    result[:, start:] = tokens / tokens.shape[1] * safe_divide(relevance, mean).unsqueeze(1)
    return result


# ----------------------------------------------------------------------------------------------- rule sets
@dataclass(frozen=True)
class RuleSet:
    """Which rule each kind of layer uses. Layers not named here (LayerNorm, GELU, softmax, dropout, scaling)
    pass relevance through unchanged (spec §1.3); token selection, pooling and fan-out use the z-rule."""

    name: str
    linear: AlphaBeta
    add: RenormalizedAdd | ZAdd
    product: BilinearSplit
    input_conv: ZBox


#: The paper's layer set (``layers_ours``): conservative z+ and renormalised additions.
TRANSFORMER_ATTRIBUTION_RULES = RuleSet(
    name="transformer_attribution",
    linear=AlphaBeta(alpha=1.0, shared_denominator=True),
    add=RenormalizedAdd(),
    product=BilinearSplit(share=0.5),
    input_conv=ZBox(),
)

#: The LRP baselines' layer set (``layers_lrp``, spec §1.4): separate normalisation, plain additions.
LRP_BASELINE_RULES = RuleSet(
    name="lrp_baseline",
    linear=AlphaBeta(alpha=1.0, shared_denominator=False),
    add=ZAdd(),
    product=BilinearSplit(share=0.5),
    input_conv=ZBox(),
)
