"""The attention views' numbers and pictures: capture, grid, neuron numbers, HTML fragments (no browser here;
see test_views_browser.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import relevance
import relevance.images
import relevance.models
import relevance.views as V
from relevance.render.colormaps import colormap_table, levels
from relevance.render.image import colorize, upsample
from relevance.tape import AttentionKey, recording
from text_standin import TinyTextModel

SCENE = "assets/examples/scene-20000004_green-square_magenta-triangle_red-circle.png"
TEXTS = ["the film was wonder ##ful", "boring plot"]


@pytest.fixture(scope="module")
def vit():
    return relevance.models.create("shapes-vit")


@pytest.fixture(scope="module")
def text_model():
    return TinyTextModel(heads=3, depth=3)


def recorded_attention(model, inputs) -> list[torch.Tensor]:
    """The attention maps the model records, read off a tape directly (independently of relevance.views)."""
    adapter = relevance.adapter_for(model)
    batch, _ = adapter.prepare(inputs)
    with recording() as tape, torch.no_grad():
        adapter.forward(batch)
        stream = next(iter(adapter.depths()))
        return [a.clone() for a in tape.attention_of(stream)]


def test_query_key_vectors_are_recorded_only_when_asked_and_give_the_attention(vit, text_model):
    for model, inputs in ((vit, SCENE), (text_model, TEXTS)):
        adapter = relevance.adapter_for(model)
        batch, _ = adapter.prepare(inputs)
        with recording() as tape, torch.no_grad():
            adapter.forward(batch)
            assert tape.query_key == {} and tape.attention, "explanations must not keep query/key vectors"
        with recording(query_key=True) as tape, torch.no_grad():
            adapter.forward(batch)
            stream = next(iter(adapter.depths()))
            for layer in range(adapter.depths()[stream]):
                site = AttentionKey(stream, layer)
                vectors, attention = tape.query_key[site], tape.attention[site]
                scores = vectors.scale * vectors.queries @ vectors.keys.transpose(-2, -1)
                if stream == "text":
                    scores = scores.masked_fill(~batch.inputs["valid"][:, None, None, :], float("-inf"))
                torch.testing.assert_close(scores.softmax(-1), attention, atol=1e-6, rtol=1e-5)


def test_both_towers_of_clip_record_query_key_vectors_that_give_their_attention():
    model = relevance.models.create("shapes-clip")
    adapter = relevance.adapter_for(model)
    batch, _ = adapter.prepare(SCENE, texts=["a green square", "a photo of a red circle and a blue star"])
    with recording(query_key=True) as tape, torch.no_grad():
        adapter.forward(batch)
        for stream, depth in adapter.depths().items():
            for layer in range(depth):
                vectors, attention = tape.query_key[AttentionKey(stream, layer)], tape.attention[AttentionKey(stream,
                                                                                                             layer)]
                scores = vectors.scale * vectors.queries @ vectors.keys.transpose(-2, -1)
                if stream == "text":  # CLIP's text tower is causal: a token sees itself and the tokens before it
                    length = scores.shape[-1]
                    later = torch.ones(length, length, dtype=torch.bool).triu(1)
                    scores = scores.masked_fill(later, float("-inf"))
                torch.testing.assert_close(scores.softmax(-1), attention, atol=1e-6, rtol=1e-5)
        assert {site.stream for site in tape.query_key} == {"image", "text"}


def test_capture_keeps_the_recorded_attention_tokens_and_picture(vit, text_model):
    expected = torch.stack(recorded_attention(vit, SCENE), dim=1)[0].numpy()
    data = V.capture(vit, SCENE).sample(0)
    np.testing.assert_allclose(data.attention, expected, atol=1e-7)
    assert data.tokens[:3] == ["[CLS]", "0,0", "0,1"] and data.tokens[-1] == "7,7" and data.special[:2] == [True, False]
    assert data.readout_index() == 0 and data.grid_size == (8, 8) and data.num_prefix_tokens == 1
    pixels = relevance.images.prepare(SCENE, vit.data_config).pixels[0]  # normalised with mean = std = 0.5
    seen = np.rint((pixels * 0.5 + 0.5).permute(1, 2, 0).numpy() * 255)
    assert data.picture.shape == (64, 64, 3) and np.abs(data.picture - seen).max() <= 1

    padded = torch.stack(recorded_attention(text_model, TEXTS), dim=1)[1].numpy()  # second text is padded
    short = V.capture(text_model, TEXTS).sample(1)
    assert short.tokens == ["[CLS]", "boring", "plot", "[SEP]"] and short.special == [True, False, False, True]
    np.testing.assert_allclose(short.attention, padded[:, :, :4, :4], atol=1e-7)
    np.testing.assert_allclose(short.attention.sum(-1), 1.0, atol=1e-5)  # nothing was lost on the padding


def test_the_image_grid_tiles_are_each_heads_cls_attention_drawn_where_they_belong(vit):
    attention = torch.stack(recorded_attention(vit, SCENE), dim=1)[0].numpy()  # (L, H, 65, 65)
    data = V.capture(vit, SCENE).sample(0)
    grid = V.attention_grid(data, tile=96)
    layers, heads = attention.shape[:2]
    assert grid.values.shape == (layers, heads, 8, 8) and grid.query == 0
    np.testing.assert_allclose(grid.values, attention[:, :, 0, 1:].reshape(layers, heads, 8, 8), atol=1e-7)
    picture = np.asarray(Image.fromarray(data.picture).resize((96, 96), Image.Resampling.BILINEAR))
    for (layer, head), (top, left, height, width) in grid.boxes.items():
        assert (height, width) == (96, 96)
        values = attention[layer, head, 0, 1:].reshape(8, 8)  # coloured from their own minimum to maximum
        scaled = (upsample(torch.from_numpy(values).double(), 96).numpy() - values.min()) / np.ptp(values)
        heat = colorize(scaled, "jet").astype(float)
        tile = grid.image[top:top + height, left:left + width].astype(float)
        assert np.abs(tile - (0.4 * picture + 0.6 * heat)).max() <= 2, (layer, head)
    # rows are blocks top to bottom, columns heads left to right
    assert grid.boxes[(0, 0)][0] < grid.boxes[(1, 0)][0] and grid.boxes[(0, 0)][1] < grid.boxes[(0, 1)][1]
    assert grid.boxes[(0, 1)][0] == grid.boxes[(0, 0)][0]


def test_the_text_grid_tiles_are_the_attention_matrices_cell_by_cell(text_model):
    data = V.capture(text_model, TEXTS).sample(0)
    grid = V.attention_grid(data, scale="tile")
    n = data.num_tokens
    table = colormap_table("reds")
    np.testing.assert_array_equal(grid.values, data.attention)
    for (layer, head), (top, left, height, width) in grid.boxes.items():
        cell = height // n
        assert height == width == cell * n
        matrix = data.attention[layer, head]
        expected = table[levels(matrix / matrix.max())]
        centres = grid.image[top + cell // 2:top + height:cell, left + cell // 2:left + width:cell]
        np.testing.assert_array_equal(centres, expected)


def test_grid_scales_share_the_colour_range():
    data = V.capture(TinyTextModel(heads=2, depth=2), TEXTS).sample(0)
    tile, layer, whole = (V.attention_grid(data, scale=s).bounds for s in ("tile", "layer", "grid"))
    np.testing.assert_allclose(tile[..., 1], data.attention.max(axis=(2, 3)))
    np.testing.assert_allclose(layer[..., 1], np.repeat(data.attention.max(axis=(1, 2, 3))[:, None], 2, axis=1))
    assert np.all(whole[..., 1] == data.attention.max()) and np.all(whole[..., 0] == 0)
    with pytest.raises(ValueError, match="scale"):
        V.attention_grid(data, scale="row")


def test_neuron_numbers_explain_the_attention(text_model, vit):
    for model, inputs in ((text_model, TEXTS), (vit, SCENE)):
        capture = V.capture(model, inputs, query_key=True)
        data = capture.sample(capture.size - 1)
        for layer in range(data.num_layers):
            numbers = V.neuron_numbers(data, layer, data.num_heads - 1, data.num_tokens - 1)
            np.testing.assert_allclose(numbers.products.sum(-1) * data.scales[layer], numbers.scores)
            softmax = np.exp(numbers.scores - numbers.scores.max())
            np.testing.assert_allclose(softmax / softmax.sum(), numbers.attention, atol=2e-6)
    with pytest.raises(V.QueryKeyNotRecordedError, match="record_query_key"):
        V.neuron_view(V.capture(vit, SCENE))


def test_every_rendering_has_fresh_ids_and_the_page_escapes_tokens(text_model):
    capture = V.capture(text_model, ["the </script><b>x</b> film"], query_key=True, gradients=True)
    views = [V.head_view(capture), V.model_view(capture), V.neuron_view(capture), V.flow_view(capture)]
    for view in views:
        first, second = view._repr_html_(), view._repr_html_()
        ids = re.findall(r'<div class="rv-view rv-\w+" id="(rv-[0-9a-f]{12})"', first + second)
        assert len(ids) == 2 and ids[0] != ids[1]
        assert "</script><b>" not in first and "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in first
        assert first.count("<script") == first.count("</script>") == 2
        assert "src=\"http" not in first and "require(" not in first  # nothing to load
    page = V.page(views)
    assert page.startswith("<!DOCTYPE html>") and page.count('class="rv-view ') == 4


def test_view_arguments_are_checked(vit):
    capture = V.capture(vit, SCENE)
    with pytest.raises(ValueError, match="layer"):
        V.head_view(capture, layer=4)
    with pytest.raises(ValueError, match="heads"):
        V.head_view(capture, heads=[7])
    with pytest.raises(ValueError, match="query"):
        V.attention_grid(capture, query=65)
    with pytest.raises(ValueError, match="inputs"):
        V.head_view(capture, SCENE)
    assert V.head_view(vit, SCENE, layer=-1).payload["layer"] == 3  # a model and inputs work too


def test_model_view_picture_draws_every_head(vit):
    data = V.capture(vit, SCENE).sample(0)
    image = V.model_view_image(data)
    assert image.dtype == np.uint8 and image.shape[0] > 4 * 64 and image.shape[1] > 4 * 84
    fragment = V.model_view(data).html()
    assert fragment.count('src="data:image/png;base64,') == 1
