"""Attention views that never go blank: grids, head, model and neuron views, attention flows.

``relevance.views.capture(model, inputs)`` runs the model once and keeps, per token stream and sample, the
attention of every head of every block (:class:`TokenAttention`); the views draw it:

* :func:`attention_grid`: a layers x heads grid of heatmaps as a picture (each head's [CLS] attention over the
  image for ViT; attention matrices for text);
* :func:`head_view`, :func:`model_view`, :func:`neuron_view`: the three views of BertViz (Vig 2019; the neuron
  view also after exBERT, Hoover et al. 2020) as self-contained HTML (:class:`View`: one fragment, inline style
  and script, a static drawing that shows without JavaScript, fresh element ids so that several views share a
  notebook; ``_repr_html_`` in notebooks, ``.save(path)`` for a standalone page);
* :func:`flow_view`, :func:`flow_comparison_view` and their pictures :func:`flow_image`,
  :func:`flow_comparison_image`: attention flows (DeRose, Wang & Berger 2020; numbers in :mod:`relevance.flows`),
  one model's, or two models' on the same input side by side with their difference.

What a model family provides: it records its attention (``relevance.ops.record_attention``), its token space
(``record_space``, modality and padding) and its pooling (``select_token``/``mean_tokens``), as every family does
for the explanations; its adapter's batch names the tokens (:class:`~relevance.adapter.TextInputs`); and, for the
neuron view only, its attention calls ``relevance.ops.record_query_key(q, k, stream=..., layer=..., scale=...)``,
which records nothing unless a view asks.
"""

from relevance.views.capture import AttentionCapture, QueryKeyNotRecordedError, TokenAttention, capture
from relevance.views.flow import flow_comparison_image, flow_comparison_view, flow_image, flow_view
from relevance.views.grid import AttentionGrid, attention_grid
from relevance.views.head import head_view
from relevance.views.html import View, page
from relevance.views.model import model_view, model_view_image
from relevance.views.neuron import NeuronNumbers, neuron_numbers, neuron_view

__all__ = [
    "AttentionCapture",
    "AttentionGrid",
    "NeuronNumbers",
    "QueryKeyNotRecordedError",
    "TokenAttention",
    "View",
    "attention_grid",
    "capture",
    "flow_comparison_image",
    "flow_comparison_view",
    "flow_image",
    "flow_view",
    "head_view",
    "model_view",
    "model_view_image",
    "neuron_numbers",
    "neuron_view",
    "page",
]
