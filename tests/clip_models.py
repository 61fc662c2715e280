"""Small random CLIP models of open_clip and Hugging Face transformers, for the CLIP tests."""

import torch

#: A few texts of different lengths (CLIP's BPE: 4 to 11 tokens with the start and end tokens).
TEXTS = ["a photo of a cat", "a red circle", "an astronaut riding a horse on the moon at night"]


def spread(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights spread out so that no map is degenerate: LayerNorm weights and biases jittered, sharper attention,
    a visible logit scale."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            if "ln" in name or "norm" in name:
                parameter.add_(0.3 * noise)
            elif name.endswith(("in_proj_weight", "q_proj.weight", "k_proj.weight")):
                parameter.mul_(2.5)
            elif "bias" in name:
                parameter.add_(0.05 * noise)
            elif "gamma" in name:
                parameter.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith("logit_scale"):
                parameter.fill_(2.0)
    return model


def open_clip_model(seed: int = 0, *, custom_text: bool = False, quick_gelu: bool = False, embed_dim: int = 24,
                    vision: dict | None = None, text: dict | None = None) -> torch.nn.Module:
    """A random open_clip ``CLIP`` (``CustomTextCLIP`` with ``custom_text``): 32 px images, 8 px patches, width 64
    in 4 heads, 2 blocks per tower, CLIP's vocabulary and 77-token context unless overridden."""
    import open_clip

    torch.manual_seed(seed)
    vision_cfg = dict(image_size=32, patch_size=8, width=64, layers=2, head_width=16)
    vision_cfg.update(vision or {})
    text_cfg = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)
    text_cfg.update(text or {})
    cls = open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP
    return spread(cls(embed_dim, vision_cfg, text_cfg, quick_gelu=quick_gelu).eval(), seed)


def hf_model(seed: int = 0, *, image_size: int = 32, patch_size: int = 8, eos_token_id: int = 49407,
             hidden_act: str = "quick_gelu", vision_layers: int = 2, text_layers: int = 2) -> torch.nn.Module:
    """A random transformers ``CLIPModel`` (SDPA attention, which computes in the model's precision)."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    tower = dict(hidden_act=hidden_act, layer_norm_eps=1e-5)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=text_layers,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=eos_token_id, **tower),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=vision_layers,
                           num_attention_heads=3, image_size=image_size, patch_size=patch_size, **tower),
        projection_dim=24)
    config._attn_implementation = "sdpa"
    return spread(CLIPModel(config).eval(), seed)


def images(batch: int, size=(32, 32), seed: int = 3, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=generator, dtype=dtype)
