"""relevance: explain what vision and language transformers look at.

``relevance.explain(model, images, method=..., target=..., start_layer=...)`` computes the maps of
Chefer et al. (CVPR 2021 transformer attribution; ICCV 2021 gradient rollout) and their baselines for a batch.
The engine imports no model code: models are built from :mod:`relevance.layers` (see the ``models`` package).
"""

from relevance.explain import (AttentionNotCapturedError, Explanation, class_probabilities, explain,
                               relevance_per_block)
from relevance.methods import ALIASES, METHODS, get_method, list_methods
from relevance.rules import LRP_BASELINE_RULES, TRANSFORMER_ATTRIBUTION_RULES, RuleSet

__all__ = [
    "ALIASES",
    "AttentionNotCapturedError",
    "Explanation",
    "LRP_BASELINE_RULES",
    "METHODS",
    "RuleSet",
    "TRANSFORMER_ATTRIBUTION_RULES",
    "class_probabilities",
    "explain",
    "get_method",
    "list_methods",
    "relevance_per_block",
]
__version__ = "0.1.0"
