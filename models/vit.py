"""Vision Transformer (ViT, DeiT) built from LRP-aware layers, with the weights of any timm
``VisionTransformer`` (Dosovitskiy et al. 2021; Touvron et al. 2021).

``from_timm(module)`` converts a timm model; ``create(name, pretrained=True, checkpoint=None)`` builds one by
timm name, with hub weights or a local checkpoint. Parameter names equal timm's, so state dicts load unchanged
and the logits equal timm's.

The forward pass records, on the current :mod:`relevance.tape`, the ``"image"`` token space (patch grid, prefix
tokens), each block's attention probabilities and input, the pixels as the input site, and (through the pooling
operation itself) the readout; it never uses fused attention. :class:`ViTAdapter` is the family's adapter:
images in (paths, PIL, arrays, tensors), logits out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from relevance import layers, ops
from relevance.adapter import Adapter, Batch, ImageInputs, ModelInfo, check_finite


class UnsupportedModelError(TypeError):
    """A timm model has a part this package cannot propagate relevance through."""


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a (timm-compatible) Vision Transformer."""

    img_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden_dim: int = 3072
    qkv_bias: bool = True
    proj_bias: bool = True
    qk_norm: bool = False
    layer_scale: bool = False
    class_token: bool = True
    num_reg_tokens: int = 0
    distilled: bool = False
    no_embed_class: bool = False
    global_pool: str = "token"
    fc_norm: bool = False
    pre_norm: bool = False
    final_norm: bool = True
    patch_norm: bool = False
    patch_bias: bool = True
    norm_eps: float = 1e-6
    activation: str = "gelu"

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled) + self.num_reg_tokens

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1]


def _norm(config: ViTConfig, dim: int, enabled: bool = True) -> nn.Module:
    return layers.LayerNorm(dim, eps=config.norm_eps) if enabled else nn.Identity()


def _activation(name: str) -> nn.Module:
    if name not in ("gelu", "gelu_tanh", "quick_gelu"):
        raise UnsupportedModelError(f"activation {name!r} is not supported (gelu, gelu_tanh, quick_gelu are)")
    return layers.Activation(name)


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> patch tokens (B, h*w, D), row-major."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.img_size, self.patch_size = config.img_size, config.patch_size
        self.proj = layers.PatchConv2d(config.in_chans, config.embed_dim, config.patch_size, config.patch_size,
                                       bias=config.patch_bias)
        self.norm = _norm(config, config.embed_dim, config.patch_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Attention(nn.Module):
    """Multi-head self-attention, eager: ``A = softmax(Q K^T d^-1/2)`` is recorded on the tape as layer
    ``layer`` of the ``"image"`` stream."""

    def __init__(self, config: ViTConfig, layer: int):
        super().__init__()
        self.layer = layer
        dim = config.embed_dim
        self.num_heads = config.num_heads
        self.head_dim = dim // config.num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = layers.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.q_norm = _norm(config, self.head_dim, config.qk_norm)
        self.k_norm = _norm(config, self.head_dim, config.qk_norm)
        self.attn_drop = layers.Dropout(0.0)
        self.proj = layers.Linear(dim, dim, bias=config.proj_bias)
        self.proj_drop = layers.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        scores = ops.scale(ops.attention_scores(q, k.transpose(-2, -1)), self.scale)
        attention = self.attn_drop(ops.softmax(scores, dim=-1))
        ops.record_attention(attention, stream="image", layer=self.layer)
        ops.record_query_key(q, k, stream="image", layer=self.layer, scale=self.scale)
        out = ops.attention_values(attention, v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.fc1 = layers.Linear(config.embed_dim, config.mlp_hidden_dim)
        self.act = _activation(config.activation)
        self.drop1 = layers.Dropout(0.0)
        self.fc2 = layers.Linear(config.mlp_hidden_dim, config.embed_dim)
        self.drop2 = layers.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` (spec §1.5)."""

    def __init__(self, config: ViTConfig, layer: int):
        super().__init__()
        self.norm1 = _norm(config, config.embed_dim)
        self.attn = Attention(config, layer)
        self.ls1 = layers.LayerScale(config.embed_dim) if config.layer_scale else nn.Identity()
        self.norm2 = _norm(config, config.embed_dim)
        self.mlp = Mlp(config)
        self.ls2 = layers.LayerScale(config.embed_dim) if config.layer_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        ops.record_block_input(x, stream="image")
        x = ops.fanout(x)
        x = ops.add(x, self.ls1(self.attn(self.norm1(x))))
        x = ops.fanout(x)
        return ops.add(x, self.ls2(self.mlp(self.norm2(x))))


class VisionTransformer(nn.Module):
    """An LRP-aware ViT / DeiT. ``forward(images (B, C, H, W)) -> logits (B, num_classes)``.

    ``info`` (:class:`relevance.adapter.ModelInfo`: data config, class names, multi-label, ...) describes the model;
    :meth:`relevance_adapter` gives the engine its :class:`ViTAdapter`.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.reg_token = nn.Parameter(torch.zeros(1, config.num_reg_tokens, dim)) if config.num_reg_tokens else None
        grid_h, grid_w = config.grid_size
        embed_len = grid_h * grid_w + (0 if config.no_embed_class else config.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, dim))
        self.norm_pre = _norm(config, dim, config.pre_norm)
        self.blocks = nn.ModuleList(Block(config, index) for index in range(config.depth))
        self.norm = _norm(config, dim, config.final_norm)
        self.fc_norm = _norm(config, dim, config.fc_norm)
        self.head = layers.Linear(dim, config.num_classes)
        self.head_dist = layers.Linear(dim, config.num_classes) if config.distilled else None
        self.info = ModelInfo(output="class_logits")

    # ------------------------------------------------------------------------------------- metadata
    def relevance_adapter(self) -> "ViTAdapter":
        """The engine's view of this model (see :mod:`relevance.adapter`)."""
        return ViTAdapter(self, self.info)

    @property
    def data_config(self):
        """How to prepare images (:class:`relevance.images.DataConfig`), or ``None``."""
        return self.info.data_config

    @data_config.setter
    def data_config(self, value) -> None:
        self.info.data_config = value

    @property
    def class_names(self) -> list[str] | None:
        return self.info.class_names

    @class_names.setter
    def class_names(self, value: list[str] | None) -> None:
        self.info.class_names = None if value is None else list(value)

    @property
    def multi_label(self) -> bool:
        return self.info.multi_label

    @multi_label.setter
    def multi_label(self, value: bool) -> None:
        self.info.multi_label = bool(value)

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, images: Tensor) -> Tensor:
        self._check_input(images)
        images = ops.mark_input(images, stream="image", site="pixels")
        batch = images.shape[0]
        tokens = self.config.num_prefix_tokens + self.config.grid_size[0] * self.config.grid_size[1]
        ops.record_space("image", "image", torch.ones(batch, tokens, dtype=torch.bool, device=images.device),
                         grid_size=self.config.grid_size, num_prefix_tokens=self.config.num_prefix_tokens)
        x = self._embed(images)
        for block in self.blocks:
            x = block(x)
        ops.record_block_input(x, stream="image")
        return self._head(self.norm(x))

    def _check_input(self, images: Tensor) -> None:
        expected = (self.config.in_chans, *self.config.img_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(images.shape)}; prepare raw images with relevance.images.prepare")

    def _embed(self, images: Tensor) -> Tensor:
        patches = self.patch_embed(images)
        batch = patches.shape[0]
        prefix = [token.expand(batch, -1, -1) for token in (self.cls_token, self.dist_token, self.reg_token)
                  if token is not None]
        if self.config.no_embed_class:
            x = ops.add(patches, self.pos_embed)
            x = torch.cat(prefix + [x], dim=1) if prefix else x
        else:
            x = torch.cat(prefix + [patches], dim=1) if prefix else patches
            x = ops.add(x, self.pos_embed)
        return self.norm_pre(x)

    def _head(self, x: Tensor) -> Tensor:
        """Pooling and classifier; each pooling operation records its own readout row."""
        if self.config.distilled:
            logits = self.head(ops.select_token(x, 0, stream="image"))
            logits_dist = self.head_dist(ops.select_token(x, 1, stream="image"))
            return ops.add(ops.scale(logits, 0.5), ops.scale(logits_dist, 0.5))
        if self.config.global_pool == "token":
            pooled = ops.select_token(x, 0, stream="image")
        else:
            pooled = ops.mean_tokens(x, stream="image", start=self.config.num_prefix_tokens)
        return self.head(self.fc_norm(pooled))


# ------------------------------------------------------------------------------------------------ adapter
class ViTAdapter(Adapter):
    """The ViT/DeiT family's adapter: images in, class logits out, one ``"image"`` stream.

    Reference conventions: the CVPR 2021 ViT code (no row normalisation of the product, Grad-CAM head weights
    from the [CLS] row), i.e. :class:`relevance.methods.Conventions` defaults.
    """

    module: VisionTransformer

    def depths(self) -> dict[str, int]:
        return {"image": len(self.module.blocks)}

    def prepare(self, inputs, *, texts=None, target=None) -> tuple[Batch, object]:
        if texts is not None:
            raise ValueError("this is an image classifier: it takes no texts")
        parameter = next(self.module.parameters())
        if isinstance(inputs, Tensor) and inputs.is_floating_point() and inputs.dim() in (3, 4):
            pixels = inputs if inputs.dim() == 4 else inputs.unsqueeze(0)
            pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)
            check_finite(pixels, "the input images")
            return Batch(inputs={"images": pixels}, size=pixels.shape[0], streams={"image": ImageInputs(pixels)}), target
        from relevance.images import prepare

        if inputs is None or (isinstance(inputs, (list, tuple)) and not inputs):
            raise ValueError("no images given")
        if self.info.data_config is None:
            raise ValueError("raw images need the model's data config (how to resize and normalise); pass a "
                             "preprocessed float tensor (B, C, H, W) instead")
        prepared = prepare(inputs, self.info.data_config)
        pixels = prepared.pixels.to(device=parameter.device, dtype=parameter.dtype)
        images = ImageInputs(pixels, prepared.originals, prepared.geometries)
        return Batch(inputs={"images": pixels}, size=pixels.shape[0], streams={"image": images}), target

    def forward(self, batch: Batch) -> Tensor:
        return self.module(batch.inputs["images"])

    def output_from_layer(self, stream: str, layer: int, tokens: Tensor, batch: Batch, output: Tensor) -> Tensor:
        """The logits (B, C) computed from the tokens leaving block ``layer`` (B, N, D) through the final norm, the
        model's own pooling and the classifier head: LeGrad's per-layer prediction of a classifier."""
        return self.module._head(self.module.norm(tokens))

    def domain_warnings(self, batch: Batch) -> list[str]:
        check = self.info.in_domain
        if check is None or batch.images is None or batch.images.originals is None:
            return []
        outside = [i for i, image in enumerate(batch.images.originals) if not check(image)]
        if not outside:
            return []
        return [f"{len(outside)} of {batch.size} image(s) look unlike {self.info.domain or 'the training data'} "
                f"(samples {outside[:10]}): outside its domain, predictions and maps mean nothing"]


# ------------------------------------------------------------------------------------ conversion from timm
def _require(condition: bool, part: str) -> None:
    if not condition:
        raise UnsupportedModelError(f"cannot convert this timm model: {part} is not supported")


def _is(module: nn.Module | None, *types: type) -> bool:
    """Exactly one of ``types``, except that subclasses of ``nn.LayerNorm`` (timm's own) count as LayerNorm."""
    if module is None:
        return False
    return type(module) in types or (nn.LayerNorm in types and isinstance(module, nn.LayerNorm)
                                     and type(module).forward is _TIMM_LAYERNORM_FORWARD())


def _TIMM_LAYERNORM_FORWARD():  # noqa: N802 - the forward that computes a plain LayerNorm
    from timm.layers.norm import LayerNorm as TimmLayerNorm

    return TimmLayerNorm.forward


def config_from_timm(module: nn.Module) -> ViTConfig:
    """Read the architecture of a timm ``VisionTransformer`` (or ``VisionTransformerDistilled``), refusing,
    with an error that names it, any part whose relevance rules are not implemented."""
    from timm.layers import LayerScale, Mlp as TimmMlp, PatchEmbed as TimmPatchEmbed
    from timm.layers.attention import Attention as TimmAttention
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import Block as TimmBlock, VisionTransformer as TimmViT

    if not isinstance(module, TimmViT):
        raise UnsupportedModelError(
            f"expected a timm VisionTransformer, got {type(module).__name__}; ViT and DeiT models are supported")
    patch_embed = module.patch_embed
    _require(_is(patch_embed, TimmPatchEmbed), f"the patch embedding {type(patch_embed).__name__} "
                                               "(a hybrid CNN stem?)")
    _require(patch_embed.flatten and isinstance(patch_embed.proj, nn.Conv2d), "a non-flattening patch embedding")
    _require(not getattr(patch_embed, "dynamic_img_pad", False), "dynamic_img_pad")
    _require(not getattr(module, "dynamic_img_size", False), "dynamic_img_size")
    _require(getattr(module, "attn_pool", None) is None, "attention pooling (attn_pool, MAP head)")
    _require(module.global_pool in ("token", "avg"), f"global_pool={module.global_pool!r}")
    _require(not isinstance(module.head, nn.Identity), "a model without classifier head (num_classes=0)")
    _require(isinstance(module.head, nn.Linear), f"the head {type(module.head).__name__}")
    for name in ("norm", "fc_norm", "norm_pre"):
        part = getattr(module, name)
        _require(_is(part, nn.LayerNorm, nn.Identity), f"{name} of type {type(part).__name__}")
    _require(_is(patch_embed.norm, nn.LayerNorm, nn.Identity), "the patch-embedding norm")
    _require(getattr(module, "pool_include_prefix", False) is False, "pool_include_prefix")

    first = module.blocks[0]
    for index, block in enumerate(module.blocks):
        where = f"block {index}"
        _require(_is(block, TimmBlock), f"{where} of type {type(block).__name__}")
        _require(_is(block.attn, TimmAttention), f"{where}: attention {type(block.attn).__name__}")
        _require(getattr(block.attn, "gate", None) is None, f"{where}: gated attention")
        _require(isinstance(block.attn.norm, nn.Identity), f"{where}: scale_norm in attention")
        _require(block.attn.head_dim * block.attn.num_heads == module.embed_dim, f"{where}: attn_head_dim")
        _require(_is(block.mlp, TimmMlp), f"{where}: MLP {type(block.mlp).__name__} (GLU/SwiGLU)")
        _require(isinstance(block.mlp.norm, nn.Identity), f"{where}: a norm inside the MLP")
        _require(_is(block.norm1, nn.LayerNorm) and _is(block.norm2, nn.LayerNorm), f"{where}: non-LayerNorm norms")
        for ls in (block.ls1, block.ls2):
            _require(_is(ls, LayerScale, nn.Identity), f"{where}: {type(ls).__name__}")
        _require(type(block.mlp.act) is type(first.mlp.act), f"{where}: mixed activations")
        _require(isinstance(block.attn.q_norm, type(first.attn.q_norm)), f"{where}: mixed qk norms")

    distilled = isinstance(module, VisionTransformerDistilled)
    return ViTConfig(
        img_size=tuple(patch_embed.img_size),
        patch_size=tuple(patch_embed.patch_size),
        in_chans=patch_embed.proj.in_channels,
        num_classes=module.head.out_features,
        embed_dim=module.embed_dim,
        depth=len(module.blocks),
        num_heads=first.attn.num_heads,
        mlp_hidden_dim=first.mlp.fc1.out_features,
        qkv_bias=first.attn.qkv.bias is not None,
        proj_bias=first.attn.proj.bias is not None,
        qk_norm=isinstance(first.attn.q_norm, nn.LayerNorm),
        layer_scale=isinstance(first.ls1, LayerScale),
        class_token=module.cls_token is not None,
        num_reg_tokens=module.reg_token.shape[1] if module.reg_token is not None else 0,
        distilled=distilled,
        no_embed_class=module.no_embed_class,
        global_pool=module.global_pool,
        fc_norm=isinstance(module.fc_norm, nn.LayerNorm),
        pre_norm=isinstance(module.norm_pre, nn.LayerNorm),
        final_norm=isinstance(module.norm, nn.LayerNorm),
        patch_norm=isinstance(patch_embed.norm, nn.LayerNorm),
        patch_bias=patch_embed.proj.bias is not None,
        norm_eps=first.norm1.eps,
        activation=_activation_name(first.mlp.act),
    )


def _activation_name(act: nn.Module) -> str:
    from timm.layers.activations import GELU, GELUTanh, QuickGELU

    if type(act) is nn.GELU:
        return "gelu" if act.approximate == "none" else "gelu_tanh"
    if type(act) is GELU:
        return "gelu"
    if type(act) is GELUTanh:
        return "gelu_tanh"
    if type(act) is QuickGELU:
        return "quick_gelu"
    raise UnsupportedModelError(f"cannot convert this timm model: activation {type(act).__name__} "
                                "is not supported")


def from_timm(module: nn.Module) -> VisionTransformer:
    """An LRP-aware copy of a timm ``VisionTransformer``/``VisionTransformerDistilled`` with its weights,
    dtype, device, data config and (for ImageNet-1k models) class names. The timm model is not modified."""
    config = config_from_timm(module)
    model = VisionTransformer(config)
    state = {k: v for k, v in module.state_dict().items()}
    model.load_state_dict(state, strict=True)
    parameter = next(module.parameters())
    model.to(device=parameter.device, dtype=parameter.dtype).eval()
    model.info = ModelInfo(name=getattr(module, "pretrained_cfg", {}).get("architecture"), output="class_logits",
                           class_names=_class_names(module, config.num_classes), data_config=_data_config(module))
    return model


def _data_config(module: nn.Module):
    from timm.data import resolve_data_config

    from relevance.images import DataConfig

    config = resolve_data_config({}, model=module)
    config["input_size"] = (module.patch_embed.proj.in_channels, *module.patch_embed.img_size)  # the real size
    return DataConfig.from_timm(config)


def _class_names(module: nn.Module, num_classes: int) -> list[str] | None:
    if num_classes != 1000:
        return None
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(num_classes)]


# ---------------------------------------------------------------------------------------------- creation
def create(name: str, pretrained: bool = True, checkpoint: str | Path | None = None,
           **timm_kwargs) -> VisionTransformer:
    """Build the timm architecture ``name`` and convert it.

    Weights come from ``checkpoint`` (a local ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file, loaded with
    ``weights_only=True``) when given; else from the hub when ``pretrained`` (the local cache first; a
    download only after a hub probe answered within seconds, see :mod:`models.hub`); else they are random.
    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``num_classes``, ``img_size``).
    """
    import timm

    from relevance.models import hub

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
        raise ValueError(f"unknown timm model {name!r}" + (f"; did you mean one of {close}?" if close else ""))
    if checkpoint is not None:
        module = timm.create_model(name, pretrained=False, **timm_kwargs)
        load_checkpoint(module, checkpoint)
    elif pretrained:
        module = hub.create_pretrained(name, **timm_kwargs)
    else:
        module = timm.create_model(name, pretrained=False, **timm_kwargs)
    return from_timm(module.eval())


def load_checkpoint(module: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into a timm model, safely (safetensors, or ``torch.load(weights_only=True)``).

    Accepts plain state dicts and the ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers, and original
    (non-timm) layouts through timm's own checkpoint filter. Mismatches raise an error listing the keys.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    from relevance.models.checkpoints import load_exactly, read_state_dict

    state = read_state_dict(path)
    if set(state) != set(module.state_dict()):
        state = checkpoint_filter_fn(state, module)
    load_exactly(module, state, path)


def describe(model: VisionTransformer) -> dict:
    """The model's configuration as a plain dict (for model cards and logs)."""
    return asdict(model.config)


def _register() -> None:
    from relevance.models.registry import Family, register_default, register_family

    def recognizes(name: str) -> bool:  # any timm name: from_timm refuses, naming the part, what is no ViT
        import timm

        return timm.is_model(name)

    def listed() -> list[str]:
        from relevance.models import HUB_MODELS

        return list(HUB_MODELS.values())

    def suggestions(name: str) -> list[str]:
        import timm

        return timm.list_models("*vit*") + timm.list_models("deit*")

    register_family(Family("vit", recognizes, create, listed, description="any timm ViT/DeiT name",
                           suggestions=suggestions))
    from relevance.models import DEFAULT_HUB_MODEL

    register_default("image", DEFAULT_HUB_MODEL, "shapes-vit")


_register()
