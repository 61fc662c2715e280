"""The gradient and perturbation methods (relevance.attribution, computed by captum): equal to captum called directly,
integrated gradients complete, batches equal single calls, seeds reproduce, feature masks, options, and the text
and image-text cases through stand-in families (tests/standins.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import (IntegratedGradients, InputXGradient, KernelShap, Lime, NoiseTunnel, Occlusion, Saliency)
from conftest import tiny_timm_vit
from standins import MASK, PAD, TinyPair, TinyText, text_batch

import relevance
from relevance.attribution import ATTRIBUTION_METHODS
from relevance.models import vit

CAPTUM_METHODS = list(ATTRIBUTION_METHODS)


@pytest.fixture(scope="module")
def model():
    return vit.from_timm(tiny_timm_vit()).double()


def images(batch: int = 3, seed: int = 5) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, dtype=torch.float64)


TARGETS = torch.tensor([2, 0, 6])


def plain_forward(model):
    """An independent forward function: the logit of each row's target, straight from the model."""
    def forward(pixels, rows):
        return model(pixels)[torch.arange(len(rows)), TARGETS[rows]]
    return forward


def patch_mask() -> torch.Tensor:
    """(1, 1, 32, 32): the 4 x 4 patch grid of 8-pixel patches, row-major."""
    rows, cols = torch.arange(32)[:, None] // 8, torch.arange(32)[None, :] // 8
    return (rows * 4 + cols)[None, None]


def seeded_per_sample(x, run, seed=0):
    """captum's call on each sample alone, torch seeded with ``seed`` before each (the documented protocol)."""
    parts = []
    for i in range(x.shape[0]):
        torch.manual_seed(seed)
        parts.append(run(x[i:i + 1].clone(), torch.tensor([i]), i))
    return torch.cat(parts)


# -------------------------------------------------------------------------------------- captum equivalence
def test_every_method_equals_captum_called_directly(model):
    x, forward, rows = images(), plain_forward(model), torch.arange(3)
    expected = {
        "saliency": Saliency(forward).attribute(x.clone().requires_grad_(), additional_forward_args=(rows,)),
        "input_x_gradient": InputXGradient(forward).attribute(x.clone().requires_grad_(),
                                                              additional_forward_args=(rows,)),
        "occlusion": Occlusion(forward).attribute(x.clone(), sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8),
                                                  baselines=0.0, additional_forward_args=(rows,)),
        "smoothgrad": seeded_per_sample(x, lambda xi, r, i: NoiseTunnel(Saliency(forward)).attribute(
            xi, nt_samples=6, nt_samples_batch_size=4, stdevs=0.15 * float(x[i].max() - x[i].min()),
            additional_forward_args=(r,))),
        "lime": seeded_per_sample(x, lambda xi, r, i: Lime(forward).attribute(
            xi, baselines=0.0, feature_mask=patch_mask(), n_samples=40, perturbations_per_eval=8,
            additional_forward_args=(r,))),
        "kernel_shap": seeded_per_sample(x, lambda xi, r, i: KernelShap(forward).attribute(
            xi, baselines=0.0, feature_mask=patch_mask(), n_samples=40, perturbations_per_eval=8,
            additional_forward_args=(r,))),
    }
    ig, delta = IntegratedGradients(forward).attribute(x.clone(), baselines=torch.zeros_like(x), n_steps=12,
                                                       internal_batch_size=8, additional_forward_args=(rows,),
                                                       return_convergence_delta=True)
    expected["integrated_gradients"] = ig
    options = {"smoothgrad": dict(n_samples=6, internal_batch_size=4), "integrated_gradients": dict(
        n_steps=12, internal_batch_size=8), "lime": dict(n_samples=40, internal_batch_size=8),
        "kernel_shap": dict(n_samples=40, internal_batch_size=8)}
    assert set(expected) == set(CAPTUM_METHODS)
    for name in CAPTUM_METHODS:
        result = relevance.explain(model, x, method=name, target=TARGETS, **options.get(name, {}))
        attributions = result.extras["attributions"]
        assert attributions.shape == x.shape
        assert attributions.abs().max() > 0, name
        # the seeded methods: the same draws in the same order, so the same numbers (LIME's Lasso fits in float32)
        torch.testing.assert_close(attributions, expected[name].to(x.dtype), rtol=1e-9, atol=1e-12, msg=name)
    delta_ours = relevance.explain(model, x, method="ig", target=TARGETS, n_steps=12,
                                   internal_batch_size=8).extras["convergence_delta"]
    torch.testing.assert_close(delta_ours, delta, rtol=1e-9, atol=1e-15)


def test_maps_are_captums_attributions_summed_or_read_per_feature(model):
    x = images(2)
    gradient = relevance.explain(model, x, method="input_x_gradient", target=[1, 4])
    torch.testing.assert_close(gradient.relevance, gradient.extras["attributions"].sum(dim=1))  # (B, H, W)
    on_grid = relevance.explain(model, x, method="input_x_gradient", target=[1, 4], features="patches")
    blocks = gradient.extras["attributions"].reshape(2, 3, 4, 8, 4, 8)
    torch.testing.assert_close(on_grid.relevance, blocks.sum(dim=(1, 3, 5)))  # a patch's value: its pixels' sum
    occlusion = relevance.explain(model, x, method="occlusion", target=[1, 4])
    assert occlusion.relevance.shape == (2, 4, 4)  # on the patch grid, like the attention methods
    torch.testing.assert_close(occlusion.relevance, occlusion.extras["attributions"][:, 0, ::8, ::8])
    # occlusion of one patch by hand: the score's drop when that patch is zero
    covered = x.clone()
    covered[:, :, 8:16, 16:24] = 0
    with torch.no_grad():
        drop = model(x)[[0, 1], [1, 4]] - model(covered)[[0, 1], [1, 4]]
    torch.testing.assert_close(occlusion.relevance[:, 1, 2], drop)


# ------------------------------------------------------------------------------------- integrated gradients
@pytest.mark.parametrize("baseline", ["zero", 0.7, "tensor"])
def test_integrated_gradients_is_complete_within_its_delta(model, baseline):
    x = images(2)
    if baseline == "tensor":
        baseline = torch.linspace(-1, 1, 32, dtype=torch.float64).expand(3, 32, 32)  # one for every sample
    result = relevance.explain(model, x, method="integrated_gradients", target=[3, 5], baseline=baseline, n_steps=64)
    base = result.extras["baselines"]
    with torch.no_grad():
        difference = model(x)[[0, 1], [3, 5]] - model(base)[[0, 1], [3, 5]]
    totals = result.extras["attributions"].sum(dim=(1, 2, 3))
    delta = result.extras["convergence_delta"]
    torch.testing.assert_close(delta, totals - difference, rtol=1e-9, atol=1e-12)  # what delta means
    assert ((totals - difference).abs() <= delta.abs() + 1e-12).all()
    assert (delta.abs() < 1e-3 * difference.abs()).all()  # and it is small: the path integral converged
    torch.testing.assert_close(result.relevance.sum(dim=(1, 2)), totals)
    torch.testing.assert_close(result.scores, model(x)[[0, 1], [3, 5]].detach())
    coarse = relevance.explain(model, x, method="integrated_gradients", target=[3, 5], baseline=baseline, n_steps=2,
                               integration="riemann_right")
    assert (coarse.extras["convergence_delta"].abs() > 10 * delta.abs()).all()


# -------------------------------------------------------------------------------- batches, seeds, threads
@pytest.mark.parametrize("name", ["smoothgrad", "lime", "kernel_shap"])
def test_seeds_reproduce_and_a_batch_gives_its_samples_single_maps(model, name):
    x = images(3)
    options = {"smoothgrad": dict(n_samples=5), "lime": dict(n_samples=30, alpha=1e-5),
               "kernel_shap": dict(n_samples=30)}[name]
    first = relevance.explain(model, x, method=name, target=TARGETS, seed=7, **options).relevance
    again = relevance.explain(model, x, method=name, target=TARGETS, seed=7, **options).relevance
    assert torch.equal(first, again)
    other = relevance.explain(model, x, method=name, target=TARGETS, seed=8, **options).relevance
    assert not torch.allclose(first, other)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for i in (2, 0):
        single = relevance.explain(model, x[i:i + 1], method=name, target=int(TARGETS[i]), seed=7, **options)
        torch.testing.assert_close(single.relevance, first[i:i + 1], rtol=1e-10, atol=1e-13)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left as it was


def test_two_threads_with_one_model_get_the_seeded_maps_of_sequential_calls(model):
    jobs = [("lime", images(2, 1), [1, 3]), ("smoothgrad", images(2, 2), [5, 0]), ("kernel_shap", images(2, 3), [2, 2])]
    options = dict(n_samples=12)
    expected = [relevance.explain(model, x, method=m, target=t, **options).relevance for m, x, t in jobs]
    results, errors = {}, []
    barrier = threading.Barrier(len(jobs))

    def work(index, method, x, target):
        try:
            barrier.wait()
            for _ in range(2):
                results[index] = relevance.explain(model, x, method=method, target=target, **options).relevance
        except Exception as error:  # noqa: BLE001 - re-raised below in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index, expected_map in enumerate(expected):
        torch.testing.assert_close(results[index], expected_map, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------ feature masks
@pytest.mark.parametrize("name", ["occlusion", "lime", "kernel_shap"])
def test_a_patch_mask_makes_every_pixel_of_a_patch_equal(model, name):
    options = {"lime": dict(n_samples=24, alpha=1e-5), "kernel_shap": dict(n_samples=24)}.get(name, {})
    result = relevance.explain(model, images(2), method=name, target=[1, 2], **options)
    blocks = result.extras["attributions"].reshape(2, 3, 4, 8, 4, 8).permute(0, 2, 4, 1, 3, 5).reshape(2, 4, 4, -1)
    assert torch.equal(blocks, blocks[..., :1].expand_as(blocks))  # channels and pixels of a patch: one value
    assert result.relevance.shape == (2, 4, 4)
    torch.testing.assert_close(result.relevance, blocks[..., 0])
    assert (result.relevance != 0).float().mean() > 0.5
    assert torch.equal(result.extras["feature_mask"][0], patch_mask()[0, 0])


def test_superpixels_are_slic_segments_and_custom_ids_group_pixels(model):
    from skimage.segmentation import slic

    x = images(2)
    result = relevance.explain(model, x, method="kernel_shap", target=[1, 2], features="superpixels", n_segments=9,
                               n_samples=30)
    ids = result.extras["feature_mask"]
    assert result.relevance.shape == (2, 32, 32)
    for i in range(2):
        image = x[i].numpy().transpose(1, 2, 0)
        image = (image - image.min()) / (image.max() - image.min())
        labels = slic(image, n_segments=9, slic_zero=True, start_label=0, channel_axis=-1)
        assert torch.equal(ids[i], torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(32, 32)))
        assert 5 <= ids[i].max() + 1 <= 12  # about n_segments
        for segment in ids[i].unique():  # the map is constant on each superpixel
            assert result.relevance[i][ids[i] == segment].unique().numel() == 1
    with pytest.raises(ValueError, match="kernel_shap needs at least 2 features; sample 0 has 1"):
        relevance.explain(model, x, method="kernel_shap", features=torch.zeros(32, 32, dtype=torch.long))
    halves = torch.zeros(32, 32, dtype=torch.long)
    halves[:, 16:] = 5  # any ids: relabelled 0, 1
    custom = relevance.explain(model, x, method="lime", target=[1, 2], features=halves, n_samples=20, alpha=1e-6)
    assert custom.extras["feature_mask"].unique().tolist() == [0, 1]
    for i in range(2):
        assert custom.relevance[i, :, :16].unique().numel() == custom.relevance[i, :, 16:].unique().numel() == 1
    pixels = relevance.explain(model, x, method="kernel_shap", target=[1, 2], features="pixels", n_samples=8)
    attributions = pixels.extras["attributions"]
    assert torch.equal(attributions, attributions[:, :1].expand_as(attributions))  # one feature per pixel
    assert (attributions[:, 0] != 0).float().mean() > 0.5 and pixels.relevance.shape == (2, 32, 32)


# ------------------------------------------------------------------------------------------------ options
def test_options_are_checked_per_method(model):
    x = images(1)
    with pytest.raises(TypeError, match="no option n_samples; its options: stream, site, features.*n_steps"):
        relevance.explain(model, x, method="integrated_gradients", n_samples=3)
    with pytest.raises(TypeError, match="'rollout' takes no option n_steps"):
        relevance.explain(model, x, method="rollout", n_steps=3)
    for method, option, message in [
        ("integrated_gradients", dict(n_steps=0), "n_steps must be an int >= 1"),
        ("integrated_gradients", dict(integration="simpson"), "integration must be one of"),
        ("integrated_gradients", dict(baseline="blur"), "unknown baseline 'blur'"),
        ("integrated_gradients", dict(baseline=torch.zeros(2, 3, 32, 32)), "does not broadcast"),
        ("integrated_gradients", dict(baseline="pad"), "holds no text"),
        ("smoothgrad", dict(noise_level=-1.0), "noise_level must be a non-negative number"),
        ("lime", dict(seed=-1), "seed must be an int >= 0"),
        ("lime", dict(features="tokens"), "features of an image stream are one of pixels, patches, superpixels"),
        ("lime", dict(features=torch.zeros(5, 5, dtype=torch.long)), "feature ids must have shape"),
        ("occlusion", dict(features="superpixels"), "occlusion slides a window"),
        ("occlusion", dict(stride=4), "give stride together with window"),
        ("saliency", dict(abs="yes"), "abs must be True or False"),
        ("saliency", dict(stream="text"), "unknown stream 'text'; this model's streams: image"),
        ("saliency", dict(site="word_embeddings"), "no input site 'word_embeddings'; its sites: pixels"),
    ]:
        with pytest.raises(ValueError, match=message):
            relevance.explain(model, x, method=method, **option)


def test_occlusion_windows_and_signs(model):
    x = images(1)
    sliding = relevance.explain(model, x, method="occlusion", target=3, window=(8, 8), stride=(4, 4))
    assert sliding.relevance.shape == (1, 32, 32)  # overlapping windows: a map on the pixels
    assert relevance.get_method("occlusion").signed and not relevance.get_method("saliency").signed
    assert relevance.explain(model, x, method="saliency", target=3, abs=False).maps["image"].signed
    assert (relevance.explain(model, x, method="saliency", target=3).relevance >= 0).all()


# -------------------------------------------------------------------------------------------------- texts
@pytest.fixture(scope="module")
def text_model():
    return TinyText().double()


TEXTS = text_batch([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]])  # padded to 7 tokens


@pytest.mark.parametrize("name", CAPTUM_METHODS)
def test_special_tokens_and_padding_are_never_perturbed_and_get_zero(text_model, name):
    options = {"integrated_gradients": dict(n_steps=6), "smoothgrad": dict(n_samples=4),
               "lime": dict(n_samples=20, alpha=1e-6), "kernel_shap": dict(n_samples=20)}.get(name, {})
    text_model.tower.seen = {}
    try:
        result = relevance.explain(text_model, TEXTS, method=name, target=[0, 1, 2], **options)
        seen = text_model.tower.seen["text"]
    finally:
        text_model.tower.seen = None
    assert len(seen) > 1
    changed = 0
    for ids, mask, words in seen:  # every forward pass: the rows' token ids and the word embeddings they got
        fixed = (ids == 1) | (ids == 2) | (mask == 0)
        moved = (words != text_model.tower.embed(ids)).any(-1)
        assert not (moved & fixed).any(), name  # special tokens and padding never changed
        changed += int(moved.sum())
    if name not in ("saliency", "input_x_gradient"):
        assert changed > 0, name  # the other tokens did
    fixed = (TEXTS["input_ids"] == 1) | (TEXTS["input_ids"] == 2) | (TEXTS["attention_mask"] == 0)
    assert result.text_relevance.shape == (3, 7)
    assert (result.text_relevance[fixed] == 0).all(), name
    assert (result.text_relevance[~fixed] != 0).float().mean() > 0.5, name


@pytest.mark.parametrize("name", CAPTUM_METHODS)
def test_a_padded_text_batch_gives_each_texts_single_map(text_model, name):
    options = {"integrated_gradients": dict(n_steps=6), "smoothgrad": dict(n_samples=4),
               "lime": dict(n_samples=20, alpha=1e-6), "kernel_shap": dict(n_samples=20)}.get(name, {})
    batch = relevance.explain(text_model, TEXTS, method=name, target=[0, 1, 2], **options)
    for i, row in enumerate([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]):
        single = relevance.explain(text_model, text_batch([row]), method=name, target=i, **options)
        length = len(row) + 2
        torch.testing.assert_close(batch.text_relevance[i, :length], single.text_relevance[0], rtol=1e-9,
                                   atol=1e-12, msg=name)
        assert (batch.text_relevance[i, length:] == 0).all()


@pytest.mark.parametrize("token", ["pad", "mask"])
def test_token_baselines_are_that_tokens_embedding_and_ig_is_complete(text_model, token):
    result = relevance.explain(text_model, TEXTS, method="integrated_gradients", target=[0, 1, 2], baseline=token,
                               n_steps=48)
    ids, mask = TEXTS["input_ids"], TEXTS["attention_mask"]
    fixed = (ids == 1) | (ids == 2) | (mask == 0)
    swapped = torch.where(fixed, ids, torch.full_like(ids, {"pad": PAD, "mask": MASK}[token]))
    embed = text_model.tower.embed
    torch.testing.assert_close(result.extras["baselines"], embed(swapped).detach())
    with torch.no_grad():
        rows = torch.arange(3), torch.tensor([0, 1, 2])
        difference = text_model(ids, mask)[rows] - text_model.logits_from_words(embed(swapped), mask)[rows]
    totals = result.extras["attributions"].sum(dim=(1, 2))
    torch.testing.assert_close(result.extras["convergence_delta"], totals - difference, rtol=1e-9, atol=1e-12)
    assert (result.extras["convergence_delta"].abs() < 1e-3 * difference.abs()).all()
    # captum on an independent forward function (plain, no positions held) with the same baselines: the same
    def forward(words, rows):
        return text_model.logits_from_words(words, mask[rows])[torch.arange(len(rows)), rows]
    words = embed(ids).detach()
    direct = IntegratedGradients(forward).attribute(words, baselines=embed(swapped).detach(), n_steps=48,
                                                    internal_batch_size=32, additional_forward_args=(torch.arange(3),))
    torch.testing.assert_close(result.extras["attributions"], direct, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(result.text_relevance, direct.sum(-1) * (~fixed))


def test_token_occlusion_by_hand(text_model):
    result = relevance.explain(text_model, TEXTS, method="occlusion", target=[0, 1, 2], baseline="pad")
    ids, mask = TEXTS["input_ids"], TEXTS["attention_mask"]
    words = text_model.tower.embed(ids).detach()
    covered = words.clone()
    covered[0, 3] = text_model.tower.embed.weight[PAD].detach()
    with torch.no_grad():
        drop = text_model.logits_from_words(words, mask)[0, 0] - text_model.logits_from_words(covered, mask)[0, 0]
    torch.testing.assert_close(result.text_relevance[0, 3], drop)


# ------------------------------------------------------------------------------------------- image-text
@pytest.fixture(scope="module")
def pair_model():
    return TinyPair().double()


def pair_inputs():
    torch.manual_seed(9)
    return torch.rand(2, 3, 16, 16, dtype=torch.float64), text_batch([[5, 6, 7], [8, 9]])


@pytest.mark.parametrize("stream", ["image", "text"])
def test_either_tower_of_a_pair_model_with_the_other_fixed(pair_model, stream):
    pixels, texts = pair_inputs()
    pair_model.text.seen = {}
    try:
        result = relevance.explain(pair_model, pixels, texts=texts, method="integrated_gradients", stream=stream,
                                   n_steps=40)
        seen = pair_model.text.seen
    finally:
        pair_model.text.seen = None
    if stream == "image":  # the other tower: the batch's own text embeddings in every forward pass
        assert len(seen["text"]) > 1
        assert all(torch.equal(words, pair_model.text.embed(ids)) for ids, _, words in seen["text"])
    else:  # the batch's own pixels, sample by sample
        assert len(seen["image"]) > 1 and all(torch.equal(p, pixels.repeat(len(p) // 2, 1, 1, 1)) or torch.equal(
            p, pixels.repeat_interleave(len(p) // 2, dim=0)) for p in seen["image"])
    assert list(result.maps) == [stream] and result.extras["stream"] == stream
    assert result.target is None  # a pair score, not a class
    mask = texts["attention_mask"]
    words = pair_model.text.embed(texts["input_ids"]).detach()
    with torch.no_grad():
        image = pair_model.image_vector(pixels)
        text = pair_model.text_vector(words, mask)
        score = pair_model.similarity(image, text)
        base = result.extras["baselines"]
        baseline_score = (pair_model.similarity(pair_model.image_vector(base), text) if stream == "image"
                          else pair_model.similarity(image, pair_model.text_vector(base, mask)))
    torch.testing.assert_close(result.scores, score)
    totals = result.extras["attributions"].flatten(1).sum(1)
    torch.testing.assert_close(result.extras["convergence_delta"], totals - (score - baseline_score), rtol=1e-9,
                               atol=1e-12)
    if stream == "image":
        grid = relevance.explain(pair_model, pixels, texts=texts, method="occlusion", stream="image")
        assert grid.relevance.shape == (2, 4, 4)  # the tower's own patch grid


@pytest.mark.parametrize("name, options", [("integrated_gradients", dict(n_steps=16)), ("occlusion", {}),
                                           ("lime", dict(n_samples=30))])
def test_without_a_stream_a_pair_model_gets_each_towers_map(pair_model, name, options):
    pixels, texts = pair_inputs()
    both = relevance.explain(pair_model, pixels, texts=texts, method=name, **options)
    assert list(both.maps) == ["image", "text"]
    for stream in ("image", "text"):
        alone = relevance.explain(pair_model, pixels, texts=texts, method=name, stream=stream, **options)
        torch.testing.assert_close(both.maps[stream].values, alone.maps[stream].values, rtol=0, atol=0)
        torch.testing.assert_close(both.extras["streams"][stream]["attributions"], alone.extras["attributions"],
                                   rtol=0, atol=0)
    torch.testing.assert_close(both.scores, alone.scores)
    if name == "occlusion":  # an image feature choice leaves the text its tokens
        named = relevance.explain(pair_model, pixels, texts=texts, method=name, features="pixels", window=4,
                                  stride=4, **options)
        torch.testing.assert_close(named.maps["text"].values, both.maps["text"].values, rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature ids belong to one stream"):
        relevance.explain(pair_model, pixels, texts=texts, method="occlusion", features=torch.zeros(16, 16).long())
    with pytest.raises(ValueError, match="names one stream's input: pass stream="):
        relevance.explain(pair_model, pixels, texts=texts, method="saliency", site="pixels")


def test_gradient_methods_run_under_no_grad_and_need_no_attention(model):
    x = images(2)
    expected = relevance.explain(model, x, method="saliency", target=[1, 2]).relevance
    with torch.no_grad():
        inside = relevance.explain(model, x, method="saliency", target=[1, 2]).relevance
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        relevance.explain(model, x, method="saliency")
