"""Explaining CLIP pairs: the ICCV 2021 notebook's rule against a derivation written here, LeGrad against its
authors' package (legrad-torch), conservation per tower, a batch against its pairs one by one, default start
layers; LeGrad on a ViT classifier against a derivation with timm's own head."""

import copy

import pytest
import torch
from clip_models import TEXTS, hf_model, images, open_clip_model

import relevance
from relevance.models import clip
from relevance.tape import recording

METHODS = relevance.list_methods()


@pytest.fixture(scope="module")
def models64():
    return {"open_clip": clip.from_open_clip(open_clip_model(vision=dict(layers=3), text=dict(layers=3))).double(),
            "hf": clip.from_hf(hf_model(vision_layers=3, text_layers=3)).double()}


def notebook_rule(model, pixels: torch.Tensor, ids: torch.Tensor, start: int, start_text: int):
    """The ICCV 2021 CLIP rule written out (spec §4.7): the gradient of the sum of the pair logits (the diagonal of
    logits_per_image) with respect to each recorded attention map, ``R <- R + E_h[(dA * A)^+] R`` from the start
    block, the [CLS] row over the patches and each text's end-of-text row."""
    with recording() as tape:
        logits = model(pixels, ids)
        maps = {stream: tape.attention_of(stream) for stream in ("image", "text")}
        flat = maps["image"] + maps["text"]
        gradients = torch.autograd.grad(logits.sum(), flat)
    out = {}
    for stream, first in (("image", start), ("text", start_text)):
        attention = maps[stream]
        grads = gradients[:len(attention)] if stream == "image" else gradients[len(maps["image"]):]
        first = first % len(attention)
        relevance_ = torch.eye(attention[0].shape[-1], dtype=logits.dtype).expand(len(ids), -1, -1)
        for a, g in zip(attention[first:], grads[first:]):
            relevance_ = relevance_ + (g * a).clamp(min=0).mean(dim=1) @ relevance_
        out[stream] = relevance_
    eot = model.pool_index(ids)
    return out["image"][:, 0, 1:], out["text"][torch.arange(len(ids)), eot]


@pytest.mark.parametrize("converter", ["open_clip", "hf"])
@pytest.mark.parametrize("start", [None, 0, 1])
def test_gradient_rollout_is_the_notebooks_rule_for_each_pair(models64, converter, start):
    model = models64[converter]
    pixels = images(1)
    ids = model.tokenizer(TEXTS, 77)[:, :13]
    result = relevance.explain(model, pixels, texts=ids, method="gradient_rollout", start_layer=start)
    first = -1 if start is None else start  # the notebook's default: the last block only (MM#8, MM#10)
    assert result.start_layers == {"image": first % 3, "text": first % 3}
    image, text = notebook_rule(model, pixels.expand(3, -1, -1, -1), ids, first, first)
    torch.testing.assert_close(result.image_relevance.flatten(1), image, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(result.text_relevance, text[:, :result.text_relevance.shape[1]], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(result.scores, model(pixels.expand(3, -1, -1, -1), ids).detach())


def test_gradient_rollout_start_layers_per_tower_and_broadcast_images(models64):
    model = models64["open_clip"]
    pixels = images(2)
    result = relevance.explain(model, pixels, texts=TEXTS[2], method="gradient_rollout", start_layer=0,
                               start_layer_text=-2)
    assert result.start_layers == {"image": 0, "text": 1}
    ids = model.tokenizer([TEXTS[2]] * 2, 77)[:, :13]
    image, text = notebook_rule(model, pixels, ids, 0, -2)
    torch.testing.assert_close(result.image_relevance.flatten(1), image, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(result.text_relevance, text[:, :result.text_relevance.shape[1]], rtol=1e-10, atol=1e-13)
    other = relevance.explain(model, pixels, texts=TEXTS[2], method="gradient_rollout")
    assert (other.image_relevance - result.image_relevance).abs().max() > 1e-2 * result.image_relevance.abs().max()


def test_attention_gradcam_weights_heads_by_the_whole_maps_mean_gradient(models64):
    # spec §4.8, the ICCV 2021 generators' Grad-CAM: head weights are the mean gradient over the whole last map
    # (every token: an image's class-token row is the only one its score depends on), (E_h[w_h A_h])^+, min-max
    # over the whole map, then the readout row
    model = models64["open_clip"]
    pixels = images(1)
    ids = model.tokenizer(TEXTS, 77)[:, :13]
    result = relevance.explain(model, pixels, texts=ids, method="attention_gradcam")
    with recording() as tape:
        logits = model(pixels.expand(3, -1, -1, -1), ids)
        last = {stream: tape.attention_of(stream)[-1] for stream in ("image", "text")}
        gradients = dict(zip(last, torch.autograd.grad(logits.sum(), list(last.values()))))
    valid_text = torch.arange(13)[None] <= model.pool_index(ids)[:, None]
    for stream, rows in (("image", torch.zeros(3, dtype=torch.long)), ("text", model.pool_index(ids))):
        attention, gradient = last[stream].detach(), gradients[stream]
        valid = torch.ones(attention.shape[-1], dtype=torch.bool).expand(3, -1) if stream == "image" else valid_text
        pairs = (valid[:, :, None] & valid[:, None, :])[:, None]
        weights = (gradient * pairs).sum(dim=(2, 3), keepdim=True) / pairs.sum(dim=(2, 3), keepdim=True)
        cam = (attention * weights).mean(dim=1).clamp(min=0)
        low = cam.masked_fill(~pairs[:, 0], float("inf")).amin(dim=(1, 2), keepdim=True)
        high = cam.masked_fill(~pairs[:, 0], -float("inf")).amax(dim=(1, 2), keepdim=True)
        span = high - low
        scaled = torch.where(span > 0, (cam - low) / span.clamp(min=1e-300), torch.zeros_like(cam))  # constant: 0
        row = scaled[torch.arange(3), rows]
        expected = row[:, 1:] if stream == "image" else row * valid
        actual = result.image_relevance.flatten(1) if stream == "image" else result.text_relevance
        torch.testing.assert_close(actual, expected[:, :actual.shape[1]], rtol=1e-10, atol=1e-12)
        assert expected.abs().max() > 0.1  # not the all-zero map of weights read off the patch rows alone


# ------------------------------------------------------------------------------------------------ LeGrad
def legrad_reference(source, pixels: torch.Tensor, texts: list[str], layer_index: int = -2) -> torch.Tensor:
    """legrad-torch's maps (P, H, W) for one image against P prompts, run on a copy of the open_clip model.

    legrad-torch (1.1) targets open_clip <= 2.23, whose transformer ran sequence-first: its ``LeWrapper`` feeds the
    blocks (L, N, D) tensors. In open_clip 3 the blocks' ``nn.MultiheadAttention`` is batch-first, so the blocks it
    does not hook (those before ``layer_index``) would attend across the batch instead of the tokens: the copy's
    attention modules are set sequence-first again, as the package was written for, and the embedding it computes
    is checked against open_clip's own before the maps are compared.
    """
    import open_clip
    from legrad import LeWrapper

    reference = copy.deepcopy(source)
    for block in reference.visual.transformer.resblocks:
        block.attn.batch_first = False
    wrapped = LeWrapper(reference, layer_index=layer_index)
    with torch.no_grad():
        torch.testing.assert_close(wrapped.encode_image(pixels), source.encode_image(pixels), rtol=1e-5, atol=1e-6)
    text_embedding = wrapped.encode_text(open_clip.tokenize(texts), normalize=True)
    return wrapped.compute_legrad_clip(image=pixels, text_embedding=text_embedding)[0].detach()


@pytest.fixture(scope="module")
def legrad_source():
    # a square 4 x 4 grid (legrad-torch assumes one), 4 heads, 4 blocks
    return open_clip_model(vision=dict(width=128, head_width=32, layers=4))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.float64, 1e-10)])
def test_legrad_equals_the_authors_package(legrad_source, dtype, tolerance):
    source = legrad_source.to(dtype)
    model = clip.from_open_clip(source)
    pixels = images(1, dtype=dtype)
    expected = legrad_reference(source, pixels, TEXTS)
    result = relevance.explain(model, pixels, texts=TEXTS, method="legrad")
    assert result.start_layers == {"image": 2, "text": 0}  # its default, the last two blocks (clamped for text)
    assert result.image_relevance.shape == (3, 4, 4)
    heatmaps = result.heatmaps()  # bilinear to the input, min-max per map: what the authors return
    assert (heatmaps - expected).abs().max() < tolerance
    assert (expected[0] - expected[2]).abs().max() > 0.05  # the prompts' maps differ: the check can fail
    every = relevance.explain(model, pixels, texts=TEXTS, method="legrad", start_layer=0).heatmaps()
    assert (every - legrad_reference(source, pixels, TEXTS, layer_index=0)).abs().max() < tolerance
    assert (every - expected).abs().max() > 0.05


def test_legrad_on_the_text_tower_is_each_blocks_end_of_text_prediction(models64):
    # the text side (not in LeGrad's paper, which explains images): each block's output at the end-of-text token
    # through ln_final and the projection, against the image embedding; the gradient with respect to the block's
    # attention, clamped, averaged over heads and the text's tokens, summed over the last two blocks (only the
    # end-of-text row carries gradient, and its entries after the end are padding)
    import torch.nn.functional as F

    model = models64["open_clip"]
    pixels, ids = images(1).expand(2, -1, -1, -1), model.tokenizer(TEXTS[1:], 77)[:, :13]
    result = relevance.explain(model, pixels[:1], texts=ids, method="legrad")
    eot = model.pool_index(ids)
    with recording() as tape:
        image = F.normalize(model.encode_image(pixels), dim=-1).detach()
        model.encode_text(ids)
        outputs, attention = tape.block_inputs["text"], tape.attention_of("text")
        total = 0
        for block in (1, 2):
            pooled = model.ln_final(outputs[block + 1][torch.arange(2), eot]) @ model.text_projection
            scores = model.logit_scale.exp() * (F.normalize(pooled, dim=-1) * image).sum(-1)
            (gradient,) = torch.autograd.grad(scores.sum(), attention[block], retain_graph=True)
            assert (gradient[torch.arange(2), :, eot].abs().sum() > 0) and \
                (gradient.abs().sum(dim=(1, 3))[torch.arange(13)[None] != eot[:, None]] == 0).all()
            signal = gradient.clamp(min=0).mean(dim=1)  # (2, L, L)
            rows = (torch.arange(13)[None] <= eot[:, None]).double()
            total = total + torch.einsum("bn,bnm->bm", rows, signal) / rows.sum(dim=1, keepdim=True)
    expected = total * rows
    torch.testing.assert_close(result.text_relevance, expected[:, :result.text_relevance.shape[1]], rtol=1e-10,
                               atol=1e-13)


def test_legrad_on_a_vit_classifier_is_each_layers_own_prediction():
    from conftest import tiny_timm_vit
    from relevance.models import vit

    timm_model = tiny_timm_vit(depth=4).double()
    model = vit.from_timm(timm_model).double()
    x = images(2, dtype=torch.float64)
    targets = torch.tensor([3, 5])
    result = relevance.explain(model, x, method="legrad", target=targets)
    assert result.start_layers == {"image": 2}
    # derivation: each block's output tokens through timm's own final norm and head, its target logit's gradient
    # with respect to that block's attention, clamped, averaged over heads and query tokens, summed
    with recording() as tape:
        model(x)
        outputs, attention = tape.block_inputs["image"], tape.attention_of("image")
        total = 0
        for block in (2, 3):
            logits = timm_model.forward_head(timm_model.norm(outputs[block + 1]))
            (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), attention[block],
                                              retain_graph=True)
            total = total + gradient.clamp(min=0).mean(dim=(1, 2))
    torch.testing.assert_close(result.image_relevance.flatten(1), total[:, 1:], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("stream", ["image", "text"])
def test_cvpr_rules_conserve_relevance_in_each_tower(models64, stream):
    # the pair score reaches each tower whole (each is explained against the other's embedding held fixed), and
    # the CVPR 2021 rules keep the one-hot's total at every block input (spec §1.6)
    for model in models64.values():
        totals = relevance.relevance_per_block(model, images(1), texts=TEXTS, stream=stream)
        assert totals.shape == (3, 4)
        torch.testing.assert_close(totals, torch.ones_like(totals), rtol=0, atol=1e-3)
        baseline = relevance.relevance_per_block(model, images(1), texts=TEXTS, stream=stream, method="lrp")
        assert (baseline[:, 0] - 1).abs().max() > 0.05  # the LRP baselines' rules do not (spec §1.4)


def test_cp_lrp_is_exactly_conservative_in_each_tower_without_biases():
    model = clip.from_open_clip(open_clip_model(vision=dict(layers=3))).double()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or name in ("visual.positional_embedding", "visual.class_embedding",
                                                 "positional_embedding"):
                parameter.zero_()
    pixels = images(1)
    scores = model(pixels.expand(3, -1, -1, -1), model.tokenizer(TEXTS, 77)).detach()
    for stream in ("image", "text"):
        totals = relevance.relevance_per_block(model, pixels, texts=TEXTS, method="cp_lrp", stream=stream)
        torch.testing.assert_close(totals, scores[:, None].expand_as(totals), rtol=1e-9, atol=1e-12)
    # and down to the inputs: the pixels (bias-free patch convolution) and the token embeddings
    result = relevance.explain(model, pixels, texts=TEXTS, method="cp_lrp")
    torch.testing.assert_close(result.image_relevance.sum(dim=(1, 2)), scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(result.text_relevance.sum(dim=1), scores, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------- batches and pairs
def _same_maps(batch, single, index: int) -> None:
    for stream in ("image", "text"):
        expected = single.maps[stream].values[0]
        actual = batch.maps[stream].values[index]
        if stream == "text":  # the batch is trimmed to its longest text: zeros after this one's end
            assert (actual[expected.shape[0]:] == 0).all()
            actual = actual[:expected.shape[0]]
        scale = expected.abs().max().clamp(min=1e-300)
        assert (actual - expected).abs().max() <= 1e-9 * scale, (stream, index)


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_of_pairs_gives_the_maps_of_each_pair_alone(models64, method):
    model = models64["open_clip"]
    x, texts = images(2), TEXTS[1:]
    singles = {(i, j): relevance.explain(model, x[i:i + 1], texts=texts[j], method=method)
               for i, j in ((0, 0), (0, 1), (1, 1))}
    one_image = relevance.explain(model, x[:1], texts=texts, method=method)  # image 0 against both texts
    one_text = relevance.explain(model, x, texts=texts[1], method=method)  # both images against text 1
    pairs = relevance.explain(model, x, texts=texts, method=method)  # (image 0, text 0), (image 1, text 1)
    for index in (0, 1):
        _same_maps(one_image, singles[0, index], index)
        _same_maps(one_text, singles[index, 1], index)
        _same_maps(pairs, singles[index, index], index)
        torch.testing.assert_close(pairs.scores[index], singles[index, index].scores[0], rtol=1e-12, atol=0)
    if method not in ("attention", "rollout"):  # class-agnostic maps ignore the text
        assert (one_image.image_relevance[0] - one_image.image_relevance[1]).abs().max() > 0


def test_default_start_layers_are_each_methods_own(models64):
    model = models64["open_clip"]
    starts = {m: relevance.explain(model, images(1), texts=TEXTS[0], method=m).start_layers for m in
              ("gradient_rollout", "legrad", "transformer_attribution", "rollout")}
    assert starts == {"gradient_rollout": {"image": 2, "text": 2}, "legrad": {"image": 1, "text": 1},
                      "transformer_attribution": {"image": 0, "text": 0}, "rollout": {"image": 0, "text": 0}}
    explicit = relevance.explain(model, images(1), texts=TEXTS[0], method="legrad", start_layer={"image": 0})
    assert explicit.start_layers == {"image": 0, "text": 1}  # a stream the dict does not name keeps the default
