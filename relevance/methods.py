"""The explanation methods, as functions of a :class:`Record` of one explained forward and backward pass.

Each method reads attention probabilities ``A`` (B, H, N, N) per block, their gradients ``dy_t/dA``, their LRP
relevance ``R_A`` or the pixel relevance, never model internals. Token maps are read on the readout row(s)
(the [CLS] row for class-token models, spec §2.1 step 8) and restricted to patch tokens.

References: Chefer, Gur & Wolf, CVPR 2021 (arXiv 2012.09838), "transformer attribution"; Chefer, Gur & Wolf,
ICCV 2021 (arXiv 2103.15679), "gradient rollout" (their generic attention-model explainability, "GAE");
Abnar & Zuidema, ACL 2020, "rollout"; Voita et al., ACL 2019, "partial LRP"; Binder et al. 2016, "LRP";
Selvaraju et al. 2017, Grad-CAM as adapted to attention by Chefer et al. 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from relevance.render import normalize
from relevance.rules import LRP_BASELINE_RULES, TRANSFORMER_ATTRIBUTION_RULES, RuleSet
from relevance.tape import TokenLayout


@dataclass(frozen=True)
class Record:
    """What one explained pass produced, for the blocks a method asked for (oldest block first).

    ``attention``, ``gradients`` and ``attention_relevance`` are lists of (B, H, N, N); ``input_relevance``
    is (B, C, H, W). Entries a method did not ask for are ``None``.
    """

    attention: Sequence[Tensor]
    layout: TokenLayout
    gradients: Sequence[Tensor] | None = None
    attention_relevance: Sequence[Tensor] | None = None
    input_relevance: Tensor | None = None


@dataclass(frozen=True)
class Method:
    """An explanation method and what it needs from the explained pass.

    ``blocks`` is ``"from_start"`` (blocks ``start_layer..L-1``) or ``"last"`` (the last block only).
    ``rules`` is the rule set of the relevance pass (``None``: no relevance pass, plain autograd graph).
    """

    name: str
    title: str
    citation: str
    compute: Callable[[Record], Tensor]
    blocks: str = "from_start"
    rules: RuleSet | None = None
    needs_gradients: bool = False
    needs_attention_relevance: bool = False
    needs_input_relevance: bool = False
    class_specific: bool = True
    uses_start_layer: bool = False

    @property
    def needs_backward(self) -> bool:
        return self.needs_gradients or self.needs_attention_relevance or self.needs_input_relevance


# ----------------------------------------------------------------------------------------------- helpers
def readout_row(matrix: Tensor, layout: TokenLayout) -> Tensor:
    """``readout @ matrix`` restricted to patch columns: (B, N, N) -> (B, P)."""
    row = torch.einsum("n,bnm->bm", layout.readout.to(matrix.dtype), matrix)
    return row[:, layout.num_prefix_tokens:]


def with_identity(matrices: Sequence[Tensor]) -> list[Tensor]:
    """``I + M`` for each (B, N, N) matrix (the residual term, spec §2.1 step 6)."""
    eye = torch.eye(matrices[0].shape[-1], dtype=matrices[0].dtype, device=matrices[0].device)
    return [m + eye for m in matrices]


def row_normalize(matrix: Tensor) -> Tensor:
    """Divide each row by its sum (rollout, spec §3)."""
    return matrix / matrix.sum(dim=-1, keepdim=True)


def chain(matrices: Sequence[Tensor]) -> Tensor:
    """``M_{L-1} ... M_{s+1} M_s``: later blocks multiply from the left (spec §2.1 step 7)."""
    joint = matrices[0]
    for matrix in matrices[1:]:
        joint = matrix @ joint
    return joint


def head_mean(tensor: Tensor) -> Tensor:
    """Plain mean over the head axis: (B, H, N, N) -> (B, N, N)."""
    return tensor.mean(dim=1)


# ----------------------------------------------------------------------------------------------- methods
def transformer_attribution_maps(gradients: Sequence[Tensor], attention_relevance: Sequence[Tensor]) -> list[Tensor]:
    """``M_b = E_h[(dy_t/dA_b * R_A_b)^+]`` per block (spec §2.1 step 5; CVPR 2021 Eq. 13)."""
    return [head_mean((g * r).clamp(min=0)) for g, r in zip(gradients, attention_relevance)]


def aggregate_transformer_attribution(maps: Sequence[Tensor], layout: TokenLayout) -> Tensor:
    """``C = (I + M_{L-1}) ... (I + M_s)``, no row normalisation, read on the readout row (spec §2.1 6-8)."""
    return readout_row(chain(with_identity(maps)), layout)


def transformer_attribution(record: Record) -> Tensor:
    """Chefer et al. CVPR 2021: gradient-weighted LRP relevance of attention, chained over blocks."""
    maps = transformer_attribution_maps(record.gradients, record.attention_relevance)
    return aggregate_transformer_attribution(maps, record.layout)


def gradient_rollout(record: Record) -> Tensor:
    """Chefer et al. ICCV 2021 self-attention rule: ``R <- R + E_h[(dA * A)^+] R`` from ``R = I`` (Eqs. 5-7)."""
    attention = record.attention
    relevance = torch.eye(attention[0].shape[-1], dtype=attention[0].dtype, device=attention[0].device)
    relevance = relevance.expand(attention[0].shape[0], -1, -1)
    for a, g in zip(attention, record.gradients):
        relevance = relevance + head_mean((g * a).clamp(min=0)) @ relevance
    return readout_row(relevance, record.layout)


def rollout(record: Record) -> Tensor:
    """Abnar & Zuidema 2020: ``prod (E_h A + I) / rowsum``, class-agnostic (spec §3)."""
    return readout_row(chain([row_normalize(m) for m in with_identity([head_mean(a) for a in record.attention])]),
                       record.layout)


def raw_attention(record: Record) -> Tensor:
    """Head-mean attention of the last block on the readout row (spec §3 "Raw attention")."""
    return readout_row(head_mean(record.attention[-1].clamp(min=0)), record.layout)


def attention_gradcam(record: Record) -> Tensor:
    """Grad-CAM on the last block's attention (spec §3): head weights are the mean gradient over the readout
    row's patch entries; ``(E_h[w_h A_h])^+``, min-max normalised as the reference returns it."""
    attention, gradient = record.attention[-1], record.gradients[-1]
    layout = record.layout
    rows = torch.stack([readout_row(attention[:, h], layout) for h in range(attention.shape[1])], dim=1)
    grad_rows = torch.stack([readout_row(gradient[:, h], layout) for h in range(gradient.shape[1])], dim=1)
    weights = grad_rows.mean(dim=-1, keepdim=True)
    return normalize((rows * weights).mean(dim=1).clamp(min=0).unsqueeze(1)).squeeze(1)


def partial_lrp(record: Record) -> Tensor:
    """Voita et al. 2019 as in the CVPR 2021 baselines: ``E_h[(R_A)^+]`` of the last block, LRP rules (§3)."""
    return readout_row(head_mean(record.attention_relevance[-1].clamp(min=0)), record.layout)


def full_lrp(record: Record) -> Tensor:
    """LRP down to the pixels through the z^B rule, summed over channels: (B, H, W) (spec §3 "Full LRP")."""
    return record.input_relevance.sum(dim=1)


_CVPR21 = "Chefer, Gur & Wolf, Transformer Interpretability Beyond Attention Visualization, CVPR 2021"
_ICCV21 = "Chefer, Gur & Wolf, Generic Attention-model Explainability for Interpreting Bi-Modal and " \
          "Encoder-Decoder Transformers, ICCV 2021"

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("attention", "Raw attention", "Last-block attention (baseline of Chefer et al. CVPR 2021)",
               raw_attention, blocks="last", class_specific=False),
        Method("rollout", "Attention rollout", "Abnar & Zuidema, Quantifying Attention Flow, ACL 2020",
               rollout, class_specific=False, uses_start_layer=True),
        Method("attention_gradcam", "Attention Grad-CAM", "Selvaraju et al. ICCV 2017, on attention as in "
               + _CVPR21, attention_gradcam, blocks="last", needs_gradients=True),
        Method("lrp", "Full LRP", "Binder et al. 2016; LRP baseline of " + _CVPR21, full_lrp,
               blocks="none", rules=LRP_BASELINE_RULES, needs_input_relevance=True),
        Method("partial_lrp", "Partial LRP", "Voita et al. ACL 2019; baseline of " + _CVPR21, partial_lrp,
               blocks="last", rules=LRP_BASELINE_RULES, needs_attention_relevance=True),
        Method("transformer_attribution", "Transformer attribution", _CVPR21, transformer_attribution,
               rules=TRANSFORMER_ATTRIBUTION_RULES, needs_gradients=True, needs_attention_relevance=True,
               uses_start_layer=True),
        Method("gradient_rollout", "Gradient rollout (GAE)", _ICCV21 + ", self-attention rule (Eqs. 5-7)",
               gradient_rollout, needs_gradients=True, uses_start_layer=True),
    )
}

#: Names used by later benchmark tables (spec §7).
ALIASES = {"transatt": "transformer_attribution", "gae": "gradient_rollout", "raw_attention": "attention",
           "full_lrp": "lrp", "attn_gradcam": "attention_gradcam"}


def get_method(name: str) -> Method:
    """The method called ``name`` (or one of its aliases); a clear error listing the valid names otherwise."""
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[key]


def list_methods() -> list[str]:
    """The names of the methods, in the order of the paper's tables."""
    return list(METHODS)
