"""The explanation methods, as functions of a :class:`StreamRecord`: what one explained pass produced for one
token stream.

Each method reads, per block, the attention probabilities ``A`` (B, H, N, N), their gradients ``dy_t/dA``, their
relevance ``R_A``, or the input-level relevance, never model internals, and never a model's type. Token methods
return the readout row (B, N) of their token-to-token matrix (the [CLS] row for class-token models, spec §2.1
step 8; the end-of-text row for CLIP's text tower); input methods return relevance at the stream's input site
((B, C, H, W) pixels summed over channels, or (B, N) tokens summed over the hidden dimension). Where a
reference differs between model families (row normalisation of the product, Grad-CAM's head weights), the family
declares its convention (:class:`Conventions`) and the caller may override it (:class:`Options`).

References: Chefer, Gur & Wolf, CVPR 2021 (arXiv 2012.09838), "transformer attribution"; Chefer, Gur & Wolf,
ICCV 2021 (arXiv 2103.15679), "gradient rollout" (their generic attention-model explainability, "GAE");
Abnar & Zuidema, ACL 2020, "rollout"; Voita et al., ACL 2019, "partial LRP"; Binder et al. 2016, "LRP";
Selvaraju et al. 2017, Grad-CAM as adapted to attention by Chefer et al. 2021; Achtibat et al., ICML 2024,
"AttnLRP"; Ali et al., ICML 2022, "CP-LRP"; Bousselham et al. 2024 (arXiv 2404.03214), "LeGrad".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from relevance.rule_sets import (ATTNLRP_RULES, CP_LRP_RULES, LRP_BASELINE_RULES, TRANSFORMER_ATTRIBUTION_RULES,
                                 RuleSet)

#: Grad-CAM head weights: the mean gradient over the readout row's map entries (the ViT reference), or over the
#: whole map (the BERT reference, spec §3).
GRADCAM_WEIGHTS = ("readout_row", "whole_map")


@dataclass(frozen=True)
class Conventions:
    """A model family's reference conventions: data, so that no method tests a model's type.

    Attributes
    ----------
    row_normalize:
        Row-normalise ``I + M_b`` in transformer attribution's product (the BERT reference does, spec §2.2; the ViT
        reference does not, spec §2.1 step 6).
    gradcam_weights:
        ``"readout_row"`` (ViT: head weights are the mean gradient of the readout row's map entries, and the map
        is min-max normalised over that row) or ``"whole_map"`` (BERT: the mean over the whole map, which is
        min-max normalised as a whole before the row is read).
    start_layer:
        Default ``start_layer`` per method name where the family's reference has one (e.g. the CLIP notebook's
        -1 for ``gradient_rollout``); methods not named start at 0.
    input_site:
        Input site per method name where a method reads relevance somewhere other than the stream's first input
        site (BERT's ``lrp`` reads the encoder input, spec §1.5, while ``attnlrp`` reads the word embeddings as lxt
        does).
    """

    row_normalize: bool = False
    gradcam_weights: str = "readout_row"
    start_layer: Mapping[str, int] = field(default_factory=dict)
    input_site: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """The public options of the methods; ``None`` means the family's :class:`Conventions`."""

    row_normalize: bool | None = None
    gradcam_weights: str | None = None

    def resolve(self, conventions: Conventions) -> "Options":
        weights = self.gradcam_weights if self.gradcam_weights is not None else conventions.gradcam_weights
        if weights not in GRADCAM_WEIGHTS:
            raise ValueError(f"gradcam_weights must be one of {GRADCAM_WEIGHTS}, got {weights!r}")
        row_normalize = conventions.row_normalize if self.row_normalize is None else bool(self.row_normalize)
        return Options(row_normalize=row_normalize, gradcam_weights=weights)


@dataclass(frozen=True)
class StreamRecord:
    """What one explained pass produced for one token stream, for the blocks a method asked for (oldest first).

    ``attention``, ``gradients`` and ``attention_relevance`` are lists of (B, H, N, N); ``readout`` is (B, N);
    ``valid`` (B, N) is ``False`` on padding; ``columns`` (B, N) marks the tokens a map is made of (the patch
    tokens of an image, the valid tokens of a text); ``input_relevance`` is the relevance at the stream's input
    site, (B, ...); ``layer_gradients`` (B, H, N, N) per block are the gradients of the score computed from that
    block's own output tokens with respect to that block's attention (LeGrad). Entries a method did not ask for
    are ``None``.
    """

    attention: Sequence[Tensor]
    readout: Tensor
    valid: Tensor
    columns: Tensor
    options: Options
    gradients: Sequence[Tensor] | None = None
    attention_relevance: Sequence[Tensor] | None = None
    input_relevance: Tensor | None = None
    layer_gradients: Sequence[Tensor] | None = None


@dataclass(frozen=True)
class Method:
    """An explanation method and what it needs from the explained pass.

    Attributes
    ----------
    blocks:
        ``"from_start"`` (blocks ``start_layer..L-1``), ``"last"`` (the last block only) or ``"none"``.
    rules:
        The rule set of the relevance pass (``None``: no relevance pass, a plain autograd graph).
    output:
        ``"tokens"`` (a readout row over the stream's tokens) or ``"input"`` (relevance at the input site).
    needs_layer_gradients:
        The method reads, for each block used, the gradient of the score recomputed from that block's output with
        respect to that block's attention (:attr:`StreamRecord.layer_gradients`); the model's adapter supplies
        the per-layer score (:meth:`relevance.adapter.Adapter.output_from_layer`).
    default_start_layer:
        The method's own first block when neither the caller nor the family's conventions name one (negative
        counts from the end, clamped to the stream's depth), else 0.
    attribution:
        For the gradient and perturbation methods, computed by captum without a tape
        (:class:`relevance.attribution.AttributionMethod`); ``None`` for the methods of a :class:`StreamRecord`.
    """

    name: str
    title: str
    citation: str
    compute: Callable[[StreamRecord], Tensor | tuple[Tensor, Tensor]]
    blocks: str = "from_start"
    rules: RuleSet | None = None
    needs_gradients: bool = False
    needs_attention_relevance: bool = False
    needs_input_relevance: bool = False
    class_specific: bool = True
    uses_start_layer: bool = False
    output: str = "tokens"
    signed: bool = False
    needs_layer_gradients: bool = False
    default_start_layer: int | None = None
    attribution: Any = None

    @property
    def needs_backward(self) -> bool:
        return (self.needs_gradients or self.needs_attention_relevance or self.needs_input_relevance
                or self.needs_layer_gradients)


# ----------------------------------------------------------------------------------------------- helpers
def readout_row(matrix: Tensor, readout: Tensor) -> Tensor:
    """``readout @ matrix`` per sample: (B, N, N), (B, N) -> (B, N)."""
    return torch.einsum("bn,bnm->bm", readout.to(matrix.dtype), matrix)


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


def min_max(values: Tensor, where: Tensor) -> Tensor:
    """Min-max normalise each sample over the entries ``where`` is true (B, ...); other entries become 0; a
    constant map gives zeros, never NaN."""
    dims = tuple(range(1, values.dim()))
    big = torch.finfo(values.dtype).max
    low = values.masked_fill(~where, big).amin(dim=dims, keepdim=True)
    high = values.masked_fill(~where, -big).amax(dim=dims, keepdim=True)
    span = high - low
    scaled = (values - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(where & (span > 0), scaled, torch.zeros_like(scaled))


# ----------------------------------------------------------------------------------------------- methods
def transformer_attribution_maps(gradients: Sequence[Tensor], attention_relevance: Sequence[Tensor]) -> list[Tensor]:
    """``M_b = E_h[(dy_t/dA_b * R_A_b)^+]`` per block (spec §2.1 step 5; CVPR 2021 Eq. 13)."""
    return [head_mean((g * r).clamp(min=0)) for g, r in zip(gradients, attention_relevance)]


def aggregate_transformer_attribution(maps: Sequence[Tensor], normalize_rows: bool = False) -> Tensor:
    """``C = (I + M_{L-1}) ... (I + M_s)`` (B, N, N), optionally row-normalised (BERT, spec §2.2; spec §2.1
    steps 6-7)."""
    matrices = with_identity(maps)
    if normalize_rows:
        matrices = [row_normalize(m) for m in matrices]
    return chain(matrices)


def transformer_attribution(record: StreamRecord) -> tuple[Tensor, Tensor]:
    """Chefer et al. CVPR 2021: gradient-weighted LRP relevance of attention, chained over blocks (Eqs. 13-16),
    read on the readout row (spec §2.1 step 8). Returns the row (B, N) and the matrix ``C`` (B, N, N)."""
    maps = transformer_attribution_maps(record.gradients, record.attention_relevance)
    joint = aggregate_transformer_attribution(maps, record.options.row_normalize)
    return readout_row(joint, record.readout), joint


def gradient_rollout(record: StreamRecord) -> tuple[Tensor, Tensor]:
    """Chefer et al. ICCV 2021 self-attention rule: ``R <- R + E_h[(dA * A)^+] R`` from ``R = I`` (Eqs. 5-7)."""
    attention = record.attention
    relevance = torch.eye(attention[0].shape[-1], dtype=attention[0].dtype, device=attention[0].device)
    relevance = relevance.expand(attention[0].shape[0], -1, -1)
    for a, g in zip(attention, record.gradients):
        relevance = relevance + head_mean((g * a).clamp(min=0)) @ relevance
    return readout_row(relevance, record.readout), relevance


def rollout(record: StreamRecord) -> tuple[Tensor, Tensor]:
    """Abnar & Zuidema 2020: ``prod (E_h A + I) / rowsum``, class-agnostic (spec §3)."""
    averaged = with_identity([head_mean(a) for a in record.attention])
    joint = chain([row_normalize(m) for m in averaged])
    return readout_row(joint, record.readout), joint


def raw_attention(record: StreamRecord) -> tuple[Tensor, Tensor]:
    """Head-mean attention of the last block on the readout row (spec §3 "Raw attention")."""
    averaged = head_mean(record.attention[-1].clamp(min=0))
    return readout_row(averaged, record.readout), averaged


def attention_gradcam(record: StreamRecord) -> Tensor:
    """Grad-CAM on the last block's attention (spec §3): head weights ``w_h`` are the mean gradient, then
    ``(E_h[w_h A_h])^+``, min-max normalised as the references return it.

    ``gradcam_weights="readout_row"`` (ViT reference): ``w_h`` averages the readout row's map entries and the
    row is normalised over them. ``"whole_map"`` (BERT reference, and the ICCV 2021 generators, spec §4.8):
    ``w_h`` averages the whole map over the non-padding tokens, prefix tokens included (an image's class token is
    the only row a class-token model's score depends on), and the map is normalised as a whole before its readout
    row is read.
    """
    attention, gradient = record.attention[-1], record.gradients[-1]
    columns = record.columns
    if record.options.gradcam_weights == "whole_map":
        valid = (record.valid.unsqueeze(2) & record.valid.unsqueeze(1)).unsqueeze(1)  # (B, 1, N, N)
        weights = (gradient * valid).sum(dim=(2, 3), keepdim=True) / valid.sum(dim=(2, 3), keepdim=True)
        cam = (attention * weights).mean(dim=1).clamp(min=0)
        return readout_row(min_max(cam, valid[:, 0]), record.readout)
    rows = torch.einsum("bn,bhnm->bhm", record.readout.to(attention.dtype), attention)
    grad_rows = torch.einsum("bn,bhnm->bhm", record.readout.to(gradient.dtype), gradient)
    mask = columns.unsqueeze(1)
    weights = (grad_rows * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True)
    return min_max((rows * weights).mean(dim=1).clamp(min=0), columns)


def partial_lrp(record: StreamRecord) -> tuple[Tensor, Tensor]:
    """Voita et al. 2019 as in the CVPR 2021 baselines: ``E_h[(R_A)^+]`` of the last block, LRP rules (§3)."""
    averaged = head_mean(record.attention_relevance[-1].clamp(min=0))
    return readout_row(averaged, record.readout), averaged


def legrad(record: StreamRecord) -> Tensor:
    """LeGrad (Bousselham et al. 2024, arXiv 2404.03214; as its authors' ``legrad-torch`` 1.1 computes it for
    CLIP, ``LeWrapper.compute_legrad_clip``): for each block ``l`` used, the gradient of the
    score ``s_l`` computed from that block's own output tokens (through the model's final norm, pooling and head:
    :meth:`~relevance.adapter.Adapter.output_from_layer`) with respect to that block's attention ``A_l``, clamped
    at 0 and averaged over heads and query tokens, summed over the blocks: ``sum_l E_{h,i}[(ds_l/dA_l)^+]``
    (B, N), not normalised (the authors min-max normalise the upsampled sum for display, as
    :meth:`relevance.ImageMap.heatmaps` does).

    The mean runs over the valid (non-padding) query rows: for an image tower (nothing is padding) the authors'
    mean over all rows. In a causal text tower pooled at its end-of-text token, each block's score reads only
    that token's row of the block's attention, whose entries after it are padding (zero in the map).
    """
    total = None
    valid = record.valid if record.valid is not None else torch.ones_like(record.columns)
    rows = valid.to(record.attention[0].dtype)  # (B, N)
    count = rows.sum(dim=1, keepdim=True).clamp(min=1)
    for gradient in record.layer_gradients:
        signal = gradient.clamp(min=0).mean(dim=1)
        layer = torch.einsum("bn,bnm->bm", rows, signal) / count
        total = layer if total is None else total + layer
    return total


def input_relevance(record: StreamRecord) -> Tensor:
    """Relevance at the stream's input site, summed over channels (pixels) or the hidden dimension (tokens)."""
    relevance = record.input_relevance
    return relevance.sum(dim=1) if relevance.dim() == 4 else relevance.sum(dim=-1)


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
        Method("lrp", "Full LRP", "Binder et al. 2016; LRP baseline of " + _CVPR21, input_relevance,
               blocks="none", rules=LRP_BASELINE_RULES, needs_input_relevance=True, output="input", signed=True),
        Method("partial_lrp", "Partial LRP", "Voita et al. ACL 2019; baseline of " + _CVPR21, partial_lrp,
               blocks="last", rules=LRP_BASELINE_RULES, needs_attention_relevance=True),
        Method("transformer_attribution", "Transformer attribution", _CVPR21, transformer_attribution,
               rules=TRANSFORMER_ATTRIBUTION_RULES, needs_gradients=True, needs_attention_relevance=True,
               uses_start_layer=True),
        Method("gradient_rollout", "Gradient rollout (GAE)", _ICCV21 + ", self-attention rule (Eqs. 5-7)",
               gradient_rollout, needs_gradients=True, uses_start_layer=True),
        Method("attnlrp", "AttnLRP", "Achtibat et al., AttnLRP: Attention-Aware Layer-Wise Relevance Propagation "
               "for Transformers, ICML 2024", input_relevance, blocks="none", rules=ATTNLRP_RULES,
               needs_input_relevance=True, output="input", signed=True),
        Method("cp_lrp", "CP-LRP", "Ali et al., XAI for Transformers: Better Explanations through Conservative "
               "Propagation, ICML 2022", input_relevance, blocks="none", rules=CP_LRP_RULES,
               needs_input_relevance=True, output="input", signed=True),
        Method("legrad", "LeGrad", "Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via "
               "Feature Formation Sensitivity, arXiv 2404.03214 (2024)", legrad, needs_layer_gradients=True,
               uses_start_layer=True, default_start_layer=-2),
    )
}

#: Names used by later benchmark tables (spec §7).
ALIASES = {"transatt": "transformer_attribution", "gae": "gradient_rollout", "raw_attention": "attention",
           "full_lrp": "lrp", "attn_gradcam": "attention_gradcam", "cp-lrp": "cp_lrp", "attn_lrp": "attnlrp"}


def get_method(name: str) -> Method:
    """The method called ``name`` (or one of its aliases); a clear error listing the valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a name (str), got {type(name).__name__}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[key]


def list_methods() -> list[str]:
    """The names of the methods, in the order of the papers' tables."""
    return list(METHODS)


# ---------------------------------------------------------------------- gradient and perturbation methods
def _computed_by_captum(record: StreamRecord) -> Tensor:
    raise RuntimeError("this method is computed by relevance.attribution (captum), not from a tape record")


#: Name -> (title, citation) of the methods computed by captum on the package's forward function
#: (:mod:`relevance.attribution`): no tape, no rule nodes; options are keyword arguments of explain().
_ATTRIBUTION_TITLES = {
    "saliency": ("Saliency (|gradient|)", "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, "
                                          "ICLR workshop 2014"),
    "input_x_gradient": ("Input x gradient", "Shrikumar et al., Not Just a Black Box, arXiv 1605.01713, 2016"),
    "integrated_gradients": ("Integrated gradients", "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep "
                                                     "Networks, ICML 2017"),
    "smoothgrad": ("SmoothGrad", "Smilkov et al., SmoothGrad: removing noise by adding noise, arXiv 1706.03825, "
                                 "2017"),
    "occlusion": ("Occlusion", "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"),
    "lime": ("LIME", "Ribeiro, Singh & Guestrin, \"Why Should I Trust You?\", KDD 2016"),
    "kernel_shap": ("Kernel SHAP", "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, "
                                   "NeurIPS 2017"),
}


def _attribution_methods() -> dict[str, Method]:
    from relevance.attribution.specs import ATTRIBUTION_METHODS

    return {name: Method(name, title, citation, _computed_by_captum, blocks="none", output="input",
                         signed=ATTRIBUTION_METHODS[name].signed({o: v.default for o, v in
                                                                  ATTRIBUTION_METHODS[name].options.items()}),
                         attribution=ATTRIBUTION_METHODS[name])
            for name, (title, citation) in _ATTRIBUTION_TITLES.items()}


METHODS.update(_attribution_methods())
ALIASES.update({"ig": "integrated_gradients", "gradient_x_input": "input_x_gradient", "kernelshap": "kernel_shap",
                "shap": "kernel_shap", "gradient": "saliency"})
