"""Stand-ins for the text and image-text families, built from relevance.layers / relevance.ops with their own small
adapters: what the gradient and perturbation methods need from a family, and nothing more.

* :class:`TinyText`: a one-block text classifier: token ids and an attention mask in, class logits out; the word
  embeddings are its first input site (as BERT's), position embeddings are added after it.
* :class:`TinyPair`: an image tower (patches) and a text tower, one similarity logit per image-text pair (as CLIP's
  ``pair_logits``).

While a tower's ``seen`` is a dict, each forward pass appends what it used at its input sites (a test's spy): the
token ids, attention mask and word embeddings of its rows, and the pixels.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from relevance import layers, ops
from relevance.adapter import Adapter, Batch, ImageInputs, ModelInfo, TextInputs

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
TOKENIZER = SimpleNamespace(pad_token_id=PAD, mask_token_id=MASK, unk_token_id=UNK)


def text_batch(rows: list[list[int]]) -> dict[str, Tensor]:
    """``[CLS] ids [SEP]`` per row, right-padded with [PAD]: ``input_ids`` and ``attention_mask`` (B, L)."""
    length = max(len(r) for r in rows) + 2
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row) + 2] = torch.tensor([CLS, *row, SEP])
        mask[i, :len(row) + 2] = 1
    return {"input_ids": ids, "attention_mask": mask}


def text_inputs(input_ids: Tensor, attention_mask: Tensor) -> TextInputs:
    valid = attention_mask.bool()
    special = ((input_ids == CLS) | (input_ids == SEP)) & valid
    tokens = [[str(t) for t in row] for row in input_ids.tolist()]
    word_ids = [[None if s or not v else j for j, (s, v) in enumerate(zip(sp, va))]
                for sp, va in zip(special.tolist(), valid.tolist())]
    return TextInputs(input_ids=input_ids, valid=valid, tokens=tokens, special=special, word_ids=word_ids)


class TextTower(nn.Module):
    """Word embeddings (input site ``word_embeddings``) + positions, one attention block."""

    def __init__(self, stream: str = "text", vocab: int = 24, dim: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stream = stream
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(32, dim)
        self.norm = layers.LayerNorm(dim)
        self.qkv = layers.Linear(dim, 3 * dim)
        self.proj = layers.Linear(dim, dim)
        self.seen: dict[str, list[Tensor]] | None = None

    def embeddings(self, input_ids: Tensor) -> Tensor:
        return self.embed(input_ids)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        valid = attention_mask.bool()
        ops.record_space(self.stream, "text", valid)
        words = ops.mark_input(self.embeddings(input_ids), stream=self.stream, site="word_embeddings")
        if self.seen is not None:
            self.seen.setdefault(self.stream, []).append((input_ids, attention_mask, words.detach().clone()))
        return self.encode(words, valid)

    def encode(self, words: Tensor, valid: Tensor) -> Tensor:
        """(B, L, D) word embeddings -> (B, L, D) tokens after the block."""
        x = ops.add(words, self.position(torch.arange(words.shape[1], device=words.device)))
        ops.record_block_input(x, stream=self.stream)
        q, k, v = self.qkv(self.norm(x)).unsqueeze(1).chunk(3, dim=-1)
        bias = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, -1e9)[:, None, None, :]
        scores = ops.mask_scores(ops.scale(ops.attention_scores(q, k.transpose(-2, -1)), q.shape[-1] ** -0.5), bias)
        attention = ops.softmax(scores, dim=-1)
        ops.record_attention(attention, stream=self.stream, layer=0)
        x = ops.add(x, self.proj(ops.attention_values(attention, v)[:, 0]))
        ops.record_block_input(x, stream=self.stream)
        return x


class TinyText(nn.Module):
    """A text classifier: [CLS] pooling and a linear head."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.tower = TextTower()
        self.head = layers.Linear(8, classes)
        with torch.no_grad():
            self.head.weight.normal_(0, 2.0)
        self.info = ModelInfo(output="class_logits", tokenizer=TOKENIZER)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(ops.select_token(self.tower(input_ids, attention_mask), 0, stream="text"))

    def logits_from_words(self, words: Tensor, attention_mask: Tensor) -> Tensor:
        """The logits computed from given word embeddings (B, L, D): a test's independent forward function."""
        return self.head(self.tower.encode(words, attention_mask.bool())[:, 0])

    def relevance_adapter(self) -> "TextAdapter":
        return TextAdapter(self, self.info)


class TextAdapter(Adapter):
    def depths(self) -> dict[str, int]:
        return {"text": 1}

    def prepare(self, inputs, *, texts=None, target=None):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        return Batch(inputs={"input_ids": ids, "attention_mask": mask}, size=ids.shape[0],
                     streams={"text": text_inputs(ids, mask)}), target

    def forward(self, batch: Batch) -> Tensor:
        return self.module(**batch.inputs)


class TinyPair(nn.Module):
    """An image tower (4 x 4 patches of 4 x 4 pixels, input site ``pixels``) and a text tower; output: 10 x the
    cosine of the two pooled vectors, one logit per pair (B,)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.patch = layers.Linear(48, 8)
        self.text = TextTower(seed=2)
        self.info = ModelInfo(output="pair_logits", tokenizer=TOKENIZER)

    def image_vector(self, pixels: Tensor) -> Tensor:
        patches = pixels.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(pixels.shape[0], 16, 48)
        return self.patch(patches).tanh().mean(dim=1)

    def text_vector(self, words: Tensor, attention_mask: Tensor) -> Tensor:
        tokens = self.text.encode(words, attention_mask.bool())
        weights = attention_mask.to(tokens.dtype) / attention_mask.sum(dim=1, keepdim=True).to(tokens.dtype)
        return torch.einsum("bn,bnd->bd", weights, tokens)

    def similarity(self, image: Tensor, text: Tensor) -> Tensor:
        return 10 * torch.nn.functional.cosine_similarity(image, text, dim=-1)

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        ops.record_space("image", "image", torch.ones(pixels.shape[0], 17, dtype=torch.bool), grid_size=(4, 4),
                         num_prefix_tokens=1)
        pixels = ops.mark_input(pixels, stream="image", site="pixels")
        if self.text.seen is not None:
            self.text.seen.setdefault("image", []).append(pixels.detach().clone())
        image = self.image_vector(pixels)
        tokens = self.text(input_ids, attention_mask)
        weights = attention_mask.to(tokens.dtype) / attention_mask.sum(dim=1, keepdim=True).to(tokens.dtype)
        return self.similarity(image, torch.einsum("bn,bnd->bd", weights, tokens))

    def relevance_adapter(self) -> "PairAdapter":
        return PairAdapter(self, self.info)


class PairAdapter(Adapter):
    def depths(self) -> dict[str, int]:
        return {"image": 0, "text": 1}

    def prepare(self, inputs, *, texts=None, target=None):
        ids, mask = texts["input_ids"], texts["attention_mask"]
        streams = {"image": ImageInputs(inputs), "text": text_inputs(ids, mask)}
        return Batch(inputs={"pixels": inputs, "input_ids": ids, "attention_mask": mask}, size=inputs.shape[0],
                     streams=streams), target

    def forward(self, batch: Batch) -> Tensor:
        return self.module(**batch.inputs)
