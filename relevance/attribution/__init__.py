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

What a model family provides (nothing specific to these methods; the defaults cover ViT, BERT-like text models and
two-tower image-text models whose inputs are per sample):

* each input site marked with :func:`relevance.ops.mark_input` (``stream=``, ``site=``), the returned tensor used
  downstream; a stream's first site is what these methods attribute to by default (pixels, word embeddings);
* the stream's token space recorded with :func:`relevance.ops.record_space` (modality; the patch grid of an image
  stream, for ``features="patches"``);
* the stream's inputs in :attr:`relevance.adapter.Batch.streams`: :class:`~relevance.adapter.ImageInputs`, or
  :class:`~relevance.adapter.TextInputs` with ``valid`` and ``special`` (the positions never perturbed);
* model inputs whose first dimension is the batch (:meth:`relevance.adapter.Adapter.select_rows` indexes them), or
  an override of ``select_rows`` (inputs shared by all samples, e.g. zero-shot prompts);
* for token baselines (``"pad"``, ``"mask"``, ``"unk"``): a tokenizer in :class:`~relevance.adapter.ModelInfo` with
  ``pad_token_id`` etc., and the stream's token ids held once in ``Batch.inputs`` (else an override of
  :meth:`~relevance.adapter.Adapter.with_token_ids`);
* targets that hold per-sample choices implement :meth:`relevance.targets.Target.select` (class targets do).
"""

from relevance.attribution.specs import ATTRIBUTION_METHODS, AttributionMethod, Option

__all__ = ["ATTRIBUTION_METHODS", "AttributionMethod", "Option"]
