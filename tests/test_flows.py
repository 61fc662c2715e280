"""Attention flows (DeRose, Wang & Berger 2020) against rollout computed independently, and comparisons of two
checkpoints of the shapes ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import relevance
import relevance.models
import relevance.views as V
from relevance.flows import attention_flow, compare_flows, mixing_matrices, through, trace
from relevance.models.embedded import build_timm_model, load_config
from relevance.models.vit import from_timm
from test_views import SCENE, TEXTS, recorded_attention
from text_standin import TinyTextModel


@pytest.fixture(scope="module")
def vit():
    return relevance.models.create("shapes-vit")


@pytest.fixture(scope="module")
def reinitialised(vit):
    """A second checkpoint of the shapes ViT's architecture: randomly re-initialised weights."""
    torch.manual_seed(123)
    model = from_timm(build_timm_model(load_config()["model"]).eval())
    model.info.data_config, model.info.name = vit.info.data_config, "re-initialised"
    return model


def rollout_by_hand(attention: list[torch.Tensor], start: np.ndarray, heads=None) -> np.ndarray:
    """Abnar & Zuidema's rollout, written out: start @ A'_{L-1} ... A'_0 with A' = rownorm(I + mean_h A)."""
    vector = start.astype(np.float64)
    for layer in reversed(range(len(attention))):
        a = attention[layer][0].double().numpy()
        a = a[heads if heads is not None else slice(None)].mean(axis=0) + np.eye(a.shape[-1])
        vector = vector @ (a / a.sum(axis=1, keepdims=True))
    return vector


def test_the_readout_flow_reaching_the_inputs_is_rollout(vit):
    attention = recorded_attention(vit, SCENE)
    flow = attention_flow(vit, SCENE)
    cls = np.eye(65)[0]
    np.testing.assert_allclose(flow.inputs, rollout_by_hand(attention, cls), rtol=1e-5, atol=1e-7)
    explained = relevance.explain(vit, SCENE, method="rollout").relevance[0].numpy()
    np.testing.assert_allclose(flow.inputs[1:].reshape(8, 8), explained, rtol=1e-5, atol=1e-7)
    # every block boundary carries the whole flow (rows of M sum to 1), and nodes are the sums of their edges
    np.testing.assert_allclose(flow.nodes.sum(axis=1), 1.0, atol=1e-9)
    for layer in range(flow.num_layers):
        np.testing.assert_allclose(flow.edges[layer].sum(axis=0), flow.nodes[layer], atol=1e-12)
        np.testing.assert_allclose(flow.edges[layer].sum(axis=1), flow.nodes[layer + 1], atol=1e-12)
    assert flow.nodes[-1].tolist() == cls.tolist() and flow.output == "readout"


def test_head_subsets_and_selected_tokens_follow_rollout_by_hand(vit):
    attention = recorded_attention(vit, SCENE)
    start = np.eye(65)[37]
    flow = attention_flow(vit, SCENE, output=37, heads=[3, 1])
    np.testing.assert_allclose(flow.inputs, rollout_by_hand(attention, start, heads=[1, 3]), rtol=1e-5, atol=1e-7)
    assert flow.heads == (1, 3) and flow.output == 37
    other = attention_flow(vit, SCENE, output=37, heads=[0])
    assert np.abs(other.inputs - flow.inputs).max() > 1e-3, "head selection must change the flow"


def test_the_gradient_weighted_flow_is_gradient_rollout(vit):
    capture = V.capture(vit, SCENE, gradients=True, target="circle")
    flow = attention_flow(capture, weights="gradient")
    explained = relevance.explain(vit, SCENE, method="gradient_rollout", target="circle").relevance[0].numpy()
    np.testing.assert_allclose(flow.inputs[1:].reshape(8, 8), explained, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="gradients"):
        attention_flow(V.capture(vit, SCENE), weights="gradient")


def test_text_flows_skip_padding_and_match_explain():
    model = TinyTextModel(heads=2, depth=3)
    capture = V.capture(model, TEXTS, gradients=True)
    explained = relevance.explain(model, TEXTS, method="rollout").relevance.numpy()
    for index in range(2):
        flow = attention_flow(capture, sample=index)
        n = len(flow.tokens)
        np.testing.assert_allclose(flow.inputs, explained[index, :n], rtol=1e-5, atol=1e-7)
        assert np.all(explained[index, n:] == 0)


def test_trace_by_hand_on_a_two_token_example():
    mixing = np.array([[[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.25, 0.75]]])
    nodes, edges = trace(mixing, np.array([0.0, 1.0]))
    np.testing.assert_allclose(nodes, [[0.125, 0.875], [0.25, 0.75], [0.0, 1.0]])
    np.testing.assert_allclose(edges[1], [[0, 0], [0.25, 0.75]])
    np.testing.assert_allclose(edges[0], [[0.125, 0.125], [0.0, 0.75]])
    np.testing.assert_allclose(mixing_matrices(np.ones((1, 2, 2, 2)) / 2)[0], [[0.75, 0.25], [0.25, 0.75]])


def test_two_checkpoints_compare_side_by_side_and_as_a_difference(vit, reinitialised):
    first, second = attention_flow(vit, SCENE), attention_flow(reinitialised, SCENE)
    comparison = compare_flows(first, second, ("embedded", "re-initialised"))
    np.testing.assert_allclose(comparison.nodes, first.nodes - second.nodes)
    np.testing.assert_allclose(comparison.edges, first.edges - second.edges)
    assert np.abs(comparison.nodes[0]).max() > 1e-3, "different weights, different flows"
    np.testing.assert_allclose(comparison.nodes.sum(axis=1), 0.0, atol=1e-9)  # both carry the whole flow
    view = V.flow_comparison_view(vit, reinitialised, SCENE, names=("embedded", "re-initialised"))
    np.testing.assert_allclose(view.extras["comparison"].nodes, comparison.nodes)
    image = V.flow_comparison_image(comparison)
    single = V.flow_image(first)
    assert image.dtype == np.uint8 and image.shape[1] > 2.5 * single.shape[1] > 0
    text = attention_flow(TinyTextModel(), TEXTS[0])
    with pytest.raises(ValueError, match="compared"):
        compare_flows(first, text)


def test_tracing_a_node_carries_its_flow_through_every_block(vit):
    flow = attention_flow(vit, SCENE)
    for layer, token in ((0, 12), (2, 40), (4, 0)):
        edges = through(flow, layer, token)
        np.testing.assert_allclose(edges.sum(axis=(1, 2)), flow.nodes[layer, token], rtol=1e-9, atol=1e-15)
        assert np.all(edges <= flow.edges + 1e-15) and np.all(edges >= 0)  # a part of each edge's flow
    np.testing.assert_allclose(through(flow, 4, 0), flow.edges)  # the output node carries everything
    with pytest.raises(ValueError, match="no node"):
        through(flow, 5, 0)
