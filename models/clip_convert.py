"""Converters into :class:`relevance.models.clip.CLIP`: open_clip's ``CLIP`` / ``CustomTextCLIP`` and Hugging Face's
``CLIPModel``, refusing with an error that names it any part whose relevance rules are not implemented (ResNet
image towers, attentional pooling, SigLIP's sigmoid head, bidirectional or Hugging Face text towers, custom
attention blocks, ...). The source model is not modified.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from relevance.adapter import ModelInfo
from relevance.models.clip import (CLIP, CLIP_CONVENTIONS, OPENAI_MEAN, OPENAI_STD, CLIPConfig, TextConfig,
                                   VisionConfig)
from relevance.models.clip_text import HFTokenizer, OpenClipTokenizer, TextTokenizer, bundled_clip_tokenizer
from relevance.models.vit import UnsupportedModelError


def _require(condition: bool, part: str) -> None:
    if not condition:
        raise UnsupportedModelError(f"cannot convert this CLIP model: {part} is not supported")


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


# -------------------------------------------------------------------------------------------- open_clip
def _open_clip_activation(module: nn.Module, where: str) -> str:
    from open_clip.transformer import QuickGELU

    if type(module) is QuickGELU:
        return "quick_gelu"
    if type(module) is nn.GELU:
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    raise UnsupportedModelError(f"cannot convert this CLIP model: {where}: activation {type(module).__name__} is "
                                "not supported (QuickGELU and GELU are)")


def _open_clip_blocks(transformer: nn.Module, where: str) -> tuple[int, int, int, str, float, bool]:
    """(depth, heads, mlp width, activation, LayerNorm eps, layer scale) of an open_clip ``Transformer``."""
    from open_clip.transformer import LayerScale, ResidualAttentionBlock

    blocks = list(transformer.resblocks)
    _require(len(blocks) > 0, f"{where} without blocks")
    first = blocks[0]
    for index, block in enumerate(blocks):
        at = f"{where} block {index}"
        _require(type(block) is ResidualAttentionBlock,
                 f"{at} of type {type(block).__name__} (custom blocks: qk_norm, scaled cosine attention, head scales)")
        _require(not hasattr(block, "ln_1_kv"), f"{at}: cross-attention")
        attention = block.attn
        _require(isinstance(attention, nn.MultiheadAttention) and attention._qkv_same_embed_dim
                 and attention.in_proj_bias is not None and attention.bias_k is None and not attention.add_zero_attn,
                 f"{at}: attention {type(attention).__name__} other than nn.MultiheadAttention with packed biased q/k/v")
        for name in ("ln_1", "ln_2"):
            norm = getattr(block, name)
            _require(isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and norm.bias is not None,
                     f"{at}: {name} of type {type(norm).__name__}")
        for name in ("ls_1", "ls_2"):
            _require(type(getattr(block, name)) in (nn.Identity, LayerScale), f"{at}: {name}")
        _require(isinstance(block.ls_1, LayerScale) == isinstance(first.ls_1, LayerScale), f"{at}: mixed LayerScale")
        mlp = block.mlp
        _require(isinstance(mlp, nn.Sequential) and list(dict(mlp.named_children())) == ["c_fc", "gelu", "c_proj"],
                 f"{at}: MLP layout (scale_fc?)")
        _require(block.ln_1.eps == first.ln_1.eps and block.ln_2.eps == first.ln_1.eps, f"{at}: mixed LayerNorm eps")
        _require(_open_clip_activation(mlp.gelu, at) == _open_clip_activation(first.mlp.gelu, where),
                 f"{at}: mixed activations")
    return (len(blocks), first.attn.num_heads, first.mlp.c_fc.out_features, _open_clip_activation(first.mlp.gelu, where),
            float(first.ln_1.eps), isinstance(first.ls_1, LayerScale))


def _open_clip_vision(visual: nn.Module) -> tuple[VisionConfig, int]:
    """The image tower's config and the embedding width."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        name = type(visual).__name__
        part = {"ModifiedResNet": "a ResNet image tower (ModifiedResNet, attention pooling)",
                "TimmModel": "a timm image tower (TimmModel)"}.get(name, f"the image tower {name}")
        raise UnsupportedModelError(f"cannot convert this CLIP model: {part} is not supported (ViT towers are)")
    _require(visual.attn_pool is None, "attentional pooling in the image tower (attn_pool, CoCa)")
    _require(visual.pool_type in ("tok", "avg"), f"image pool_type {visual.pool_type!r}")
    _require(visual.proj is not None, "an image tower without projection")
    _require(visual.conv1.bias is None and visual.conv1.in_channels == 3, "the patch embedding")
    _require(isinstance(visual.ln_post, nn.LayerNorm), f"ln_post of type {type(visual.ln_post).__name__}")
    _require(isinstance(visual.ln_pre, (nn.LayerNorm, nn.Identity)), f"ln_pre of type {type(visual.ln_pre).__name__}")
    depth, heads, mlp_width, activation, eps, layer_scale = _open_clip_blocks(visual.transformer, "image tower")
    _require(visual.ln_post.eps == eps, "different LayerNorm eps within the image tower")
    return VisionConfig(image_size=_pair(visual.image_size), patch_size=_pair(visual.patch_size),
                        width=visual.conv1.out_channels, layers=depth, heads=heads, mlp_width=mlp_width,
                        activation=activation, norm_eps=eps, ln_pre=isinstance(visual.ln_pre, nn.LayerNorm),
                        pool="token" if visual.pool_type == "tok" else "avg",
                        final_ln_after_pool=bool(visual.final_ln_after_pool), layer_scale=layer_scale), visual.proj.shape[1]


def _open_clip_text(text: Any, embed_dim: int) -> tuple[TextConfig, str]:
    """The text config, and the state-dict prefix of the text modules ("" for CLIP, "text." for CustomTextCLIP)."""
    from open_clip.transformer import TextTransformer

    if hasattr(text, "text"):  # CustomTextCLIP
        tower = text.text
        if not isinstance(tower, TextTransformer):
            raise UnsupportedModelError(f"cannot convert this CLIP model: the text tower {type(tower).__name__} "
                                        "(a Hugging Face text encoder?) is not supported")
        _require(tower.cls_emb is None, "a text class token (embed_cls, CoCa)")
        pool, eos, mask, projection, prefix = tower.pool_type, tower.eos_id, tower.attn_mask, tower.text_projection, "text."
        parts = tower
    else:
        pool, eos, mask, projection, prefix = text.text_pool_type, text.text_eos_id, text.attn_mask, text.text_projection, ""
        parts = text
    _require(mask is not None, "a bidirectional text tower (no_causal_mask)")
    _require(pool in ("argmax", "eos"), f"text pool_type {pool!r} (argmax and eos are supported)")
    _require(projection is not None, "a text tower without projection")
    if isinstance(projection, nn.Linear):
        bias, out = projection.bias is not None, projection.out_features
    else:
        bias, out = False, projection.shape[1]
    _require(out == embed_dim, "text and image embeddings of different widths")
    _require(isinstance(parts.ln_final, nn.LayerNorm), "the final text norm")
    depth, heads, mlp_width, activation, eps, layer_scale = _open_clip_blocks(parts.transformer, "text tower")
    config = TextConfig(context_length=parts.positional_embedding.shape[0], vocab_size=parts.token_embedding.num_embeddings,
                        width=parts.token_embedding.embedding_dim, layers=depth, heads=heads, mlp_width=mlp_width,
                        activation=activation, norm_eps=eps, pool=pool, eos_id=int(eos if eos is not None else 0),
                        projection_bias=bias, layer_scale=layer_scale)
    return config, prefix


def _open_clip_data_config(model: nn.Module, image_size: tuple[int, int]):
    from relevance.images import DataConfig

    try:
        from open_clip import get_model_preprocess_cfg

        cfg = get_model_preprocess_cfg(model)
    except Exception:  # noqa: BLE001 - older open_clip: OpenAI's defaults
        cfg = {}
    mode = {"shortest": "center", "squash": "squash", "longest": "border"}.get(cfg.get("resize_mode", "shortest"),
                                                                                 "center")
    return DataConfig(input_size=image_size, mean=tuple(cfg.get("mean", OPENAI_MEAN)),
                      std=tuple(cfg.get("std", OPENAI_STD)), interpolation=cfg.get("interpolation", "bicubic"),
                      crop_pct=1.0, crop_mode=mode)


def config_from_open_clip(model: nn.Module) -> tuple[CLIPConfig, str]:
    """Read the architecture of an open_clip ``CLIP``/``CustomTextCLIP``, refusing unsupported parts by name."""
    from open_clip.model import CLIP as OpenClipCLIP, CustomTextCLIP

    if not isinstance(model, (OpenClipCLIP, CustomTextCLIP)):
        name = type(model).__name__
        part = "CoCa (attentional pooling and a captioning decoder)" if name == "CoCa" else name
        raise UnsupportedModelError(f"cannot convert {part}: expected open_clip's CLIP (or CustomTextCLIP)")
    _require(getattr(model, "logit_bias", None) is None, "SigLIP's sigmoid head (logit_bias)")
    vision, embed_dim = _open_clip_vision(model.visual)
    text, prefix = _open_clip_text(model, embed_dim)
    return CLIPConfig(embed_dim=embed_dim, vision=vision, text=text), prefix


def from_open_clip(model: nn.Module, tokenizer: Any = None, data_config: Any = None) -> CLIP:
    """An LRP-aware copy of an open_clip ``CLIP`` with its weights, dtype and device, and its image preprocessing.

    ``tokenizer``: an open_clip ``SimpleTokenizer``, a Hugging Face tokenizer or a
    :class:`~relevance.models.clip_text.TextTokenizer`; default: open_clip's CLIP BPE tokenizer (offline) when the
    vocabulary is CLIP's (49408 tokens). ``data_config`` overrides the image preprocessing read from the model.
    """
    config, prefix = config_from_open_clip(model)
    state = model.state_dict()
    if prefix:
        state = {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in state.items()}
    state = {key: value.reshape(()) if key == "logit_scale" else value for key, value in state.items()}
    converted = _build(config, state, next(model.parameters()))
    converted.info = ModelInfo(output="pair_logits", conventions=CLIP_CONVENTIONS,
                               data_config=data_config or _open_clip_data_config(model, config.vision.image_size),
                               tokenizer=_tokenizer(tokenizer, config.text, default="open_clip"))
    return converted


# --------------------------------------------------------------------------------------------- Hugging Face
_HF_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def _hf_tower(config: Any, where: str) -> dict:
    _require(config.hidden_act in _HF_ACTIVATIONS, f"{where}: activation {config.hidden_act!r}")
    return dict(width=config.hidden_size, layers=config.num_hidden_layers, heads=config.num_attention_heads,
                mlp_width=config.intermediate_size, activation=_HF_ACTIVATIONS[config.hidden_act],
                norm_eps=float(config.layer_norm_eps))


def config_from_hf(model: nn.Module) -> CLIPConfig:
    """Read the architecture of a Hugging Face ``CLIPModel``, refusing other classes by name."""
    name = type(model).__name__
    if name.startswith("Siglip"):
        raise UnsupportedModelError(f"cannot convert {name}: SigLIP's sigmoid head (logit_bias) is not supported")
    from transformers import CLIPModel

    if not isinstance(model, CLIPModel):
        raise UnsupportedModelError(f"cannot convert {name}: expected transformers' CLIPModel")
    vision, text = model.config.vision_config, model.config.text_config
    _require(vision.num_channels == 3, "images with other than 3 channels")
    eos = text.eos_token_id
    _require(isinstance(eos, int), f"eos_token_id {eos!r} (one id expected)")
    return CLIPConfig(
        embed_dim=model.config.projection_dim,
        vision=VisionConfig(image_size=_pair(vision.image_size), patch_size=_pair(vision.patch_size),
                            **_hf_tower(vision, "image tower")),
        text=TextConfig(context_length=text.max_position_embeddings, vocab_size=text.vocab_size,
                        pool="argmax" if eos == 2 else "eos", eos_id=eos, **_hf_tower(text, "text tower")))


def _hf_blocks(state: dict[str, Tensor], source: str, target: str, depth: int) -> dict[str, Tensor]:
    out = {}
    for i in range(depth):
        s, t = f"{source}.encoder.layers.{i}.", f"{target}.resblocks.{i}."
        for part in ("weight", "bias"):
            out[f"{t}attn.in_proj_{part}"] = torch.cat([state.pop(f"{s}self_attn.{p}_proj.{part}") for p in "qkv"])
            out[f"{t}attn.out_proj.{part}"] = state.pop(f"{s}self_attn.out_proj.{part}")
            out[f"{t}ln_1.{part}"] = state.pop(f"{s}layer_norm1.{part}")
            out[f"{t}ln_2.{part}"] = state.pop(f"{s}layer_norm2.{part}")
            out[f"{t}mlp.c_fc.{part}"] = state.pop(f"{s}mlp.fc1.{part}")
            out[f"{t}mlp.c_proj.{part}"] = state.pop(f"{s}mlp.fc2.{part}")
    return out


def state_from_hf(model: nn.Module, config: CLIPConfig) -> dict[str, Tensor]:
    """The Hugging Face state dict under open_clip's names; every source tensor must be used."""
    state = dict(model.state_dict())
    v, t = "vision_model", "text_model"
    out = {
        "visual.class_embedding": state.pop(f"{v}.embeddings.class_embedding"),
        "visual.conv1.weight": state.pop(f"{v}.embeddings.patch_embedding.weight"),
        "visual.positional_embedding": state.pop(f"{v}.embeddings.position_embedding.weight"),
        "visual.proj": state.pop("visual_projection.weight").t(),
        "token_embedding.weight": state.pop(f"{t}.embeddings.token_embedding.weight"),
        "positional_embedding": state.pop(f"{t}.embeddings.position_embedding.weight"),
        "text_projection": state.pop("text_projection.weight").t(),
        "logit_scale": state.pop("logit_scale").reshape(()),
    }
    for part in ("weight", "bias"):
        out[f"visual.ln_pre.{part}"] = state.pop(f"{v}.pre_layrnorm.{part}")
        out[f"visual.ln_post.{part}"] = state.pop(f"{v}.post_layernorm.{part}")
        out[f"ln_final.{part}"] = state.pop(f"{t}.final_layer_norm.{part}")
    out.update(_hf_blocks(state, v, "visual.transformer", config.vision.layers))
    out.update(_hf_blocks(state, t, "transformer", config.text.layers))
    leftover = sorted(k for k in state if not k.endswith("position_ids"))
    _require(not leftover, f"the parameters {leftover[:6]}")
    return out


def from_hf(model: nn.Module, tokenizer: Any = None, data_config: Any = None) -> CLIP:
    """An LRP-aware copy of a Hugging Face ``CLIPModel`` with its weights, dtype and device.

    ``tokenizer``: the checkpoint's tokenizer (a transformers tokenizer) or a
    :class:`~relevance.models.clip_text.TextTokenizer`; default: a ``CLIPTokenizer`` built offline from the BPE
    vocabulary open_clip ships (the same ids as OpenAI CLIP's tokenizer), when the vocabulary has CLIP's 49408
    tokens. ``data_config``: the image preprocessing (default: ``CLIPImageProcessor``'s, resize the shorter side
    bicubically and centre-crop, OpenAI's mean and std).
    """
    from relevance.images import DataConfig

    config = config_from_hf(model)
    converted = _build(config, state_from_hf(model, config), next(model.parameters()))
    default = DataConfig(input_size=config.vision.image_size, mean=OPENAI_MEAN, std=OPENAI_STD,
                         interpolation="bicubic", crop_pct=1.0, crop_mode="center")
    converted.info = ModelInfo(name=getattr(model.config, "_name_or_path", None) or None, output="pair_logits",
                               conventions=CLIP_CONVENTIONS, data_config=data_config or default,
                               tokenizer=_tokenizer(tokenizer, config.text, default="hf"))
    return converted


# ------------------------------------------------------------------------------------------------ shared
def _build(config: CLIPConfig, state: dict[str, Tensor], parameter: Tensor) -> CLIP:
    model = CLIP(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    _require(not unexpected, f"the parameters {sorted(unexpected)[:6]}")
    if missing:
        raise ValueError(f"the source model lacks {sorted(missing)[:6]}")
    return model.to(device=parameter.device, dtype=parameter.dtype).eval()


def _tokenizer(tokenizer: Any, text: TextConfig, default: str) -> TextTokenizer | None:
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer
    if tokenizer is not None:
        from open_clip.tokenizer import SimpleTokenizer

        return OpenClipTokenizer(tokenizer) if isinstance(tokenizer, SimpleTokenizer) else HFTokenizer(tokenizer)
    if text.vocab_size != 49408:
        return None  # not CLIP's vocabulary: texts must come as token ids, or pass the tokenizer
    return OpenClipTokenizer() if default == "open_clip" else HFTokenizer(bundled_clip_tokenizer())
