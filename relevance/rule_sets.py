"""Rule sets: which rule (:mod:`relevance.rules`) each kind of operation uses. Configuration, not code.

Every LRP-aware operation of :mod:`relevance.ops` has a *kind*; while an explanation records with a rule set,
the operation's relevance pass calls ``rule_set.rule(kind).propagate(...)``. The model code never chooses a rule,
and there is one model implementation for all rule sets (no copied model files per rule set).

Presets:

* :data:`TRANSFORMER_ATTRIBUTION_RULES`: Chefer, Gur & Wolf, CVPR 2021 (``layers_ours``, spec §1.3): z+ with a
  shared denominator on linear layers, z^B on pixels, halving on products, renormalised additions (the BERT
  attention mask's included: the reference adds it with its ``Add`` module and keeps the scores' share), identity
  through LayerNorm, activations and softmax.
* :data:`LRP_BASELINE_RULES`: the LRP baselines that paper compares with (``layers_lrp``, spec §1.4): z+ with
  separate denominators and plain z-rule additions.
* :data:`ATTNLRP_RULES`: AttnLRP (Achtibat et al., ICML 2024, arXiv 2402.05602) in its Gradient x Input form:
  epsilon (-> 0) on linear layers, the uniform rule on products of activations, the softmax rule with its bias
  term, identity through the normalisation by holding its scale constant, identity through activations.
* :data:`CP_LRP_RULES`: CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through Conservative
  Propagation", ICML 2022, arXiv 2202.07304): attention probabilities and the normalisation scale held
  constant, Gradient x Input elsewhere; activations pass relevance by the identity rule as in AttnLRP (with the
  plain gradient, ``x f'(x) != f(x)`` for GELU and relevance would not be conserved; swap ``activation`` for
  :class:`~relevance.rules.Gradient` to get plain Gradient x Input there).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from relevance import rules as R

#: The kinds of operation that dispatch to a rule (the fields of :class:`RuleSet`).
OPERATION_KINDS = ("linear", "input_conv", "attention_scores", "attention_values", "product", "softmax",
                   "normalization", "activation", "add", "mask", "pooling", "scale", "fanout", "similarity")


@dataclass(frozen=True)
class RuleSet:
    """One rule per kind of operation.

    Attributes
    ----------
    name:
        A short name (for messages).
    propagates:
        ``"relevance"``: the rules pass relevance backwards, which is read directly at any tensor.
        ``"gradient"``: they pass a modified gradient ``g`` (LRP as Gradient x Input); relevance at ``x`` is
        ``x * g``.
    linear, input_conv, attention_scores, attention_values, product, softmax, normalization, activation, add,
    mask, pooling, scale, fanout:
        The rule of each kind of operation: linear layers; the convolution on pixels (patch embedding); the
        products ``Q K^T`` and ``A V``; other products of two activations of one stream; the softmax; LayerNorm
        and L2 normalisation; element-wise activations (GELU, QuickGELU, tanh); additions (residuals,
        embeddings); the attention-mask addition; token selection and pooling; multiplication by a constant or a
        parameter (attention scale, LayerScale, logit scale); a tensor used by several branches.
    similarity:
        The score of two embeddings from different towers, e.g. CLIP's per-pair image-text dot product
        (:func:`relevance.ops.pair_similarity`). Each tower is explained against the other's embedding held
        fixed, so each receives the whole score: relevance rule sets give each operand the full z-rule share
        (``BilinearSplit(share=1.0)``), gradient rule sets the plain gradient (``u * dS/du`` sums to ``S`` for a
        bilinear score). ``None`` picks that default from ``propagates``.
    """

    name: str
    propagates: str
    linear: R.Rule
    input_conv: R.Rule
    attention_scores: R.Rule
    attention_values: R.Rule
    product: R.Rule
    softmax: R.Rule
    normalization: R.Rule
    activation: R.Rule
    add: R.Rule
    mask: R.Rule
    pooling: R.Rule
    scale: R.Rule
    fanout: R.Rule
    similarity: R.Rule | None = None

    def __post_init__(self) -> None:
        if self.propagates not in ("relevance", "gradient"):
            raise ValueError(f"propagates must be 'relevance' or 'gradient', got {self.propagates!r}")
        if self.similarity is None:
            default = R.BilinearSplit(share=1.0) if self.propagates == "relevance" else R.Gradient()
            object.__setattr__(self, "similarity", default)
        for item in fields(self):
            if item.name in OPERATION_KINDS and not isinstance(getattr(self, item.name), R.Rule):
                raise TypeError(f"rule for {item.name!r} is not a relevance.rules.Rule")

    def rule(self, kind: str) -> R.Rule:
        """The rule of operations of ``kind`` (one of :data:`OPERATION_KINDS`)."""
        return getattr(self, kind)

    def with_rules(self, name: str | None = None, **rules: R.Rule) -> "RuleSet":
        """A copy with some rules replaced, e.g. ``ATTNLRP_RULES.with_rules(activation=Gradient())``."""
        unknown = set(rules) - set(OPERATION_KINDS)
        if unknown:
            raise ValueError(f"unknown operation kinds {sorted(unknown)}; kinds are {', '.join(OPERATION_KINDS)}")
        return replace(self, name=name or self.name + "+custom", **rules)


_IDENTITY, _GRADIENT = R.Identity(), R.Gradient()

#: The paper's layer set (``layers_ours``): conservative z+ and renormalised additions (spec §1.3).
TRANSFORMER_ATTRIBUTION_RULES = RuleSet(
    name="transformer_attribution",
    propagates="relevance",
    linear=R.AlphaBeta(alpha=1.0, shared_denominator=True),
    input_conv=R.ZBox(),
    attention_scores=R.BilinearSplit(share=0.5),
    attention_values=R.BilinearSplit(share=0.5),
    product=R.BilinearSplit(share=0.5),
    softmax=_IDENTITY,
    normalization=_IDENTITY,
    activation=_IDENTITY,
    add=R.RenormalizedAdd(),
    # BERT's reference adds the attention mask with its Add module and keeps the scores' share (all of it where a
    # key is not masked); its stabiliser makes this differ from the identity by O(1e-9 / |score|)
    mask=R.RenormalizedAdd(),
    pooling=R.ZRule(),
    scale=_IDENTITY,
    fanout=R.Fanout(),
    similarity=R.BilinearSplit(share=1.0),
)

#: The LRP baselines' layer set (``layers_lrp``, spec §1.4): separate normalisation, plain additions.
LRP_BASELINE_RULES = TRANSFORMER_ATTRIBUTION_RULES.with_rules(
    name="lrp_baseline", linear=R.AlphaBeta(alpha=1.0, shared_denominator=False), add=R.ZAdd(), mask=R.ZAdd())

#: AttnLRP (Achtibat et al., ICML 2024) as Gradient x Input with modified backward functions.
ATTNLRP_RULES = RuleSet(
    name="attnlrp",
    propagates="gradient",
    linear=_GRADIENT,
    input_conv=_GRADIENT,
    attention_scores=R.Uniform(0.5),
    attention_values=R.Uniform(0.5),
    product=R.Uniform(0.5),
    softmax=_GRADIENT,
    normalization=R.ConstantScale(),
    activation=R.IdentityGradient(),
    add=_GRADIENT,
    mask=_GRADIENT,
    pooling=_GRADIENT,
    scale=_GRADIENT,
    fanout=_GRADIENT,
    similarity=_GRADIENT,
)

#: CP-LRP (Ali et al., ICML 2022): attention and normalisation scale held constant, then Gradient x Input.
CP_LRP_RULES = ATTNLRP_RULES.with_rules(
    name="cp_lrp", attention_scores=_GRADIENT, attention_values=R.ConstantAttention())

PRESETS = {rules.name: rules for rules in (TRANSFORMER_ATTRIBUTION_RULES, LRP_BASELINE_RULES, ATTNLRP_RULES,
                                           CP_LRP_RULES)}
