"""CLIP (Radford et al. 2021) with a ViT image tower, built from LRP-aware layers, with the weights of open_clip's
``CLIP`` or Hugging Face's ``CLIPModel``.

``from_open_clip(model)`` and ``from_hf(model)`` convert (:mod:`relevance.models.clip_convert`); ``create(name)``
builds one by name. Parameter names are open_clip's (OpenAI CLIP's), so its state dicts load unchanged; the
similarity logits equal the source library's.

The forward pass explains image-text *pairs*: ``forward(pixels (B, 3, H, W), input_ids (B, L)) -> (B,)``, the
similarity logit of each pair (``logit_scale * cos(image_b, text_b)``: the diagonal of ``logits_per_image`` that
the ICCV 2021 CLIP notebook explains, spec §4.7 step 2). It records two token streams on the current tape:
``"image"`` (class token + patch grid; readout: the class token, or the patch mean for ``avg`` pooling) and
``"text"`` (causal mask; readout: the end-of-text token of each text, found exactly as the source library finds
it: the largest id, or the first ``eos_id``). Attention is always computed eagerly.

:class:`CLIPAdapter` pairs images and texts (B and B, 1 and B, B and 1, or zero-shot prompts picked per image by
the target); :func:`zero_shot` ranks prompts; :func:`similarity_matrix` gives all logits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relevance import layers, ops
from relevance.adapter import Adapter, Batch, ImageInputs, ModelInfo, TextInputs, check_finite
from relevance.methods import Conventions
from relevance.models.clip_text import PAD_TOKEN, TextTokenizer

#: OpenAI CLIP's image normalisation (also Hugging Face's ``CLIPImageProcessor`` default).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: The family's reference conventions: the ICCV 2021 CLIP notebook uses the last block only for gradient rollout
#: (``start_layer = start_layer_text = -1``; MM#8, MM#10: with every block, artefact tokens of ViT-B/16 overshadow
#: the object), and its generators weight Grad-CAM heads by the gradient's mean over the whole map (spec §4.8).
CLIP_CONVENTIONS = Conventions(start_layer={"gradient_rollout": -1}, gradcam_weights="whole_map")


@dataclass(frozen=True)
class VisionConfig:
    """The ViT image tower (open_clip's ``VisionTransformer``)."""

    image_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (16, 16)
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_width: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-5
    ln_pre: bool = True
    pool: str = "token"  # "token": the class token; "avg": the mean of the patch tokens
    final_ln_after_pool: bool = False
    layer_scale: bool = False

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    @property
    def num_tokens(self) -> int:
        return 1 + self.grid_size[0] * self.grid_size[1]


@dataclass(frozen=True)
class TextConfig:
    """The causal text tower (open_clip's ``TextTransformer`` / the text half of its ``CLIP``)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_width: int = 2048
    activation: str = "gelu"
    norm_eps: float = 1e-5
    pool: str = "argmax"  # "argmax": at the largest id (CLIP's end-of-text); "eos": at the first ``eos_id``
    eos_id: int = 49407
    projection_bias: bool = False
    layer_scale: bool = False


@dataclass(frozen=True)
class CLIPConfig:
    """Both towers and the shared embedding width."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CLIPConfig":
        vision = dict(values["vision"])
        for key in ("image_size", "patch_size"):
            vision[key] = tuple(vision[key])
        return cls(embed_dim=int(values["embed_dim"]), vision=VisionConfig(**vision), text=TextConfig(**values["text"]))


# ------------------------------------------------------------------------------------------------- layers
class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters (``in_proj_weight`` [q; k; v],
    ``in_proj_bias``, ``out_proj``), computed eagerly: ``A = softmax(Q K^T d^-1/2 + mask)`` is recorded as block
    ``layer`` of ``stream``."""

    def __init__(self, width: int, heads: int, stream: str, layer: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.stream, self.layer = heads, width // heads, stream, layer
        self.scale = self.head_dim ** -0.5
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = layers.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, tokens, width = x.shape
        qkv = ops.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = ops.scale(ops.attention_scores(q, k.transpose(-2, -1)), self.scale)
        if mask is not None:
            scores = ops.mask_scores(scores, mask)
        attention = ops.softmax(scores, dim=-1)
        ops.record_attention(attention, stream=self.stream, layer=self.layer)
        ops.record_query_key(q, k, stream=self.stream, layer=self.layer, scale=self.scale)
        out = ops.attention_values(attention, v).transpose(1, 2).reshape(batch, tokens, width)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block ``x + ls_1(attn(ln_1(x)))``, then ``x + ls_2(mlp(ln_2(x)))`` (open_clip's names)."""

    def __init__(self, width: int, heads: int, mlp_width: int, activation: str, eps: float, layer_scale: bool,
                 stream: str, layer: int):
        super().__init__()
        self.stream = stream
        self.ln_1 = layers.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads, stream, layer)
        self.ls_1 = layers.LayerScale(width) if layer_scale else nn.Identity()
        self.ln_2 = layers.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", layers.Linear(width, mlp_width)),
            ("gelu", layers.Activation(activation)),
            ("c_proj", layers.Linear(mlp_width, width)),
        ]))
        self.ls_2 = layers.LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        ops.record_block_input(x, stream=self.stream)
        x = ops.fanout(x)
        x = ops.add(x, self.ls_1(self.attn(self.ln_1(x), mask)))
        x = ops.fanout(x)
        return ops.add(x, self.ls_2(self.mlp(self.ln_2(x))))


class Transformer(nn.Module):
    """``resblocks`` of one stream; records the tokens entering each block and leaving the last."""

    def __init__(self, width: int, depth: int, heads: int, mlp_width: int, activation: str, eps: float,
                 layer_scale: bool, stream: str):
        super().__init__()
        self.stream = stream
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width, activation, eps, layer_scale,
                                                              stream, index) for index in range(depth))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        ops.record_block_input(x, stream=self.stream)
        return x


def _projection(x: Tensor, projection: nn.Parameter | nn.Module) -> Tensor:
    """``x @ projection`` for a (D, E) parameter (OpenAI layout), or a linear module; rule kind ``linear``."""
    if isinstance(projection, nn.Module):
        return projection(x)
    return ops.linear(x, projection.t())


class VisionTransformer(nn.Module):
    """The image tower: pixels (B, 3, H, W) -> embedding (B, E)."""

    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        self.config = config
        width = config.width
        self.conv1 = layers.PatchConv2d(3, width, config.patch_size, config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(width ** -0.5 * torch.randn(width))
        self.positional_embedding = nn.Parameter(width ** -0.5 * torch.randn(config.num_tokens, width))
        self.ln_pre = layers.LayerNorm(width, eps=config.norm_eps) if config.ln_pre else nn.Identity()
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_width, config.activation,
                                       config.norm_eps, config.layer_scale, "image")
        self.ln_post = layers.LayerNorm(width, eps=config.norm_eps)
        self.proj = nn.Parameter(width ** -0.5 * torch.randn(width, embed_dim))

    def tokens(self, pixels: Tensor) -> Tensor:
        """The tokens leaving the last block (B, 1 + h*w, D); records the ``"image"`` stream."""
        expected = (3, *self.config.image_size)
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got "
                             f"{tuple(pixels.shape)}; prepare raw images with the model's data config")
        pixels = ops.mark_input(pixels, stream="image", site="pixels")
        batch = pixels.shape[0]
        ops.record_space("image", "image", torch.ones(batch, self.config.num_tokens, dtype=torch.bool,
                                                      device=pixels.device),
                         grid_size=self.config.grid_size, num_prefix_tokens=1)
        patches = self.conv1(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(patches.dtype).expand(batch, 1, -1)
        x = ops.add(torch.cat([cls, patches], dim=1), self.positional_embedding)
        return self.transformer(self.ln_pre(x))

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, N, D) -> (B, D): ``ln_post`` and the pooling, in the order of the source model."""
        if self.config.pool == "token":  # a per-token norm commutes with selecting a token
            return self.ln_post(ops.select_token(tokens, 0, stream="image"))
        if self.config.final_ln_after_pool:
            return self.ln_post(ops.mean_tokens(tokens, stream="image", start=1))
        return ops.mean_tokens(self.ln_post(tokens), stream="image", start=1)

    def forward(self, pixels: Tensor) -> Tensor:
        return _projection(self.pool(self.tokens(pixels)), self.proj)


def causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(L, L) additive mask: 0 on and below the diagonal, the lowest finite value above (a token sees itself and
    earlier tokens). Finite, unlike open_clip's -inf, so that the relevance rules of the mask addition never meet
    0 x inf; the softmax's probabilities are the same (exp underflows to exactly 0 either way)."""
    return torch.full((length, length), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)


class CLIP(nn.Module):
    """An LRP-aware CLIP. ``forward(pixels (B, 3, H, W), input_ids (B, L)) -> (B,)`` pair similarity logits.

    The text tower's modules sit at the top level, as in open_clip's ``CLIP`` (``token_embedding``,
    ``positional_embedding``, ``transformer``, ``ln_final``, ``text_projection``), the image tower under
    ``visual``. ``info`` holds the data config and the tokenizer (:attr:`tokenizer`, a
    :class:`~relevance.models.clip_text.TextTokenizer`).
    """

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        text = config.text
        self.visual = VisionTransformer(config.vision, config.embed_dim)
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(text.context_length, text.width))
        self.transformer = Transformer(text.width, text.layers, text.heads, text.mlp_width, text.activation,
                                       text.norm_eps, text.layer_scale, "text")
        self.ln_final = layers.LayerNorm(text.width, eps=text.norm_eps)
        if text.projection_bias:
            self.text_projection = layers.Linear(text.width, config.embed_dim)
        else:
            self.text_projection = nn.Parameter(text.width ** -0.5 * torch.randn(text.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.info = ModelInfo(output="pair_logits", conventions=CLIP_CONVENTIONS)

    # ------------------------------------------------------------------------------------- metadata
    def relevance_adapter(self) -> "CLIPAdapter":
        """The engine's view of this model (see :mod:`relevance.adapter`)."""
        return CLIPAdapter(self, self.info)

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.info.tokenizer

    @property
    def data_config(self):
        return self.info.data_config

    # ---------------------------------------------------------------------------------------- towers
    def encode_image(self, pixels: Tensor, normalize: bool = False) -> Tensor:
        """(B, 3, H, W) -> (B, E) image embeddings (unit length when ``normalize``)."""
        embedding = self.visual(pixels)
        return ops.l2_normalize(embedding) if normalize else embedding

    def pool_index(self, input_ids: Tensor) -> Tensor:
        """(B, L) -> (B,) the position each text is pooled at, as the source library finds it: the largest id
        (``argmax``, CLIP's end-of-text token has the largest id) or the first ``eos_id``."""
        if self.config.text.pool == "argmax":
            return input_ids.argmax(dim=-1)
        return (input_ids == self.config.text.eos_id).int().argmax(dim=-1)

    def text_tokens(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """The tokens leaving the last text block (B, L, D) and the pooled positions (B,); records the ``"text"``
        stream (tokens after a text's pooled token are padding)."""
        text = self.config.text
        if input_ids.dim() != 2 or input_ids.shape[1] > text.context_length:
            raise ValueError(f"expected token ids (B, L) with L <= {text.context_length}, got {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        index = self.pool_index(input_ids)
        valid = torch.arange(length, device=input_ids.device)[None] <= index[:, None]
        ops.record_space("text", "text", valid)
        x = ops.mark_input(self.token_embedding(input_ids), stream="text", site="token_embeddings")
        x = ops.add(x, self.positional_embedding[:length])
        return self.transformer(x, causal_mask(length, x.dtype, x.device)), index

    def encode_text(self, input_ids: Tensor, normalize: bool = False) -> Tensor:
        """(B, L) -> (B, E) text embeddings (unit length when ``normalize``)."""
        tokens, index = self.text_tokens(input_ids)
        pooled = self.ln_final(ops.select_token(tokens, index, stream="text"))
        embedding = _projection(pooled, self.text_projection)
        return ops.l2_normalize(embedding) if normalize else embedding

    def similarity(self, image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
        """(B, E), (B, E) unit-length embeddings -> (B,) ``logit_scale.exp() * <image_b, text_b>``."""
        return ops.scale(ops.pair_similarity(image_embeddings, text_embeddings), self.logit_scale.exp())

    def forward(self, pixels: Tensor, input_ids: Tensor) -> Tensor:
        return self.similarity(self.encode_image(pixels, normalize=True), self.encode_text(input_ids, normalize=True))

    @torch.no_grad()
    def logits(self, pixels: Tensor, input_ids: Tensor) -> Tensor:
        """Every image against every text: (B_i, B_t) similarity logits (``logits_per_image``), no gradient."""
        image = self.encode_image(pixels, normalize=True)
        text = self.encode_text(input_ids, normalize=True)
        return self.logit_scale.exp() * image @ text.t()


# ---------------------------------------------------------------------------------------------- adapter
class CLIPAdapter(Adapter):
    """Image-text pairs in, (B,) similarity logits out; streams ``"image"`` and ``"text"``.

    Pairing (:meth:`prepare`): B images and B texts are B pairs; one image and B texts, or B images and one text,
    broadcast. With a ``target`` (an int, one int per image, or ``"best"``), the texts are *prompts* and image ``b``
    is paired with prompt ``target[b]`` (``"best"``: its highest-scoring prompt), zero-shot; the explanation's
    ``extras`` then hold ``prompts``, ``prompt_index`` (B,), and for ``"best"`` the ``prompt_logits`` (B, K) and
    their ``ranking``. Texts are trimmed after the batch's last end-of-text token (the causal mask makes every
    output independent of later positions), so text maps are (B, L) with L the longest text of the batch.
    """

    module: CLIP

    def depths(self) -> dict[str, int]:
        return {"image": self.module.config.vision.layers, "text": self.module.config.text.layers}

    def prepare(self, inputs: Any, *, texts: Any = None, target: Any = None) -> tuple[Batch, Any]:
        if inputs is None or (isinstance(inputs, (list, tuple)) and not inputs):
            raise ValueError("no images given: an image-text model explains images against texts=...")
        if texts is None:
            raise ValueError("an image-text model explains image-text pairs: pass texts=... (strings or token ids)")
        images = self._images(inputs)
        input_ids, strings = self._texts(texts)
        num_images, num_texts = images.pixels.shape[0], input_ids.shape[0]
        extras: dict[str, Any] = {}
        if _is_prompt_choice(target):
            image_rows = list(range(num_images))
            text_rows = self._prompt_choice(target, images.pixels, input_ids, extras)
            extras.update(prompts=strings if strings is not None else input_ids, prompt_index=torch.tensor(text_rows))
            target = None
        else:
            image_rows, text_rows = _pairs(num_images, num_texts)
        pixels = images.pixels[image_rows] if num_images > 1 else images.pixels.expand(len(image_rows), -1, -1, -1)
        input_ids = _trim(input_ids[text_rows], self.module.pool_index(input_ids[text_rows]))
        pairs = ImageInputs(pixels, *(None if values is None else [values[i] for i in image_rows]
                                      for values in (images.originals, images.geometries)))
        text = self._text_inputs(input_ids, None if strings is None else [strings[i] for i in text_rows])
        batch = Batch(inputs={"pixels": pixels, "input_ids": input_ids}, size=len(image_rows),
                      streams={"image": pairs, "text": text}, extras=extras)
        return batch, target

    def forward(self, batch: Batch) -> Tensor:
        model = self.module
        image = model.encode_image(batch.inputs["pixels"], normalize=True)
        text = model.encode_text(batch.inputs["input_ids"], normalize=True)
        batch.extras["_embeddings"] = {"image": image.detach(), "text": text.detach()}
        return model.similarity(image, text)

    def output_from_layer(self, stream: str, layer: int, tokens: Tensor, batch: Batch, output: Tensor) -> Tensor:
        """The pair logits recomputed from the tokens leaving block ``layer`` of one tower, against the other
        tower's embedding from the full pass (LeGrad's per-layer score).

        Image tower: as the LeGrad authors' code does (``compute_legrad_clip``), the mean of *all* tokens (class
        token included) through ``ln_post`` and the projection, whatever the model's own pooling. Text tower:
        the model's own pooling (the end-of-text token) through ``ln_final`` and the projection.
        """
        model, embeddings = self.module, batch.extras["_embeddings"]
        if stream == "image":
            pooled = model.visual.ln_post(tokens.mean(dim=1))
            image = F.normalize(_projection(pooled, model.visual.proj), dim=-1)
            return model.similarity(image, embeddings["text"])
        index = model.pool_index(batch.inputs["input_ids"])
        pooled = model.ln_final(tokens[torch.arange(tokens.shape[0], device=tokens.device), index])
        text = F.normalize(_projection(pooled, model.text_projection), dim=-1)
        return model.similarity(embeddings["image"], text)

    def domain_warnings(self, batch: Batch) -> list[str]:
        check = self.info.in_domain
        originals = batch.streams["image"].originals
        if check is None or originals is None:
            return []
        outside = sorted({i for i, image in enumerate(originals) if not check(image)})
        if not outside:
            return []
        return [f"{len(outside)} of {batch.size} image(s) look unlike {self.info.domain or 'the training data'} "
                f"(samples {outside[:10]}): outside its domain, similarities and maps mean nothing"]

    # ------------------------------------------------------------------------------------- inputs
    def _images(self, inputs: Any) -> ImageInputs:
        parameter = self.module.logit_scale
        if isinstance(inputs, Tensor) and inputs.is_floating_point() and inputs.dim() in (3, 4):
            pixels = (inputs if inputs.dim() == 4 else inputs.unsqueeze(0)).to(parameter.device, parameter.dtype)
            check_finite(pixels, "the input images")
            return ImageInputs(pixels)
        from relevance.images import prepare

        if self.info.data_config is None:
            raise ValueError("raw images need the model's data config (how to resize and normalise); pass a "
                             "preprocessed float tensor (B, 3, H, W) instead")
        prepared = prepare(inputs, self.info.data_config)
        pixels = prepared.pixels.to(parameter.device, parameter.dtype)
        return ImageInputs(pixels, prepared.originals, prepared.geometries)

    def _texts(self, texts: Any) -> tuple[Tensor, list[str] | None]:
        """(K, L) token ids and the texts (``None`` when ids were given)."""
        config, device = self.module.config.text, self.module.logit_scale.device
        if isinstance(texts, dict):
            texts = texts["input_ids"]
        if isinstance(texts, str) or (isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], str)):
            if self.info.tokenizer is None:
                raise ValueError("this model has no tokenizer: pass token ids (B, L), or convert it with one")
            strings = [texts] if isinstance(texts, str) else list(texts)
            return self.info.tokenizer(strings, config.context_length).to(device), strings
        if isinstance(texts, (list, tuple)) and not texts:
            raise ValueError("no texts given")
        ids = torch.as_tensor(np.asarray(texts) if isinstance(texts, (list, tuple)) else texts)
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.dim() not in (1, 2):
            raise TypeError(f"token ids must be integers of shape (B, L) or (L,), got {ids.dtype} "
                            f"{tuple(ids.shape)}")
        ids = ids.reshape(1, -1) if ids.dim() == 1 else ids
        if ids.shape[1] == 0 or ids.shape[1] > config.context_length:
            raise ValueError(f"token ids of length {ids.shape[1]} do not fit this model's context of "
                             f"{config.context_length} tokens")
        if int(ids.min()) < 0 or int(ids.max()) >= config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {config.vocab_size - 1}]")
        if config.pool == "eos" and not bool((ids == config.eos_id).any(dim=1).all()):
            missing = (~(ids == config.eos_id).any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"texts {missing[:10]} hold no end-of-text token (id {config.eos_id})")
        return ids.to(device=device, dtype=torch.long), None

    def _prompt_choice(self, target: Any, pixels: Tensor, input_ids: Tensor, extras: dict) -> list[int]:
        num_images, num_prompts = pixels.shape[0], input_ids.shape[0]
        if isinstance(target, str):
            if target != "best":
                raise ValueError(f"target must be 'best', a prompt index or one per image, got {target!r}")
            logits = self.module.logits(pixels, _trim(input_ids, self.module.pool_index(input_ids)))
            extras.update(prompt_logits=logits, ranking=logits.argsort(dim=1, descending=True))
            return logits.argmax(dim=1).tolist()
        if isinstance(target, (int, np.integer)):
            chosen = [int(target)] * num_images
        else:
            values = torch.as_tensor(np.asarray(target) if isinstance(target, (list, tuple)) else target)
            if values.is_floating_point() or values.dtype == torch.bool:
                raise TypeError(f"target must hold prompt indices (ints), got dtype {values.dtype}")
            chosen = values.reshape(-1).tolist()
            if len(chosen) != num_images:
                raise ValueError(f"got {len(chosen)} prompt indices for {num_images} image(s): give one per image")
        if any(not 0 <= c < num_prompts for c in chosen):
            raise ValueError(f"prompt indices must lie in [0, {num_prompts - 1}], got {chosen}")
        return chosen

    def _text_inputs(self, input_ids: Tensor, strings: list[str] | None) -> TextInputs:
        from relevance.render.text import word_ids_from_tokens

        tokenizer, index = self.info.tokenizer, self.module.pool_index(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        valid = positions <= index[:, None]
        special = ((positions == 0) | (positions == index[:, None])) & valid
        tokens, word_ids = [], []
        for row, length in zip(input_ids.tolist(), (index + 1).tolist()):
            names = tokenizer.strings(row[:length]) if tokenizer is not None else [str(i) for i in row[:length]]
            names += [PAD_TOKEN] * (len(row) - length)
            tokens.append(names)
            words = word_ids_from_tokens(names)
            words[0] = words[length - 1] = None  # start and end tokens, whatever their strings
            word_ids.append(words)
        return TextInputs(input_ids=input_ids, valid=valid, tokens=tokens, special=special, word_ids=word_ids,
                          texts=strings)


def _is_prompt_choice(target: Any) -> bool:
    """Whether ``target`` picks prompts (an int, ints, ``"best"``) rather than being a score (``None``, a
    :class:`relevance.targets.Target`, a callable)."""
    from relevance.targets import Target

    if target is None or isinstance(target, Target):
        return False
    return not (callable(target) and not isinstance(target, (Tensor, np.ndarray)))


def _pairs(num_images: int, num_texts: int) -> tuple[list[int], list[int]]:
    if num_images == num_texts:
        return list(range(num_images)), list(range(num_texts))
    if num_images == 1:
        return [0] * num_texts, list(range(num_texts))
    if num_texts == 1:
        return list(range(num_images)), [0] * num_images
    raise ValueError(f"{num_images} images and {num_texts} texts cannot be paired: give as many texts as images, one "
                     "image with several texts, or several images with one text; or pass target= (a prompt index per "
                     "image, or 'best') to rank the texts as zero-shot prompts")


def _trim(input_ids: Tensor, index: Tensor) -> Tensor:
    """Drop the positions after the batch's last pooled token: under the causal mask no output depends on them."""
    return input_ids[:, :int(index.max()) + 1]


# --------------------------------------------------------------------------------------------- zero-shot
def _adapter(model: Any) -> CLIPAdapter:
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    if not isinstance(adapter, CLIPAdapter):
        raise TypeError(f"expected a CLIP model (relevance.models.clip), got {type(adapter.module).__name__}")
    return adapter


def similarity_matrix(model: Any, images: Any, texts: Any) -> Tensor:
    """(B_i, B_t) similarity logits of every image against every text (``logits_per_image``), no gradient."""
    adapter = _adapter(model)
    pixels = adapter._images(images).pixels
    input_ids, _ = adapter._texts(texts)
    return adapter.module.logits(pixels, _trim(input_ids, adapter.module.pool_index(input_ids)))


@dataclass
class ZeroShot:
    """Zero-shot classification of B images among K labels.

    Attributes
    ----------
    labels, prompts:
        The K labels and the prompts made from them.
    logits:
        (B, K) similarity logits; :attr:`probabilities` is their softmax over the labels.
    """

    labels: list[str]
    prompts: list[str]
    logits: Tensor

    @property
    def probabilities(self) -> Tensor:
        return self.logits.softmax(dim=-1)

    @property
    def ranking(self) -> Tensor:
        """(B, K) label indices, best first."""
        return self.logits.argsort(dim=-1, descending=True)

    @property
    def best(self) -> Tensor:
        """(B,) the best label of each image (pass it as ``target`` with ``texts=prompts`` to explain it)."""
        return self.logits.argmax(dim=-1)

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, the ``k`` best (label, probability)."""
        probabilities, ranking = self.probabilities, self.ranking[:, :k]
        return [[(self.labels[j], float(probabilities[i, j])) for j in row] for i, row in enumerate(ranking.tolist())]


def zero_shot(model: Any, images: Any, labels: Sequence[str], template: str = "a photo of a {}.") -> ZeroShot:
    """Rank ``labels`` for each image by the similarity of the image to ``template.format(label)`` (Radford et al.
    2021, zero-shot transfer). Explain the result with
    ``relevance.explain(model, images, texts=result.prompts, target=result.best)``."""
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("no labels given")
    if "{}" not in template:
        raise ValueError(f"the template needs a '{{}}' where the label goes, got {template!r}")
    prompts = [template.format(label) for label in labels]
    return ZeroShot(labels=labels, prompts=prompts, logits=similarity_matrix(model, images, prompts))


# ---------------------------------------------------------------------------------------------- creation
def from_open_clip(model: nn.Module, tokenizer: Any = None, data_config: Any = None) -> CLIP:
    """An LRP-aware copy of an open_clip ``CLIP`` (see :func:`relevance.models.clip_convert.from_open_clip`)."""
    from relevance.models.clip_convert import from_open_clip as convert

    return convert(model, tokenizer=tokenizer, data_config=data_config)


def from_hf(model: nn.Module, tokenizer: Any = None, data_config: Any = None) -> CLIP:
    """An LRP-aware copy of a Hugging Face ``CLIPModel`` (see :func:`relevance.models.clip_convert.from_hf`)."""
    from relevance.models.clip_convert import from_hf as convert

    return convert(model, tokenizer=tokenizer, data_config=data_config)


def describe(model: CLIP) -> dict:
    """The model's configuration as a plain dict (for model cards and logs)."""
    return model.config.to_dict()


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load open_clip-named weights into this package's CLIP or open_clip's own, strictly (``.safetensors``, or a
    ``torch.load(weights_only=True)`` file; :mod:`relevance.models.checkpoints`)."""
    from relevance.models.checkpoints import load_exactly, read_state_dict

    load_exactly(model, read_state_dict(path), path)



# ------------------------------------------------------------------------------------------ registry names
#: The hub CLIP that the image-text default prefers when its weights are cached or the hub answers.
DEFAULT_HUB_MODEL = "openai/clip-vit-base-patch16"
#: Hub CLIPs the registry lists (any Hugging Face ``CLIPModel`` repository works, and ``open_clip:<arch>/<tag>``).
HUB_MODELS = ("openai/clip-vit-base-patch16", "openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")
OPEN_CLIP_PREFIX = "open_clip:"


def recognizes(name: str) -> bool:
    """Names of this family: ``open_clip:<architecture>[/<pretrained tag>]`` or a Hugging Face repository whose
    name says CLIP (``openai/clip-vit-base-patch16``)."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return True
    return name.count("/") == 1 and "clip" in name.split("/")[1].lower()


def create(name: str, pretrained: bool = True, checkpoint: str | Path | None = None, **kwargs: Any) -> CLIP:
    """A CLIP by name, converted.

    ``open_clip:<architecture>[/<tag>]`` (e.g. ``open_clip:ViT-B-16/openai``): open_clip builds the architecture
    offline; weights come from ``checkpoint`` (a local ``.safetensors`` or ``weights_only`` torch file with
    open_clip's names), else from the hub when ``pretrained`` and a tag is given (the local cache first, a download
    only after a hub probe answered), else they are random. A Hugging Face repository (``openai/clip-vit-base-patch16``):
    ``CLIPModel.from_pretrained`` from the cache, or after a probe; its tokenizer too when cached, else CLIP's
    bundled vocabulary. ``kwargs`` go to ``open_clip.create_model``.
    """
    from relevance.models import hub

    if name.startswith(OPEN_CLIP_PREFIX):
        import open_clip

        architecture, _, tag = name[len(OPEN_CLIP_PREFIX):].partition("/")
        if architecture not in open_clip.list_models():
            raise ValueError(f"unknown open_clip architecture {architecture!r}; see open_clip.list_models()")
        if checkpoint is not None or not (pretrained and tag):
            source = open_clip.create_model(architecture, pretrained=None, **kwargs)
            if checkpoint is not None:
                load_weights(source, checkpoint)
        else:
            hub.require_open_clip_weights(architecture, tag)
            source = open_clip.create_model(architecture, pretrained=tag, **kwargs)
        model = from_open_clip(source.eval())
        model.info.name = name
        return model
    if checkpoint is not None:
        raise ValueError(f"a local checkpoint needs an open_clip architecture: open_clip:<architecture> (got {name!r})")
    from transformers import CLIPConfig as HFConfig, CLIPModel

    hub.require_hf_repository(name)
    source = CLIPModel.from_pretrained(name) if pretrained else CLIPModel(HFConfig.from_pretrained(name))
    try:
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(name)
    except Exception:  # noqa: BLE001 - no tokenizer files cached: CLIP's own vocabulary, bundled with open_clip
        tokenizer = None
    model = from_hf(source.eval(), tokenizer=tokenizer)
    model.info.name = name
    return model


def _register() -> None:
    from relevance.models.registry import Family, register_default, register_family

    register_family(Family("clip", recognizes, create, lambda: list(HUB_MODELS)))
    register_default("image-text", DEFAULT_HUB_MODEL, "shapes-clip")


_register()
