"""Tokenizers of CLIP text towers behind one small interface: CLIP's byte-level BPE (open_clip's tokenizer, or a
Hugging Face ``CLIPTokenizer``, e.g. built offline from the vocabulary open_clip ships) and the closed word
vocabulary of the shapes world.

A tokenizer turns texts into ids ``[start, tokens..., end, padding...]`` of the tower's context length and names
each token for display. Unlike the libraries' own tokenizers, it never truncates silently: a text that does not fit
the context (CLIP's 77 tokens) or an empty text is an error that says which text.
"""

from __future__ import annotations

import abc
import functools
import re
from typing import Any, Sequence

import torch
from torch import Tensor

#: Display string of padding positions (recognised as padding by :mod:`relevance.render.text`).
PAD_TOKEN = "<pad>"
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"


class TextTokenizer(abc.ABC):
    """Ids without special tokens (:meth:`encode`), the start, end and padding ids, and a display string per id.

    Attributes
    ----------
    sot_id, eot_id, pad_id:
        Start-of-text, end-of-text and padding ids.
    """

    sot_id: int
    eot_id: int
    pad_id: int

    @property
    def pad_token_id(self) -> int:
        """The padding id under Hugging Face's name: the embedding-space baseline ``baseline="pad"`` of the
        gradient and perturbation methods (:mod:`relevance.attribution`) replaces a caption's words by it."""
        return self.pad_id

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without start and end tokens."""

    @abc.abstractmethod
    def token_string(self, token_id: int) -> str:
        """How token ``token_id`` is displayed (CLIP's BPE: the piece's text, ``"</w>"`` when it ends a word)."""

    def __call__(self, texts: str | Sequence[str], context_length: int) -> Tensor:
        """(B, context_length) int64 ids ``[start, tokens..., end, pad...]``.

        Raises
        ------
        ValueError
            For an empty text, or one whose tokens and start and end tokens exceed ``context_length``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("no texts given")
        rows = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is a {type(text).__name__}, not a str")
            if not text.strip():
                raise ValueError(f"text {index} is empty: give each text at least one word")
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                raise ValueError(f"text {index} ({_shorten(text)!r}) has {len(ids)} tokens with its start and end "
                                 f"tokens; this model's context holds {context_length}: shorten it")
            rows.append(ids + [self.pad_id] * (context_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def strings(self, ids: Sequence[int]) -> list[str]:
        """Display strings of a sequence of ids."""
        return [self.token_string(int(i)) for i in ids]


def _shorten(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from open_clip.tokenizer import bytes_to_unicode

    return {character: byte for byte, character in bytes_to_unicode().items()}


def _readable(piece: str) -> str:
    """A byte-level BPE piece (``"cafÃ©</w>"``) as text (``"café</w>"``); special tokens unchanged."""
    if piece in (START_TOKEN, END_TOKEN):
        return piece
    ends_word = piece.endswith("</w>")
    body = piece[:-4] if ends_word else piece
    decoder = _byte_decoder()
    if all(character in decoder for character in body):
        body = bytearray(decoder[character] for character in body).decode("utf-8", errors="replace")
    return body + ("</w>" if ends_word else "")


class OpenClipTokenizer(TextTokenizer):
    """open_clip's ``SimpleTokenizer`` (CLIP's byte-level BPE, shipped with open_clip: works offline): lower-cased,
    whitespace-cleaned text, padding with id 0 as open_clip pads."""

    def __init__(self, tokenizer: Any = None):
        from open_clip.tokenizer import SimpleTokenizer

        self.bpe = SimpleTokenizer() if tokenizer is None else tokenizer
        if not isinstance(self.bpe, SimpleTokenizer):
            raise TypeError(f"expected open_clip's SimpleTokenizer, got {type(self.bpe).__name__}; wrap other "
                            "tokenizers with HFTokenizer or write a TextTokenizer")
        self.sot_id, self.eot_id, self.pad_id = self.bpe.sot_token_id, self.bpe.eot_token_id, 0

    def encode(self, text: str) -> list[int]:
        return list(self.bpe.encode(text))

    def token_string(self, token_id: int) -> str:
        if token_id in (self.sot_id, self.eot_id):  # open_clip names them <start_of_text>, <end_of_text>
            return START_TOKEN if token_id == self.sot_id else END_TOKEN
        return _readable(self.bpe.decoder[token_id])


class HFTokenizer(TextTokenizer):
    """A Hugging Face tokenizer (``CLIPTokenizer``); padding with its pad token (CLIP's: the end-of-text token)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs start (bos) and end (eos) tokens, as CLIP's has")
        self.sot_id, self.eot_id = int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.eot_id

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_string(self, token_id: int) -> str:
        return _readable(self.tokenizer.convert_ids_to_tokens([token_id])[0])


def bundled_clip_tokenizer() -> Any:
    """A transformers ``CLIPTokenizer`` built offline from the BPE vocabulary that open_clip ships
    (``bpe_simple_vocab_16e6.txt.gz``, OpenAI CLIP's), for Hugging Face CLIP models converted without their
    tokenizer files. It gives the ids of open_clip's tokenizer (and of ``openai/clip-vit-*``'s own)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    pieces = list(bytes_to_unicode().values())
    vocabulary = pieces + [piece + "</w>" for piece in pieces] + ["".join(merge) for merge in merges]
    vocabulary += [START_TOKEN, END_TOKEN]
    return CLIPTokenizer(vocab={piece: index for index, piece in enumerate(vocabulary)}, merges=merges)


class WordTokenizer(TextTokenizer):
    """A closed word vocabulary (the shapes world's captions): lower-cased words and the punctuation ``, .``.

    Ids: 0 is padding, then the words in the given order, then the start and the end token, so that the end token
    has the largest id and CLIP's ``argmax`` pooling finds it. A word outside the vocabulary is an error that lists
    the vocabulary.
    """

    _SPLIT = re.compile(r"[a-z]+|[,.]")

    def __init__(self, words: Sequence[str]):
        words = [str(w) for w in words]
        if len(set(words)) != len(words) or not words:
            raise ValueError("the vocabulary needs distinct words")
        self.words = words
        self.ids = {word: index + 1 for index, word in enumerate(words)}
        self.pad_id, self.sot_id, self.eot_id = 0, len(words) + 1, len(words) + 2

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 3

    def encode(self, text: str) -> list[int]:
        lowered = text.lower()
        unknown = sorted(set(re.sub(r"[a-z]+|[,.]|\s", " ", lowered).split()))
        pieces = self._SPLIT.findall(lowered)
        unknown += sorted({p for p in pieces if p not in self.ids})
        if unknown:
            raise ValueError(f"{_shorten(text)!r} has words this model does not know: {', '.join(unknown)}. "
                             f"Its vocabulary: {' '.join(self.words)}")
        return [self.ids[p] for p in pieces]

    def token_string(self, token_id: int) -> str:
        if token_id == self.pad_id:
            return PAD_TOKEN
        if token_id == self.sot_id:
            return START_TOKEN
        if token_id == self.eot_id:
            return END_TOKEN
        return self.words[token_id - 1]

    def to_config(self) -> dict:
        return {"kind": "words", "words": list(self.words)}
