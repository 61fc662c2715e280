"""Texts into token ids for the text families: tokenizing, padding, the checks that catch the tokenizer traps, and
what the explanation needs to draw the tokens (:class:`relevance.adapter.TextInputs`).

Accepted inputs: a string, a list of strings (tokenized with the model's tokenizer and padded to the batch's
longest), a tokenizer output or dict with ``input_ids`` (and optionally ``attention_mask``, ``token_type_ids``),
or an integer tensor of ids. Refused, with an error that says what to do: empty strings, texts longer than the
model's maximum (unless truncation was asked for), ids outside the embedding, and tokenizers that cannot be the
model's (a vocabulary much smaller than the embedding, e.g. the 5-token vocabulary that an offline
``BertTokenizer.from_pretrained("bert-base-uncased")`` returns without complaint, or larger than it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from relevance.adapter import TextInputs

#: A tokenizer with fewer tokens than this fraction of the embedding's rows is not the model's.
MIN_VOCABULARY_FRACTION = 0.5


class TokenizerMismatchError(ValueError):
    """The tokenizer does not fit the model's embedding."""


@dataclass
class TextEncoding:
    """One side of a batch: model inputs (on the model's device) and the tokens for display."""

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor | None
    text: TextInputs

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    def model_inputs(self) -> dict[str, Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


def check_tokenizer(tokenizer: Any, vocab_size: int) -> None:
    """Refuse a tokenizer whose vocabulary cannot be the model's (see the module docstring)."""
    size = len(tokenizer)
    if size > vocab_size:
        raise TokenizerMismatchError(
            f"the tokenizer has {size} tokens but the model's embedding has only {vocab_size} rows: its ids would "
            "fall outside the embedding; use the tokenizer the model was trained with")
    if size < MIN_VOCABULARY_FRACTION * vocab_size:
        raise TokenizerMismatchError(
            f"the tokenizer has {size} tokens but the model's embedding has {vocab_size} rows: this is not the "
            "model's tokenizer (an offline from_pretrained without the tokenizer files silently returns a tiny "
            "vocabulary); load the tokenizer from the model's files, e.g. "
            "AutoTokenizer.from_pretrained(model_directory)")


def max_length(config: Any, tokenizer: Any = None) -> int:
    """The longest input in tokens: what the position embeddings cover, and the tokenizer's limit if smaller."""
    limit = int(config.max_length)
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < limit:
        limit = declared
    return limit


def encode(inputs: Any, tokenizer: Any, config: Any, device: torch.device, *,
           truncation: bool = False) -> TextEncoding:
    """Texts, a tokenizer output or ids -> :class:`TextEncoding` (see the module docstring).

    ``config`` is the model's :class:`~relevance.models.bert.TextConfig` (vocabulary size, maximum length).
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        return _encode_strings(list(inputs), tokenizer, config, device, truncation)
    if isinstance(inputs, Mapping) and "input_ids" in inputs:
        return _encode_ids(inputs, tokenizer, config, device)
    if isinstance(inputs, Tensor):
        return _encode_ids({"input_ids": inputs}, tokenizer, config, device)
    if isinstance(inputs, (list, tuple)) and not inputs:
        raise ValueError("no texts given")
    raise TypeError("text inputs must be a string, a list of strings, a tokenizer output / dict with 'input_ids', "
                    f"or a tensor of token ids; got {type(inputs).__name__}")


def _encode_strings(texts: list[str], tokenizer: Any, config: Any, device: torch.device,
                    truncation: bool) -> TextEncoding:
    if tokenizer is None:
        raise ValueError("this model has no tokenizer: pass one to from_hf(model, tokenizer), or pass token ids")
    check_tokenizer(tokenizer, config.vocab_size)
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise ValueError(f"text(s) {empty[:10]} are empty: there is nothing to explain")
    limit = max_length(config, tokenizer)
    encoded = tokenizer(texts, padding=True, truncation=truncation, max_length=limit if truncation else None,
                        return_tensors="pt")
    lengths = encoded["attention_mask"].sum(dim=1)
    too_long = [(i, int(n)) for i, n in enumerate(lengths.tolist()) if n > limit]
    if too_long:
        index, count = too_long[0]
        raise ValueError(f"text {index} has {count} tokens but the model takes at most {limit}: shorten it, or ask "
                         "for truncation (relevance.models.bert.explain_texts(..., truncation=True), or pass "
                         "tokenizer(texts, truncation=True, padding=True, return_tensors='pt'))")
    return _encode_ids(encoded, tokenizer, config, device, texts=texts)


def _encode_ids(inputs: Mapping[str, Any], tokenizer: Any, config: Any, device: torch.device,
                texts: Sequence[str] | None = None) -> TextEncoding:
    ids = torch.as_tensor(inputs["input_ids"])
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    ids = ids.long().reshape(1, -1) if ids.dim() == 1 else ids.long()
    if ids.dim() != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise ValueError(f"input_ids must be (B, N) with N > 0, got shape {tuple(ids.shape)}")
    if tokenizer is not None:
        check_tokenizer(tokenizer, config.vocab_size)
    outside = (ids < 0) | (ids >= config.vocab_size)
    if bool(outside.any()):
        bad = sorted(set(ids[outside].tolist()))[:5]
        raise TokenizerMismatchError(f"token ids {bad} lie outside the model's vocabulary of {config.vocab_size}: "
                                     "were they made by another tokenizer?")
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).reshape(ids.shape).long()
    valid = mask.bool()
    if not bool(valid.any(dim=1).all()):
        raise ValueError("a sample has no valid token (its attention mask is all zeros)")
    if ids.shape[1] > max_length(config, tokenizer):
        raise ValueError(f"the inputs have {ids.shape[1]} tokens but the model takes at most "
                         f"{max_length(config, tokenizer)}")
    types = inputs.get("token_type_ids")
    if types is not None and config.type_vocab_size:
        types = torch.as_tensor(types).reshape(ids.shape).long()
        if bool(((types < 0) | (types >= config.type_vocab_size)).any()):
            raise ValueError(f"token_type_ids must lie in [0, {config.type_vocab_size - 1}]")
    else:
        types = None
    tokens = [_tokens(row.tolist(), tokenizer) for row in ids]
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or []) if tokenizer is not None else set()
    special = torch.tensor([[t in special_ids for t in row.tolist()] for row in ids], dtype=torch.bool)
    special &= valid
    word_ids = _word_ids(inputs, tokens, special, valid)
    text = TextInputs(input_ids=ids.to(device), valid=valid.to(device), tokens=tokens, special=special.to(device),
                      word_ids=word_ids, texts=list(texts) if texts is not None else None)
    return TextEncoding(ids.to(device), mask.to(device), None if types is None else types.to(device), text)


def _tokens(ids: list[int], tokenizer: Any) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]


def _word_ids(inputs: Any, tokens: list[list[str]], special: Tensor, valid: Tensor) -> list[list[int | None]]:
    """Per token, the index of its word (``None`` for special tokens and padding): the fast tokenizer's own
    ``word_ids`` when the inputs carry them, else from the word-piece markers (``##`` continues a word; ``Ġ``
    and ``▁`` start one)."""
    result = []
    for row, row_tokens in enumerate(tokens):
        ids = None
        word_ids = getattr(inputs, "word_ids", None)
        if callable(word_ids) and getattr(inputs, "encodings", None):
            ids = list(word_ids(row))
        if ids is None:
            ids = _word_ids_from_pieces(row_tokens, special[row].tolist())
        result.append([None if not valid[row, i] or special[row, i] else w for i, w in enumerate(ids)])
    return result


def _word_ids_from_pieces(tokens: list[str], special: list[bool]) -> list[int | None]:
    ids: list[int | None] = []
    word = -1
    byte_level = any(t.startswith(("Ġ", "▁")) for t in tokens)
    for token, is_special in zip(tokens, special):
        if is_special:
            ids.append(None)
            continue
        starts = token.startswith(("Ġ", "▁")) if byte_level else not token.startswith("##")
        if starts or word < 0:
            word += 1
        ids.append(word)
    return ids
