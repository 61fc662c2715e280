"""relevance: explain what vision and language transformers look at.

``relevance.explain(model, inputs, method=..., target=..., start_layer=...)`` computes, for a batch, the maps of
Chefer et al. (CVPR 2021 transformer attribution; ICCV 2021 gradient rollout), their baselines, AttnLRP and
CP-LRP, and the gradient and perturbation baselines computed by captum (saliency, input x gradient, integrated
gradients, SmoothGrad, occlusion, LIME, Kernel SHAP: :mod:`relevance.attribution`, options as keyword arguments),
one map per token stream (image patches, text tokens). The engine imports no model code: models are
built from :mod:`relevance.layers` and talk to the engine through their adapter (:mod:`relevance.adapter`);
``relevance.models`` holds the families (ViT/DeiT from timm, ...).
"""

from relevance.adapter import Adapter, ModelInfo, adapter_for
from relevance.explain import AttentionNotCapturedError, explain, relevance_per_block
from relevance.explanation import Explanation, ImageMap, TextMap, class_probabilities
from relevance.methods import ALIASES, METHODS, Conventions, get_method, list_methods
from relevance.rule_sets import (ATTNLRP_RULES, CP_LRP_RULES, LRP_BASELINE_RULES, TRANSFORMER_ATTRIBUTION_RULES,
                                 RuleSet)
from relevance.targets import ClassTarget, PairCosine, PairScore, ScoreFunction, Target

__all__ = [
    "ALIASES",
    "ATTNLRP_RULES",
    "Adapter",
    "AttentionNotCapturedError",
    "CP_LRP_RULES",
    "ClassTarget",
    "Conventions",
    "Explanation",
    "ImageMap",
    "LRP_BASELINE_RULES",
    "METHODS",
    "ModelInfo",
    "PairCosine",
    "PairScore",
    "RuleSet",
    "ScoreFunction",
    "TRANSFORMER_ATTRIBUTION_RULES",
    "Target",
    "TextMap",
    "adapter_for",
    "class_probabilities",
    "explain",
    "get_method",
    "list_methods",
    "relevance_per_block",
]
__version__ = "0.2.0"
