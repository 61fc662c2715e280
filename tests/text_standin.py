"""A tiny text classifier built from relevance.layers and relevance.ops, with its own adapter: the stand-in
for the text families (BERT) in the tests of the views, flows and TensorBoard logging.

It does what a text family must do for them: declare the ``"text"`` token space (modality ``"text"``, the
padding mask), record each block's attention and (one line) its query and key vectors, pool the [CLS] token
with ``ops.select_token`` (the readout), and give the batch's :class:`TextInputs` (token strings, special
tokens, word ids).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relevance import layers, ops
from relevance.adapter import Adapter, Batch, ModelInfo, TextInputs

SPECIAL = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
WORDS = ["a", "the", "film", "was", "wonder", "##ful", "terrible", "plot", "great", "boring", "acting", "not"]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, layer: int):
        super().__init__()
        self.heads, self.layer, self.head_dim = heads, layer, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = layers.Linear(dim, 3 * dim)
        self.proj = layers.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = ops.mask_scores(ops.scale(ops.attention_scores(q, k.transpose(-2, -1)), self.scale), mask)
        attention = ops.softmax(scores, dim=-1)
        ops.record_attention(attention, stream="text", layer=self.layer)
        ops.record_query_key(q, k, stream="text", layer=self.layer, scale=self.scale)
        return self.proj(ops.attention_values(attention, v).transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, layer: int):
        super().__init__()
        self.norm1, self.norm2 = layers.LayerNorm(dim), layers.LayerNorm(dim)
        self.attn = Attention(dim, heads, layer)
        self.fc1, self.act, self.fc2 = layers.Linear(dim, 2 * dim), layers.Activation("gelu"), layers.Linear(2 * dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        ops.record_block_input(x, stream="text")
        x = ops.fanout(x)
        x = ops.add(x, self.attn(self.norm1(x), mask))
        x = ops.fanout(x)
        return ops.add(x, self.fc2(self.act(self.fc1(self.norm2(x)))))


class TinyTextModel(nn.Module):
    """[CLS] w1 ... wk [SEP] [PAD]... -> 2 logits (``negative``, ``positive``)."""

    def __init__(self, heads: int = 2, depth: int = 2, seed: int = 0, head_dim: int = 8):
        super().__init__()
        dim = heads * head_dim
        torch.manual_seed(seed)
        self.vocab = SPECIAL + WORDS
        self.embed = nn.Embedding(len(self.vocab), dim)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.5)
        self.blocks = nn.ModuleList(Block(dim, heads, i) for i in range(depth))
        self.norm = layers.LayerNorm(dim)
        self.head = layers.Linear(dim, 2)
        with torch.no_grad():
            self.embed.weight.normal_(0, 1.0)
            for block in self.blocks:
                block.attn.qkv.weight.mul_(3.0)  # sharper attention than at initialisation
        self.info = ModelInfo(name="tiny-text", class_names=["negative", "positive"])
        self.eval()

    def relevance_adapter(self) -> "TinyTextAdapter":
        return TinyTextAdapter(self, self.info)

    def forward(self, input_ids: Tensor, valid: Tensor) -> Tensor:
        ops.record_space("text", "text", valid)
        x = ops.mark_input(ops.add(self.embed(input_ids), self.pos[:, :input_ids.shape[1]]), stream="text",
                           site="word_embeddings")
        mask = torch.zeros(valid.shape, dtype=x.dtype).masked_fill(~valid, -1e9)[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        ops.record_block_input(x, stream="text")
        return self.head(ops.select_token(self.norm(x), 0, stream="text"))


class TinyTextAdapter(Adapter):
    module: TinyTextModel

    def depths(self) -> dict[str, int]:
        return {"text": len(self.module.blocks)}

    def prepare(self, inputs, *, texts=None, target=None):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        vocab = self.module.vocab
        pieces = [["[CLS]", *text.lower().split(), "[SEP]"] for text in texts]
        length = max(len(p) for p in pieces)
        tokens = [p + ["[PAD]"] * (length - len(p)) for p in pieces]
        ids = torch.tensor([[vocab.index(t) if t in vocab else vocab.index("[UNK]") for t in row] for row in tokens])
        valid = torch.tensor([[i < len(p) for i in range(length)] for p in pieces])
        special = torch.tensor([[t in SPECIAL for t in row] for row in tokens])
        word_ids = [[None if t in SPECIAL else i for i, t in enumerate(row)] for row in tokens]
        streams = {"text": TextInputs(input_ids=ids, valid=valid, tokens=tokens, special=special, word_ids=word_ids,
                                      texts=texts)}
        return Batch(inputs={"input_ids": ids, "valid": valid}, size=len(texts), streams=streams), target

    def forward(self, batch: Batch) -> Tensor:
        return self.module(batch.inputs["input_ids"], batch.inputs["valid"])
