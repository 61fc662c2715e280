"""LRP-aware tensor operations: the only place where a model's forward pass meets the rules.

Each function here computes an ordinary tensor operation. Without a current tape (plain inference and
training) it is the plain PyTorch call. While :func:`relevance.tape.recording` holds a tape with a rule set,
the operation becomes an autograd node (:class:`_RuleFunction`) whose backward pass is

* the ordinary vector-Jacobian product when ``tape.mode is Mode.GRADIENT``, and
* the rule that the tape's :class:`~relevance.rule_sets.RuleSet` names for the operation's *kind*
  (``linear``, ``attention_scores``, ``softmax``, ...) when ``tape.mode is Mode.RELEVANCE``.

So ``torch.autograd.grad(output, tensors, seed)`` returns gradients or relevance over the same graph, and
structural operations (reshape, permute, split, concatenation, indexing) need no rule: their backward pass
moves relevance exactly as the spec's relprop does. Fan-out is summed, as the Clone rule says. Every operation
dispatches the same way, and which rule applies is configuration: model code never chooses.

The recording functions at the end (:func:`record_attention`, :func:`record_space`, :func:`mark_input`, ...)
write what the forward pass saw to the current tape, under keys, so that methods can ask for it;
:func:`record_query_key` keeps query and key vectors only when the tape asks for them (the neuron view).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from relevance import rules as R
from relevance.tape import AttentionKey, Mode, QueryKey, Tape, TokenSpace, current_tape


def rewriting_tape() -> Tape | None:
    """The current tape when operations must build rule nodes (a tape with a rule set), else ``None``."""
    tape = current_tape()
    return tape if tape is not None and tape.rules is not None else None


class Operation:
    """One kind of operation: its forward and its exact gradient; the rule comes from the rule set by ``kind``.

    ``inputs`` are the tensors given to :meth:`forward` (``None`` stands for an absent optional tensor).
    ``gradient`` returns one tensor (or ``None``) per input; operations whose gradient needs their output set
    :attr:`gradient_needs_output`.
    """

    kind: str = ""
    gradient_needs_output = False

    def forward(self, *inputs: Tensor | None) -> Tensor:
        raise NotImplementedError

    def plain(self, *inputs: Tensor | None) -> Tensor:
        """The forward as ordinary autograd operations (used where the rule is the plain gradient)."""
        return self.forward(*inputs)

    def gradient(self, inputs: Sequence[Tensor | None], grad: Tensor,
                 output: Tensor | None) -> tuple[Tensor | None, ...]:
        """Default: recompute the forward on a detached first input and take its vector-Jacobian product."""
        with torch.enable_grad():
            first = inputs[0].detach().requires_grad_(True)
            result = self.forward(first, *inputs[1:])
            (grad_first,) = torch.autograd.grad(result, first, grad)
        return (grad_first,) + (None,) * (len(inputs) - 1)


class _RuleFunction(torch.autograd.Function):
    """Autograd node whose backward pass is the gradient or the rule set's rule, chosen by the tape's mode."""

    @staticmethod
    def forward(ctx, operation: Operation, tape: Tape, *inputs: Tensor | None) -> Tensor:
        rule = tape.rules.rule(operation.kind)
        ctx.operation, ctx.tape, ctx.rule = operation, tape, rule
        output = operation.forward(*inputs)
        keep = operation.gradient_needs_output or rule.needs_output
        ctx.save_for_backward(*inputs, output if keep else None)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        *inputs, output = ctx.saved_tensors
        if ctx.tape.mode is Mode.RELEVANCE:
            results = ctx.rule.propagate(ctx.operation, inputs, output, grad)
        else:
            results = ctx.operation.gradient(inputs, grad, output)
        return (None, None) + tuple(results)


def _apply(operation: Operation, tape: Tape, *inputs: Tensor | None) -> Tensor:
    """The operation as a rule node; as plain autograd when its rule is the plain gradient (Gradient x Input rule
    sets: AttnLRP and CP-LRP on linear layers, additions, softmax, ...), where both modes compute the ordinary
    vector-Jacobian product, so the node's bookkeeping would only cost time."""
    if type(tape.rules.rule(operation.kind)) is R.Gradient:
        return operation.plain(*inputs)
    return _RuleFunction.apply(operation, tape, *inputs)


# ------------------------------------------------------------------------------------------- linear layers
class Linear(Operation):
    kind = "linear"

    def forward(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def gradient(self, inputs, grad, output):
        return grad @ inputs[1].to(grad.dtype), None, None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` (B, ..., in) -> (B, ..., out); rule kind ``linear``."""
    tape = rewriting_tape()
    return F.linear(x, weight, bias) if tape is None else _apply(Linear(), tape, x, weight, bias)


class InputConv(Operation):
    kind = "input_conv"

    def __init__(self, stride: tuple[int, int], padding: tuple[int, int]):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias):
        return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)

    def gradient(self, inputs, grad, output):
        x, weight, _ = inputs
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride=self.stride, padding=self.padding)
        return grad_x, None, None


def input_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                 padding: tuple[int, int] = (0, 0)) -> Tensor:
    """The convolution applied to pixels (patch embedding) (B, C, H, W) -> (B, D, h, w); kind ``input_conv``."""
    tape = rewriting_tape()
    if tape is None:
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return _apply(InputConv(tuple(stride), tuple(padding)), tape, x, weight, bias)


# -------------------------------------------------------------------------------- products and additions
class MatMul(Operation):
    def __init__(self, kind: str):
        self.kind = kind

    def forward(self, u, v):
        return u @ v

    def gradient(self, inputs, grad, output):
        u, v = inputs
        return grad @ v.transpose(-2, -1), u.transpose(-2, -1) @ grad


def attention_scores(q: Tensor, k_transposed: Tensor) -> Tensor:
    """``Q K^T`` (B, H, Nq, d) @ (B, H, d, Nk) -> (B, H, Nq, Nk); kind ``attention_scores``."""
    tape = rewriting_tape()
    return q @ k_transposed if tape is None else _apply(MatMul("attention_scores"), tape, q, k_transposed)


def attention_values(attention: Tensor, v: Tensor) -> Tensor:
    """``A V`` (B, H, Nq, Nk) @ (B, H, Nk, d) -> (B, H, Nq, d); kind ``attention_values``."""
    tape = rewriting_tape()
    return attention @ v if tape is None else _apply(MatMul("attention_values"), tape, attention, v)


def matmul(u: Tensor, v: Tensor) -> Tensor:
    """``u @ v`` of two activations of one stream other than attention; kind ``product`` (a score of two towers is
    :func:`pair_similarity`)."""
    tape = rewriting_tape()
    return u @ v if tape is None else _apply(MatMul("product"), tape, u, v)


def pair_similarity(u: Tensor, v: Tensor) -> Tensor:
    """Each sample's dot product of two embeddings, (B, D), (B, D) -> (B,): the score of a two-tower model (CLIP's
    image-text similarity of each pair); kind ``similarity``, whose rules explain each tower against the other's
    embedding held fixed (see :class:`relevance.rule_sets.RuleSet`)."""
    if u.dim() != 2 or u.shape != v.shape:
        raise ValueError(f"pair_similarity needs two (B, D) embeddings, got {tuple(u.shape)} and {tuple(v.shape)}")
    tape = rewriting_tape()
    rows, columns = u.unsqueeze(-2), v.unsqueeze(-1)
    product = rows @ columns if tape is None else _apply(MatMul("similarity"), tape, rows, columns)
    return product.reshape(u.shape[0])


class Add(Operation):
    def __init__(self, kind: str = "add"):
        self.kind = kind

    def forward(self, a, b):
        return a + b

    def gradient(self, inputs, grad, output):
        a, b = inputs
        return R.reduce_to_shape(grad, a.shape), R.reduce_to_shape(grad, b.shape)


def add(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` (residual connections, embeddings); kind ``add``."""
    tape = rewriting_tape()
    return a + b if tape is None else _apply(Add(), tape, a, b)


class MaskAdd(Add):
    """``scores + mask`` with a constant mask: the gradient goes to the scores only."""

    def gradient(self, inputs, grad, output):
        return grad, None


def mask_scores(scores: Tensor, mask: Tensor) -> Tensor:
    """``scores + mask``: an additive attention mask (0 where allowed, very negative where masked); kind
    ``mask``. The CVPR 2021 rules keep the scores' share of the relevance, which is all of it (spec §1.5, BERT):
    the relevance of a masked entry is zero because its probability is. Use a finite mask value (the dtype's lowest,
    as Hugging Face does), not ``-inf``: the rules multiply the mask by a zero relevance there."""
    tape = rewriting_tape()
    return scores + mask if tape is None else _apply(MaskAdd("mask"), tape, scores, mask)


# ------------------------------------------------------------------------------- element-wise operations
class Softmax(Operation):
    kind = "softmax"
    gradient_needs_output = True

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        return x.softmax(self.dim)

    def gradient(self, inputs, grad, output):
        return (output * (grad - (grad * output).sum(self.dim, keepdim=True)),)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``; kind ``softmax``."""
    tape = rewriting_tape()
    return x.softmax(dim) if tape is None else _apply(Softmax(dim), tape, x)


class LayerNorm(Operation):
    """LayerNorm over the last axis. Gradients in closed form; with the scale constant (``1/std`` detached) the
    layer is linear: ``g_x = (g w - mean(g w)) / std``."""

    kind = "normalization"

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x, weight, bias):
        return F.layer_norm(x, (x.shape[-1],), weight, bias, self.eps)

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = x.mean(-1, keepdim=True)
        std = ((x - mean).pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        return mean, std

    def gradient(self, inputs, grad, output):
        x, weight, _ = inputs
        mean, std = self._statistics(x)
        normalized = (x - mean) / std
        scaled = grad if weight is None else grad * weight
        result = scaled - scaled.mean(-1, keepdim=True) - normalized * (scaled * normalized).mean(-1, keepdim=True)
        return result / std, None, None

    def gradient_with_constant_scale(self, inputs, grad):
        x, weight, _ = inputs
        _, std = self._statistics(x)
        scaled = grad if weight is None else grad * weight
        return (scaled - scaled.mean(-1, keepdim=True)) / std, None, None


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """LayerNorm over the last axis; kind ``normalization``."""
    tape = rewriting_tape()
    if tape is None:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    return _apply(LayerNorm(eps), tape, x, weight, bias)


class L2Normalize(Operation):
    """``x / max(||x||, eps)`` along the last axis (CLIP's embeddings); with the norm constant, ``g / ||x||``."""

    kind = "normalization"
    gradient_needs_output = True

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x):
        return F.normalize(x, dim=-1, eps=self.eps)

    def gradient(self, inputs, grad, output):
        norm = inputs[0].norm(dim=-1, keepdim=True).clamp(min=self.eps)
        return ((grad - output * (grad * output).sum(-1, keepdim=True)) / norm,)

    def gradient_with_constant_scale(self, inputs, grad):
        return (grad / inputs[0].norm(dim=-1, keepdim=True).clamp(min=self.eps),)


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit length along the last axis; kind ``normalization``."""
    tape = rewriting_tape()
    return F.normalize(x, dim=-1, eps=eps) if tape is None else _apply(L2Normalize(eps), tape, x)


def _quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


#: Element-wise activations by name.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": _quick_gelu,
    "tanh": torch.tanh,
    "relu": F.relu,
}


class Activation(Operation):
    kind = "activation"

    def __init__(self, name: str):
        self.function = ACTIVATIONS[name]

    def forward(self, x):
        return self.function(x)


def activation(x: Tensor, name: str) -> Tensor:
    """An element-wise activation (:data:`ACTIVATIONS`); kind ``activation``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    tape = rewriting_tape()
    return ACTIVATIONS[name](x) if tape is None else _apply(Activation(name), tape, x)


class Scale(Operation):
    kind = "scale"

    def forward(self, x, factor):
        return x * factor

    def gradient(self, inputs, grad, output):
        x, factor = inputs
        return R.reduce_to_shape(grad * factor, x.shape), None


def scale(x: Tensor, factor: float | Tensor) -> Tensor:
    """``x * factor`` for a constant or parameter ``factor`` (attention scale, LayerScale); kind ``scale``."""
    tape = rewriting_tape()
    if tape is None:
        return x * factor
    factor = factor if isinstance(factor, Tensor) else torch.tensor(factor, dtype=x.dtype, device=x.device)
    return _apply(Scale(), tape, x, factor.detach())


# ------------------------------------------------------------------------------------ fan-out and pooling
class Fanout(Operation):
    kind = "fanout"

    def forward(self, x):
        return x.clone()

    def plain(self, x):
        return x  # autograd sums the branches' gradients by itself

    def gradient(self, inputs, grad, output):
        return (grad,)


def fanout(x: Tensor) -> Tensor:
    """Mark a tensor that several branches use (a residual split); kind ``fanout`` (the Clone rule sums)."""
    tape = rewriting_tape()
    return x if tape is None else _apply(Fanout(), tape, x)


def _token_index(index: int | Tensor, batch: int, device: torch.device) -> Tensor:
    if isinstance(index, Tensor):
        return index.to(device=device, dtype=torch.long).reshape(batch)
    return torch.full((batch,), int(index), dtype=torch.long, device=device)


class SelectToken(Operation):
    kind = "pooling"

    def __init__(self, index: Tensor):
        self.index = index

    def forward(self, x):
        return x[torch.arange(x.shape[0], device=x.device), self.index]

    def gradient(self, inputs, grad, output):
        result = torch.zeros_like(inputs[0])
        result[torch.arange(grad.shape[0], device=grad.device), self.index] = grad
        return (result,)


def select_token(x: Tensor, index: int | Tensor, *, stream: str) -> Tensor:
    """Token ``index`` of each sample, (B, N, D) -> (B, D): class-token or end-of-text pooling; kind ``pooling``.

    ``index`` is one position for all samples or a (B,) tensor of positions. The selection records itself as
    the stream's readout (a one-hot row per sample), so the head and the readout cannot drift apart.
    """
    rows = _token_index(index, x.shape[0], x.device)
    tape = current_tape()
    if tape is not None:
        readout = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
        readout[torch.arange(x.shape[0], device=x.device), rows] = 1.0
        tape.space(stream).readouts.append(readout)
    if rewriting_tape() is None:
        return x[torch.arange(x.shape[0], device=x.device), rows]
    return _apply(SelectToken(rows), tape, x)


class TokenMean(Operation):
    kind = "pooling"

    def __init__(self, weights: Tensor):
        self.weights = weights  # (B, N), rows sum to 1

    def forward(self, x):
        return torch.einsum("bn,bnd->bd", self.weights.to(x.dtype), x)

    def gradient(self, inputs, grad, output):
        return (self.weights.to(grad.dtype).unsqueeze(-1) * grad.unsqueeze(1),)


def mean_tokens(x: Tensor, *, stream: str, valid: Tensor | None = None, start: int = 0) -> Tensor:
    """Mean of the tokens ``start:`` that are ``valid`` (B, N) (average pooling), (B, N, D) -> (B, D); kind
    ``pooling``. Records the uniform weights as the stream's readout."""
    keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if valid is None else valid.bool()
    keep = keep.clone()
    keep[:, :start] = False
    weights = keep.to(x.dtype) / keep.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    tape = current_tape()
    if tape is not None:
        tape.space(stream).readouts.append(weights)
    if rewriting_tape() is None:
        return torch.einsum("bn,bnd->bd", weights, x)
    return _apply(TokenMean(weights), tape, x)


# --------------------------------------------------------------------------------------------- recording
def record_space(name: str, modality: str, valid: Tensor, *, grid_size: tuple[int, int] | None = None,
                 num_prefix_tokens: int = 0) -> None:
    """Declare a token stream at the start of its forward pass (see :class:`relevance.tape.TokenSpace`).

    ``valid`` (B, N) is ``False`` on padding."""
    tape = current_tape()
    if tape is not None:
        tape.spaces[name] = TokenSpace(name=name, modality=modality, num_tokens=valid.shape[1], valid=valid.bool(),
                                       grid_size=None if grid_size is None else tuple(grid_size),
                                       num_prefix_tokens=num_prefix_tokens)


def record_attention(probabilities: Tensor, *, stream: str, layer: int, kind: str = "self",
                     query: str = "", key: str = "") -> None:
    """Record attention probabilities (B, H, Nq, Nk) under their :class:`~relevance.tape.AttentionKey`."""
    tape = current_tape()
    if tape is not None:
        site = AttentionKey(stream, layer, kind, query, key)
        if site in tape.attention:
            raise RuntimeError(f"attention recorded twice at {site}: give every attention module its own layer")
        tape.attention[site] = probabilities


def record_query_key(queries: Tensor, keys: Tensor, *, stream: str, layer: int, scale: float,
                     kind: str = "self", query: str = "", key: str = "") -> None:
    """Record the query and key vectors (B, H, Nq, d), (B, H, Nk, d) of an attention site, whose scores are
    ``scale * queries @ keys^T`` (before masking and softmax), for the neuron view (Vig 2019, BertViz).

    Opt-in: kept only when the current tape asks for them (``recording(query_key=True)``); otherwise this is a
    no-op, so explanations pay nothing. Call it beside :func:`record_attention`, with the same site."""
    tape = current_tape()
    if tape is not None and tape.keep_query_key:
        site = AttentionKey(stream, layer, kind, query, key)
        tape.query_key[site] = QueryKey(queries.detach(), keys.detach(), float(scale))


def mark_input(x: Tensor, *, stream: str, site: str) -> Tensor:
    """Record a tensor where input-level relevance can be read (``"pixels"``, ``"word_embeddings"``,
    ``"encoder_input"``, ...) and return it; the stream's first site is its default input.

    While explaining, a tensor outside the autograd graph (input pixels, embeddings of frozen weights) is
    replaced by a leaf that requires a gradient, so that the backward passes reach it. When the tape holds a
    substitute for ``(stream, site)`` (:attr:`relevance.tape.Tape.substitutes`), the substitute is returned in place
    of ``x`` (same shape), so the rest of the forward pass runs on it."""
    tape = current_tape()
    if tape is None:
        return x
    substitute = tape.substitutes.get((stream, site))
    if substitute is not None:
        if substitute.shape != x.shape:
            raise ValueError(f"the substitute for input site {site!r} of stream {stream!r} has shape "
                             f"{tuple(substitute.shape)}; the model computed {tuple(x.shape)} there")
        tape.substituted.add((stream, site))
        x = substitute
    elif torch.is_grad_enabled() and not x.requires_grad:
        x = x.detach().requires_grad_(True)
    tape.inputs.setdefault(stream, {})[site] = x
    return x


def record_block_input(x: Tensor, *, stream: str) -> None:
    """Record the tokens entering a block (and, last, those leaving the final block) of a stream."""
    tape = current_tape()
    if tape is not None:
        tape.block_inputs.setdefault(stream, []).append(x)


def explaining() -> bool:
    """Whether an explanation is recording (layers then skip dropout, so maps are deterministic)."""
    return current_tape() is not None
