"""Gradient and perturbation methods, computed by captum on the package's forward function.

``relevance.explain(model, inputs, method=m, **options)`` with ``m`` one of ``saliency``, ``input_x_gradient``,
``integrated_gradients``, ``smoothgrad``, ``occlusion``, ``lime``, ``kernel_shap``. captum is the implementation (its
classes, its baselines, its ``internal_batch_size``); this package supplies

* the forward function captum sees (:mod:`.forward`): the values at one input site of one token stream (the pixels
  of a ViT, the word embeddings of BERT, one tower's input of CLIP) -> the explained score of each sample (the
  engine's :class:`~relevance.targets.Target`), with everything else computed from the batch as usual and positions
  that must never change (special tokens, padding) held at their own values;
* baselines (zero, a constant, a tensor, a function, or embedding-space token baselines such as [PAD]);
* feature masks (:mod:`.features`: pixels, the model's patches, SLIC superpixels, tokens) and the mapping of
  captum's attributions back to a map on the pixels, the patch grid or the tokens;
* per-sample seeding (:mod:`.run`): the randomised methods give the same map for a sample alone or in a batch.

The catalogue of methods and their options is :mod:`.specs`.
"""

from relevance.attribution.specs import ATTRIBUTION_METHODS, AttributionMethod, Option

__all__ = ["ATTRIBUTION_METHODS", "AttributionMethod", "Option"]
