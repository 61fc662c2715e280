"""Small random Hugging Face text models for the tests: every family, classifier or bare encoder, with weights
spread out so that no map is degenerate, and padded batches of token ids."""

from __future__ import annotations

import torch

#: Per family: (classifier class, encoder class, config class, config kwargs of a small model).
FAMILIES = {
    "bert": ("BertForSequenceClassification", "BertModel", "BertConfig",
             dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48)),
    "roberta": ("RobertaForSequenceClassification", "RobertaModel", "RobertaConfig",
                dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40, pad_token_id=1,
                     bos_token_id=0, eos_token_id=2, max_position_embeddings=50)),
    "distilbert": ("DistilBertForSequenceClassification", "DistilBertModel", "DistilBertConfig",
                   dict(dim=32, n_layers=2, n_heads=4, hidden_dim=44)),
    "electra": ("ElectraForSequenceClassification", "ElectraModel", "ElectraConfig",
                dict(embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=36)),
}

#: Variations run on every family (config kwargs; DistilBERT spells some differently, see ``hf_config``).
VARIANTS = {
    "small": dict(),
    "wide-heads-gelu-tanh": dict(num_attention_heads=8, hidden_act="gelu_new"),
    "deep-relu-three-labels": dict(num_hidden_layers=4, hidden_act="relu", num_labels=3),
}

_DISTILBERT = {"num_attention_heads": "n_heads", "num_hidden_layers": "n_layers", "hidden_act": "activation"}


def hf_config(family: str, vocab_size: int = 70, **overrides):
    import transformers

    config_class = getattr(transformers, FAMILIES[family][2])
    kwargs = dict(FAMILIES[family][3], vocab_size=vocab_size, max_position_embeddings=40, num_labels=2)
    if family == "roberta":
        kwargs["max_position_embeddings"] = 50
    for key, value in overrides.items():
        key = _DISTILBERT.get(key, key) if family == "distilbert" else key
        if family == "distilbert" and key == "activation" and value == "gelu_new":
            value = "gelu"  # DistilBERT's config accepts only relu and gelu
        kwargs[key] = value
    return config_class(**kwargs)


def spread(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights N(0, 0.15) (embeddings N(0, 1), LayerNorm scales 1 +- 0.3, heads N(0, 0.5)), so that attention is
    not uniform and no relevance vanishes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            if "LayerNorm" in name or "layer_norm" in name:
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
            elif "embeddings" in name:
                parameter.copy_(noise)
            elif name.startswith(("classifier", "pre_classifier")):
                parameter.copy_(0.5 * noise)
            else:
                parameter.copy_(0.15 * noise)
    return model


def hf_model(family: str, classifier: bool = True, seed: int = 0, attn_implementation: str = "eager",
             **overrides) -> torch.nn.Module:
    """A small random Hugging Face model of ``family`` (a sequence classifier or the bare encoder)."""
    import transformers

    torch.manual_seed(seed)
    config = hf_config(family, **overrides)
    config._attn_implementation = attn_implementation
    cls = getattr(transformers, FAMILIES[family][0 if classifier else 1])
    model = cls(config)
    return spread(model, seed).eval()


def padded_batch(model_config, lengths=(9, 5, 7), seed: int = 3) -> dict[str, torch.Tensor]:
    """Random ids (B, max(lengths)) between a first and a last special id, padded with the pad id; token types with
    a second segment where the model has token types."""
    generator = torch.Generator().manual_seed(seed)
    pad = model_config.pad_token_id if model_config.pad_token_id is not None else 0
    vocab = model_config.vocab_size
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        body = torch.randint(4, vocab, (length,), generator=generator)
        body[0], body[-1] = 3 if pad != 3 else 2, 2 if pad != 2 else 3
        ids[row, :length], mask[row, :length] = body, 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if getattr(model_config, "type_vocab_size", 0) > 1 and getattr(model_config, "model_type", getattr(model_config, "family", "")) != "distilbert":
        types = torch.zeros_like(ids)
        types[:, width // 2:] = 1
        batch["token_type_ids"] = types * mask
    return batch
