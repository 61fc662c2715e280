"""Attention flows: how a selected output draws on the input tokens, block by block (DeRose, Wang & Berger 2020).

For one output (the readout, i.e. the [CLS] decision, or a selected token) the flow is traced back through the
blocks to the input tokens. Each block ``l`` mixes the tokens entering it with a matrix ``M_l``; the flow
leaving the last block is the output's one-hot (or readout) vector ``v_L``, and going down

    v_l = v_{l+1} M_l,        edge flow from token i (entering block l) to token j (leaving it) = v_{l+1}[j] M_l[j, i],

so the flow into every node equals the flow out of it, and ``v_0`` is the rollout of the output over the input
tokens. Two kinds of mixing:

* ``"attention"``: ``M_l = rownorm(I + mean_h A_l^h)``, attention rollout (Abnar & Zuidema 2020); ``v_0`` on the
  readout is ``relevance.explain(method="rollout")``'s map.
* ``"gradient"``: ``M_l = I + mean_h (dy/dA_l^h * A_l^h)^+``, gradient-weighted attention (Chefer, Gur & Wolf,
  ICCV 2021); ``v_0`` on the readout is ``method="gradient_rollout"``'s map.

The mean runs over the selected heads (all by default), so the flow of a head subset is one call away.
:func:`compare_flows` sets two models' flows on the same input side by side, with their difference, e.g. a
pretrained model and its fine-tuned version. :mod:`relevance.views.flow` draws flows (HTML and PNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from relevance.views.capture import TokenAttention
from relevance.views.source import as_sample

__all__ = ["AttentionFlow", "FlowComparison", "WEIGHTS", "attention_flow", "compare_flows", "mixing_matrices",
           "output_vector", "through", "trace"]

#: What weighs the edges: attention (rollout) or gradient-weighted attention.
WEIGHTS = ("attention", "gradient")


@dataclass(frozen=True)
class AttentionFlow:
    """The flow of one output back through the blocks of one sample.

    Attributes
    ----------
    tokens, special:
        (n,) token labels and whether each is special.
    nodes:
        (L + 1, n): ``nodes[l, i]`` is the flow through token ``i`` entering block ``l`` (``nodes[0]``: the input
        tokens, the rollout map; ``nodes[L]``: the output vector).
    edges:
        (L, n, n): ``edges[l, j, i]`` is the flow from token ``i`` entering block ``l`` to token ``j`` leaving it.
    mixing:
        (L, n, n) the blocks' matrices ``M_l``.
    output:
        The traced output: ``"readout"`` or a token index.
    heads:
        The heads averaged (sorted).
    weights:
        ``"attention"`` or ``"gradient"``.
    model:
        The model's name, for captions.
    """

    tokens: list[str]
    special: list[bool]
    nodes: np.ndarray
    edges: np.ndarray
    mixing: np.ndarray
    output: str | int
    heads: tuple[int, ...]
    weights: str
    model: str | None = None

    @property
    def num_layers(self) -> int:
        return int(self.edges.shape[0])

    @property
    def inputs(self) -> np.ndarray:
        """(n,) the flow arriving at the input tokens (the rollout map of the output)."""
        return self.nodes[0]


@dataclass(frozen=True)
class FlowComparison:
    """Two flows of the same input (same tokens and depth) and their difference ``first - second``."""

    first: AttentionFlow
    second: AttentionFlow
    nodes: np.ndarray
    edges: np.ndarray
    names: tuple[str, str]


def mixing_matrices(attention: np.ndarray, heads: Sequence[int] | None = None, weights: str = "attention",
                    gradients: np.ndarray | None = None) -> np.ndarray:
    """Each block's token-mixing matrix ``M_l`` (L, n, n) from attention (L, H, n, n).

    Parameters
    ----------
    attention:
        (L, H, n, n) attention probabilities.
    heads:
        Heads averaged (default: all).
    weights:
        ``"attention"``: ``rownorm(I + mean_h A)`` (Abnar & Zuidema 2020); ``"gradient"``:
        ``I + mean_h (dA * A)^+`` (Chefer, Gur & Wolf, ICCV 2021).
    gradients:
        (L, H, n, n) gradients of the target score with respect to the attention, for ``"gradient"``.

    Returns
    -------
    numpy.ndarray
        (L, n, n) float64.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    attention = np.asarray(attention, dtype=np.float64)
    chosen = list(range(attention.shape[1])) if heads is None else sorted({int(h) for h in heads})
    if not chosen or any(not 0 <= h < attention.shape[1] for h in chosen):
        raise ValueError(f"heads must be indices in [0, {attention.shape[1] - 1}], got {heads}")
    eye = np.eye(attention.shape[-1])
    if weights == "attention":
        mixed = attention[:, chosen].mean(axis=1) + eye
        return mixed / mixed.sum(axis=-1, keepdims=True)
    if gradients is None:
        raise ValueError("gradient-weighted flows need the attention gradients: capture with gradients=True")
    weighted = np.clip(np.asarray(gradients, dtype=np.float64)[:, chosen] * attention[:, chosen], 0, None)
    return weighted.mean(axis=1) + eye


def trace(mixing: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trace an output vector back through the blocks (DeRose, Wang & Berger 2020).

    Parameters
    ----------
    mixing:
        (L, n, n) the blocks' matrices ``M_l``.
    output:
        (n,) the flow leaving the last block.

    Returns
    -------
    tuple of numpy.ndarray
        ``nodes`` (L + 1, n) with ``nodes[L] = output`` and ``nodes[l] = nodes[l + 1] @ M_l``, and ``edges``
        (L, n, n) with ``edges[l, j, i] = nodes[l + 1, j] * M_l[j, i]``.
    """
    layers, n = mixing.shape[0], mixing.shape[-1]
    nodes = np.zeros((layers + 1, n))
    edges = np.zeros((layers, n, n))
    nodes[layers] = np.asarray(output, dtype=np.float64)
    for layer in range(layers - 1, -1, -1):
        edges[layer] = nodes[layer + 1][:, None] * mixing[layer]
        nodes[layer] = edges[layer].sum(axis=0)
    return nodes, edges


def through(flow: AttentionFlow, layer: int, token: int) -> np.ndarray:
    """The part of every edge's flow that passes through one node (DeRose et al. 2020's tracing of a token).

    Parameters
    ----------
    flow:
        From :func:`attention_flow`.
    layer, token:
        The node: ``token`` entering block ``layer`` (``layer = L``: leaving the last block).

    Returns
    -------
    numpy.ndarray
        (L, n, n) edge flows. Every block carries exactly ``flow.nodes[layer, token]`` of them: below the node,
        the node's flow spreads down as in :func:`trace`; above it, each edge keeps the share that ends in it.
    """
    layers, n = flow.edges.shape[0], flow.edges.shape[1]
    if not 0 <= layer <= layers or not 0 <= token < n:
        raise ValueError(f"no node ({layer}, {token}) in a flow of {layers} blocks and {n} tokens")
    edges = np.zeros_like(flow.edges)
    below = np.zeros(n)
    below[token] = flow.nodes[layer, token]
    for index in range(layer - 1, -1, -1):
        edges[index] = below[:, None] * flow.mixing[index]
        below = edges[index].sum(axis=0)
    share = np.zeros(n)
    share[token] = 1.0
    for index in range(layer, layers):
        edges[index] = flow.nodes[index + 1][:, None] * flow.mixing[index] * share[None, :]
        share = flow.mixing[index] @ share
    return edges


def output_vector(data: TokenAttention, output: str | int = "readout") -> np.ndarray:
    """(n,) the traced output: the stream's readout row (``"readout"``) or a token's one-hot."""
    n = data.num_tokens
    if output == "readout":
        if data.readout is None:
            raise ValueError(f"the {data.stream!r} stream recorded no readout; pass a token index as output")
        return data.readout.astype(np.float64)
    index = int(output)
    if not 0 <= index < n:
        raise ValueError(f"output must be 'readout' or a token index in [0, {n - 1}], got {output!r}")
    vector = np.zeros(n)
    vector[index] = 1.0
    return vector


def attention_flow(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
                   output: str | int = "readout", heads: Sequence[int] | None = None, weights: str = "attention",
                   target: Any = None) -> AttentionFlow:
    """Trace an output's attention flow back to the input tokens (DeRose, Wang & Berger 2020).

    Parameters
    ----------
    source:
        A :class:`~relevance.views.TokenAttention`, an :class:`~relevance.views.AttentionCapture` (with
        ``gradients=True`` for gradient-weighted flows) or a model (then ``inputs`` are captured).
    inputs:
        The inputs when ``source`` is a model.
    sample, stream:
        Which sample and token stream (default: the first of each).
    output:
        ``"readout"`` (the [CLS] decision) or the index of a token.
    heads:
        Heads averaged in every block (default: all).
    weights:
        ``"attention"`` (rollout, Abnar & Zuidema 2020) or ``"gradient"`` (Chefer et al. ICCV 2021).
    target:
        The class the gradients explain, when ``source`` is a model (default: the top class).

    Returns
    -------
    AttentionFlow
        Nodes and edges of the flow; ``flow.inputs`` is the rollout map of the output.
    """
    data = as_sample(source, inputs, sample=sample, stream=stream, gradients=weights == "gradient", target=target)
    chosen = tuple(range(data.num_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
    mixing = mixing_matrices(data.attention, chosen, weights, data.gradients)
    nodes, edges = trace(mixing, output_vector(data, output))
    return AttentionFlow(tokens=list(data.tokens), special=list(data.special), nodes=nodes, edges=edges,
                         mixing=mixing, output=output if output == "readout" else int(output), heads=chosen,
                         weights=weights, model=data.model)


def compare_flows(first: AttentionFlow, second: AttentionFlow,
                  names: tuple[str, str] | None = None) -> FlowComparison:
    """Two flows of the same input, e.g. a pretrained and a fine-tuned model, and their difference.

    Parameters
    ----------
    first, second:
        Flows with the same tokens and depth.
    names:
        Their captions (default: the models' names).

    Returns
    -------
    FlowComparison
        ``nodes`` and ``edges`` are ``first - second``.
    """
    if first.nodes.shape != second.nodes.shape:
        raise ValueError(f"flows of different shapes cannot be compared: {first.nodes.shape[0] - 1} blocks x "
                         f"{first.nodes.shape[1]} tokens vs {second.nodes.shape[0] - 1} x {second.nodes.shape[1]}")
    if list(first.tokens) != list(second.tokens):
        raise ValueError("flows of different tokens cannot be compared: run both models on the same input")
    names = names or (first.model or "first model", second.model or "second model")
    return FlowComparison(first=first, second=second, nodes=first.nodes - second.nodes,
                          edges=first.edges - second.edges, names=(str(names[0]), str(names[1])))
