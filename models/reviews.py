"""The embedded text model: a small BERT trained on the reviews world (:mod:`relevance.data.reviews`).

It ships in ``assets/reviews_bert/``: ``config.json`` (a Hugging Face ``BertConfig`` plus this project's keys:
class names, data seeds, metrics, the training command), ``model.safetensors``, ``vocab.txt`` (a WordPiece
vocabulary built from the world's words, punctuation and single characters, so that any text tokenizes) and
``MODEL_CARD.md``. It is the default text model whenever no hub weights are cached or reachable, so text
explanations work offline. ``demos/train_reviews.py`` reproduces it (the exact command is in the model card).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

EMBEDDED_NAME = "reviews-bert"
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "reviews_bert"
CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "model.safetensors", "vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Characters every text can fall back to (as single characters and ``##`` continuations).
CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
SYMBOLS = ".,!?;:'\"-()"


def build_vocabulary(words: list[str]) -> list[str]:
    """Special tokens, the given words, punctuation, and single characters with their ``##`` continuations."""
    tokens = list(SPECIAL_TOKENS)
    for token in [*words, *SYMBOLS, *CHARACTERS, *(f"##{c}" for c in CHARACTERS)]:
        if token not in tokens:
            tokens.append(token)
    return tokens


def load_tokenizer(directory: str | Path = EMBEDDED_DIR):
    """The WordPiece tokenizer of ``vocab.txt`` (lower-casing). transformers 5 takes the vocabulary as ``vocab=``;
    its old ``vocab_file=`` keyword is silently ignored and gives a 5-token vocabulary."""
    from transformers import BertTokenizer

    path = Path(directory) / VOCAB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary not found: {path}")
    return BertTokenizer(vocab=str(path), do_lower_case=True)


def load_config(directory: str | Path = EMBEDDED_DIR) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"embedded model config not found: {path}")
    return json.loads(path.read_text())


def load_hf(directory: str | Path = EMBEDDED_DIR, device: str | torch.device = "cpu"):
    """The embedded model as a plain Hugging Face ``BertForSequenceClassification`` (eval mode), weights loaded with
    safetensors, and its tokenizer."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    directory = Path(directory)
    config = load_config(directory)
    hf_config = BertConfig(**{k: v for k, v in config.items() if not k.startswith("relevance_")})
    model = BertForSequenceClassification(hf_config)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"embedded model weights not found: {weights}")
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if unexpected or any(not k.endswith(("position_ids", "token_type_ids")) for k in missing):
        raise ValueError(f"{weights} does not match its config: missing {missing[:6]}, unexpected {unexpected[:6]}")
    return model.to(device).eval(), load_tokenizer(directory)


def in_domain(text: str) -> bool:
    """Whether a text uses mostly the reviews world's words (outside it the model's verdicts mean little)."""
    from relevance.data.reviews import vocabulary

    known = set(vocabulary())
    words = [w.strip(".,!?;:") for w in text.lower().split()]
    words = [w for w in words if w]
    return bool(words) and sum(w in known for w in words) >= 0.8 * len(words)


def load_embedded(device: str | torch.device = "cpu", directory: str | Path = EMBEDDED_DIR):
    """The embedded reviews BERT as the LRP-aware :class:`relevance.models.bert.TextClassifier` (eval mode), with
    its tokenizer and class names (``negative``, ``positive``)."""
    from relevance.adapter import ModelInfo
    from relevance.models.bert import BERT_CONVENTIONS, from_hf

    source, tokenizer = load_hf(directory, "cpu")
    model = from_hf(source, tokenizer)
    config = load_config(directory)
    model.info = ModelInfo(name=EMBEDDED_NAME, output="class_logits",
                           class_names=list(config.get("relevance_class_names", ["negative", "positive"])),
                           conventions=BERT_CONVENTIONS, tokenizer=tokenizer,
                           domain="the procedural reviews world", in_domain=in_domain)
    return model.to(device).eval()


def _register() -> None:
    from relevance.models.registry import Embedded, register_embedded

    register_embedded(Embedded(EMBEDDED_NAME, "text", load_embedded,
                               "a small BERT trained on the reviews world, see assets/reviews_bert/MODEL_CARD.md"))


_register()
