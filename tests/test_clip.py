"""CLIP models: similarity logits equal open_clip's and transformers' on several architectures, in float32 and
float64; tokenizers; unsupported parts named; inputs paired, broadcast, trimmed and refused clearly."""

import numpy as np
import pytest
import torch
from clip_models import TEXTS, hf_model, images, open_clip_model

import relevance
from relevance.models import clip
from relevance.models.clip_text import HFTokenizer, OpenClipTokenizer, WordTokenizer, bundled_clip_tokenizer
from relevance.models.vit import UnsupportedModelError

#: open_clip architectures (vision/text overrides of ``open_clip_model``) the converter must reproduce.
OPEN_CLIP_CONFIGS = {
    "gelu-class-token": dict(),
    "quick-gelu-patch4-24px": dict(quick_gelu=True, vision=dict(image_size=24, patch_size=4)),
    "non-square-32x48": dict(vision=dict(image_size=(32, 48))),
    "avg-pool-ln-after-pool": dict(vision=dict(pool_type="avg", final_ln_after_pool=True)),
    "avg-pool-ln-before-pool": dict(vision=dict(pool_type="avg")),
    "layer-scale-no-ln-pre-3-blocks": dict(vision=dict(ls_init_value=0.5, no_ln_pre=True, layers=3),
                                           text=dict(ls_init_value=0.5)),
    "gelu-tanh": dict(vision=dict(act_kwargs={"approximate": "tanh"}), text=dict(act_kwargs={"approximate": "tanh"})),
    "custom-text-eos-pool-projection-bias": dict(custom_text=True, text=dict(pool_type="eos", eos_id=49407,
                                                                             proj_bias=True)),
    "layernorm-eps-1e-6": dict(vision=dict(norm_kwargs={"eps": 1e-6}), text=dict(norm_kwargs={"eps": 1e-6})),
}
#: The open_clip architectures' image sizes, for the inputs.
SIZES = {"quick-gelu-patch4-24px": (24, 24), "non-square-32x48": (32, 48)}
HF_CONFIGS = {
    "quick-gelu-eos-id": dict(),
    "gelu-legacy-argmax-pooling": dict(eos_token_id=2, hidden_act="gelu"),
    "patch16-at-48px-3-blocks": dict(image_size=48, patch_size=16, vision_layers=3, text_layers=3),
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|: the logits of random models are small, so the scale is that of
    the whole matrix, not of each (near-zero) entry."""
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


def open_clip_logits(model, pixels, ids):
    with torch.no_grad():
        image, text, scale = model(pixels, ids)[:3]
    return scale * image @ text.t()


@pytest.mark.parametrize("config", OPEN_CLIP_CONFIGS, ids=list(OPEN_CLIP_CONFIGS))
def test_similarity_logits_equal_open_clips(config):
    import open_clip

    source = open_clip_model(**OPEN_CLIP_CONFIGS[config])
    model = clip.from_open_clip(source)
    size = SIZES.get(config, (32, 32))
    ids = open_clip.tokenize(TEXTS)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        source, model = source.to(dtype), model.to(dtype)
        pixels = images(3, size, dtype=dtype)
        expected = open_clip_logits(source, pixels, ids)
        with torch.no_grad():
            pairs = model(pixels, ids)
            matrix = model.logits(pixels, ids)
        assert relative_error(pairs, expected.diagonal()) < tolerance
        assert relative_error(matrix, expected) < tolerance
        assert relative_error(clip.similarity_matrix(model, pixels, TEXTS), expected) < tolerance
    assert expected.abs().max() > 0.1  # not a degenerate model


@pytest.mark.parametrize("config", HF_CONFIGS, ids=list(HF_CONFIGS))
def test_similarity_logits_equal_transformers(config):
    source = hf_model(**HF_CONFIGS[config])
    model = clip.from_hf(source)
    size = HF_CONFIGS[config].get("image_size", 32)
    ids = model.tokenizer(TEXTS, 77)  # padded with the end-of-text id, as transformers' CLIP tokenizer pads
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        source, model = source.to(dtype), model.to(dtype)
        pixels = images(3, (size, size), dtype=dtype)
        with torch.no_grad():
            expected = source(input_ids=ids, pixel_values=pixels).logits_per_image
            pairs = model(pixels, ids)
        assert relative_error(pairs, expected.diagonal()) < tolerance
        assert relative_error(model.logits(pixels, ids), expected) < tolerance


def test_conversion_copies_the_weights_and_leaves_the_source_unchanged():
    source = open_clip_model()
    before = {k: v.clone() for k, v in source.state_dict().items()}
    flags = {n: p.requires_grad for n, p in source.named_parameters()}
    model = clip.from_open_clip(source)
    relevance.explain(model, images(1, dtype=torch.float32), texts=TEXTS[:2], method="transformer_attribution")
    for key, value in source.state_dict().items():
        assert torch.equal(value, before[key])
    assert {n: p.requires_grad for n, p in source.named_parameters()} == flags
    with torch.no_grad():
        model.visual.proj.add_(1.0)
    assert torch.equal(source.visual.proj, before["visual.proj"])  # a copy, not shared storage


@pytest.mark.parametrize("build, named_part", [
    (lambda: open_clip_model(vision=dict(layers=(1, 1, 1, 1), width=32, image_size=64, head_width=32)),
     "ResNet image tower"),
    (lambda: open_clip_model(vision=dict(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2)),
     "attentional pooling"),
    (lambda: open_clip_model(vision=dict(qk_norm=True)), "custom blocks"),
    (lambda: open_clip_model(text=dict(no_causal_mask=True)), "bidirectional text tower"),
    (lambda: open_clip_model(custom_text=True, text=dict(pool_type="last")), "text pool_type 'last'"),
    (lambda: open_clip_model(vision=dict(timm_model_name="vit_tiny_patch16_224", image_size=32)),
     "timm image tower"),
])
def test_unsupported_open_clip_parts_are_named(build, named_part):
    with pytest.raises(UnsupportedModelError, match=named_part):
        clip.from_open_clip(build())


def test_siglip_heads_and_other_classes_are_refused_by_name():
    import open_clip
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    siglip = open_clip.model.CLIP(16, dict(image_size=32, patch_size=8, width=32, layers=1, head_width=16),
                                  dict(width=32, heads=2, layers=1), init_logit_bias=-10.0)
    with pytest.raises(UnsupportedModelError, match="SigLIP's sigmoid head"):
        clip.from_open_clip(siglip)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    hf_siglip = SiglipModel(SiglipConfig(text_config=dict(vocab_size=100, **small),
                                         vision_config=dict(image_size=32, patch_size=8, **small)))
    with pytest.raises(UnsupportedModelError, match="SigLIP's sigmoid head"):
        clip.from_hf(hf_siglip)
    with pytest.raises(UnsupportedModelError, match="Linear"):
        clip.from_open_clip(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedModelError, match="Linear"):
        clip.from_hf(torch.nn.Linear(2, 2))


# -------------------------------------------------------------------------------------------- tokenizers
def test_tokenizers_give_clips_ids():
    import open_clip

    texts = TEXTS + ["Don't   stop: 3.5 élan, naïve café!"]
    expected = open_clip.tokenize(texts)
    assert torch.equal(OpenClipTokenizer()(texts, 77), expected)
    bundled = HFTokenizer(bundled_clip_tokenizer())(texts, 77)
    real = expected != 0
    assert torch.equal(bundled[real], expected[real])  # the same tokens; transformers pads with end-of-text
    assert (bundled[~real] == 49407).all()
    names = OpenClipTokenizer().strings(expected[3, :18].tolist())
    assert names[:2] == ["<|startoftext|>", "don</w>"] and names[8:10] == ["é", "lan</w>"]  # é lan: one word
    assert names[14:17] == ["café</w>", "!</w>", "<|endoftext|>"]


def test_empty_and_over_long_texts_are_refused_clearly():
    tokenizer = OpenClipTokenizer()
    with pytest.raises(ValueError, match="text 1 is empty"):
        tokenizer(["a cat", "  "], 77)
    with pytest.raises(ValueError, match=r"text 0 .* 82 tokens .* context holds 77"):
        tokenizer(["cat " * 80], 77)
    assert tokenizer(["cat " * 75], 77).shape == (1, 77)  # 75 + start + end fit exactly
    words = WordTokenizer(["a", "red", "circle", ",", "."])
    with pytest.raises(ValueError, match="does not know: dog.*vocabulary: a red circle , \\."):
        words("a red dog", 8)
    assert words("A red, circle.", 8)[0].tolist()[:3] == [words.sot_id, words.ids["a"], words.ids["red"]]


# ------------------------------------------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def model64():
    return clip.from_open_clip(open_clip_model()).double()


def test_pairs_broadcast_and_counts_that_cannot_pair_are_refused(model64):
    x = images(2)
    one = relevance.explain(model64, x[:1], texts=TEXTS, method="attention")
    assert one.image_relevance.shape == (3, 4, 4) and one.text_relevance.shape[0] == 3
    torch.testing.assert_close(one.pixels, x[:1].expand(3, -1, -1, -1))
    many = relevance.explain(model64, x, texts=TEXTS[1], method="attention")
    assert many.image_relevance.shape == (2, 4, 4)
    assert many.tokens[0] == many.tokens[1] == ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"]
    with pytest.raises(ValueError, match="2 images and 3 texts cannot be paired"):
        relevance.explain(model64, x, texts=TEXTS, method="attention")
    with pytest.raises(ValueError, match="pass texts="):
        relevance.explain(model64, x, method="attention")


def test_texts_are_trimmed_after_the_last_end_token_and_zero_on_padding(model64):
    import open_clip

    ids = open_clip.tokenize(TEXTS[:2])  # 7 and 5 tokens with start and end
    result = relevance.explain(model64, images(1), texts=ids, method="gradient_rollout")
    assert result.text_relevance.shape == (2, 7)
    assert (result.text_relevance[1, 5:] == 0).all() and (result.text_relevance[1, :5] != 0).all()
    assert result.maps["text"].inputs.valid[1].tolist() == [True] * 5 + [False] * 2
    assert result.tokens[1] == ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"]
    assert [w for w, _ in result.maps["text"].words(1)] == ["a", "red", "circle"]
    # the same ids as strings, as a 1-D tensor, or as a dict give the same maps
    for texts in (TEXTS[:2], {"input_ids": ids}):
        again = relevance.explain(model64, images(1), texts=texts, method="gradient_rollout")
        torch.testing.assert_close(again.text_relevance, result.text_relevance, rtol=0, atol=0)
    single = relevance.explain(model64, images(1), texts=ids[1], method="gradient_rollout")
    torch.testing.assert_close(single.text_relevance[0], result.text_relevance[1, :5], rtol=1e-12, atol=1e-15)


def test_zero_shot_targets_pick_one_prompt_per_image(model64):
    x = images(2)
    prompts = ["a photo of a cat", "a photo of a dog", "a red circle"]
    chosen = relevance.explain(model64, x, texts=prompts, target=[2, 0], method="gradient_rollout")
    pairs = relevance.explain(model64, x, texts=[prompts[2], prompts[0]], method="gradient_rollout")
    torch.testing.assert_close(chosen.image_relevance, pairs.image_relevance, rtol=0, atol=0)
    assert chosen.extras["prompt_index"].tolist() == [2, 0] and chosen.extras["prompts"] == prompts
    logits = clip.similarity_matrix(model64, x, prompts)
    best = relevance.explain(model64, x, texts=prompts, target="best", method="attention")
    assert best.extras["prompt_index"].tolist() == logits.argmax(dim=1).tolist()
    torch.testing.assert_close(best.scores, logits.max(dim=1).values)
    torch.testing.assert_close(best.extras["prompt_logits"], logits)
    occluded = relevance.explain(model64, x, texts=prompts, target="best", method="occlusion")  # a captum method
    assert occluded.extras["prompt_index"].tolist() == logits.argmax(dim=1).tolist()
    assert list(occluded.maps) == ["image", "text"]
    torch.testing.assert_close(occluded.scores, logits.max(dim=1).values)
    by_pair = relevance.explain(model64, x, texts=[prompts[i] for i in logits.argmax(dim=1).tolist()],
                                method="occlusion")
    torch.testing.assert_close(occluded.image_relevance, by_pair.image_relevance)
    result = clip.zero_shot(model64, x, ["cat", "dog", "red circle"], template="a photo of a {}")
    torch.testing.assert_close(result.logits, clip.similarity_matrix(model64, x, result.prompts))
    assert result.ranking[:, 0].tolist() == result.best.tolist() and len(result.top(2)[0]) == 2
    torch.testing.assert_close(result.probabilities.sum(dim=1), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="prompt indices must lie in"):
        relevance.explain(model64, x, texts=prompts, target=[0, 3], method="attention")
    with pytest.raises(ValueError, match="one per image"):
        relevance.explain(model64, x, texts=prompts, target=[0, 1, 2], method="attention")
    with pytest.raises(TypeError, match="prompt indices"):
        relevance.explain(model64, x, texts=prompts, target=[0.5, 1.0], method="attention")


def test_bad_images_and_token_ids_are_refused_clearly(model64):
    x = images(1)
    with pytest.raises(ValueError, match="NaN"):
        relevance.explain(model64, x.clone().fill_(float("nan")), texts=TEXTS[0], method="attention")
    with pytest.raises(ValueError, match="expected images of shape"):
        relevance.explain(model64, images(1, size=(48, 48)), texts=TEXTS[0], method="attention")
    with pytest.raises(ValueError, match=r"lie in \[0, 49407\]"):
        relevance.explain(model64, x, texts=torch.tensor([[49406, 50000, 49407]]), method="attention")
    with pytest.raises(ValueError, match="context of 77"):
        relevance.explain(model64, x, texts=torch.ones(1, 80, dtype=torch.long), method="attention")
    with pytest.raises(TypeError, match="integers"):
        relevance.explain(model64, x, texts=torch.ones(1, 5), method="attention")
    with pytest.raises(ValueError, match="text 0 is empty"):
        relevance.explain(model64, x, texts=[""], method="attention")


def test_raw_images_of_any_mode_are_prepared_with_the_models_data_config(model64):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    rgba = rng.integers(0, 256, (50, 40, 4), dtype=np.uint8)
    result = relevance.explain(model64, [gray, rgba], texts=TEXTS[1], method="gradient_rollout")
    assert result.pixels.shape == (2, 3, 32, 32) and torch.isfinite(result.image_relevance).all()
    assert result.originals[0].shape == (40, 50, 3) and result.originals[1].shape == (50, 40, 3)
    assert result.overlay(1).shape == (50, 40, 3)
    assert "red" in result.html(0) and result.png(0).ndim == 3


def test_the_pad_baseline_of_a_caption_is_its_words_replaced_by_the_padding_id():
    """Integrated gradients on the text tower with ``baseline="pad"`` is complete against the caption whose words
    (not its start and end tokens) are the tokenizer's padding id, computed here by hand."""
    model = relevance.models.create("shapes-clip").double()
    scene = "assets/examples/scene-20000004_green-square_magenta-triangle_red-circle.png"
    captions = ["a green square", "a photo of a red circle"]
    result = relevance.explain(model, scene, texts=captions, method="integrated_gradients", baseline="pad",
                               stream="text", n_steps=64)
    adapter = relevance.adapter_for(model)
    batch, _ = adapter.prepare(scene, texts=captions)
    text = batch.streams["text"]
    pad = adapter.info.tokenizer.pad_token_id
    padded = torch.where(text.special | ~text.valid, text.input_ids, torch.full_like(text.input_ids, pad))
    with torch.no_grad():
        score = model(batch.inputs["pixels"], text.input_ids)
        baseline = model(batch.inputs["pixels"], padded)
    totals = result.extras["attributions"].sum(dim=(1, 2))
    torch.testing.assert_close(totals - result.extras["convergence_delta"], score - baseline, rtol=1e-9, atol=1e-9)
    assert result.extras["convergence_delta"].abs().max() < 1e-2 * (score - baseline).abs().max()
    assert (result.text_relevance[text.special] == 0).all()


def test_open_clip_checkpoints_load_safely_and_exactly(tmp_path):
    """``open_clip:<architecture> --checkpoint`` and the embedded model load through
    :func:`relevance.models.clip.load_weights`: a wrapped torch file loads, an arbitrary pickle is refused, and any
    architecture mismatch is an error naming the keys."""
    import pickle

    source, target = open_clip_model(seed=0), open_clip_model(seed=1)
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    clip.load_weights(target, tmp_path / "wrapped.pt")
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name

    marker = tmp_path / "executed"

    class Payload:  # an arbitrary object whose unpickling creates a file: weights_only=True must refuse it
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": Payload()}, tmp_path / "evil.pt")  # torch's own format, as a real attack would be
    with pytest.raises(ValueError, match="weights_only"):
        clip.load_weights(target, tmp_path / "evil.pt")
    assert not marker.exists()
    wider = open_clip_model(seed=0, embed_dim=32)
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    with pytest.raises((ValueError, RuntimeError), match="size mismatch|does not match"):
        clip.load_weights(target, tmp_path / "wider.pt")
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("visual.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="does not match the architecture: missing"):
        clip.load_weights(target, tmp_path / "partial.pt")
