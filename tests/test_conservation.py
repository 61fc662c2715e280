"""The engine on every ViT configuration: readouts against hand-built ones, conservation as each rule set's paper
defines it, AttnLRP against an independent forward built from its authors' explicit rules (lxt), and the
orientation of maps on non-square images."""

import numpy as np
import pytest
import torch
from conftest import VIT_CONFIGS, tiny_timm_vit, vit_config_model

import relevance
from relevance.models import vit
from relevance.rule_sets import ATTNLRP_RULES, CP_LRP_RULES
from relevance.rules import Gradient
from relevance.tape import Mode, recording


def model_and_images(config: str, batch: int = 2, seed: int = 5):
    model = vit.from_timm(vit_config_model(config)).double()
    torch.manual_seed(seed)
    return model, torch.randn(batch, 3, *model.config.img_size, dtype=torch.float64)


def hand_built_readout(config: vit.ViTConfig, batch: int) -> torch.Tensor:
    tokens = config.num_prefix_tokens + config.grid_size[0] * config.grid_size[1]
    row = torch.zeros(tokens, dtype=torch.float64)
    if config.distilled:
        row[:2] = 0.5  # DeiT: logits = (head(cls) + head_dist(dist)) / 2
    elif config.global_pool == "token":
        row[0] = 1.0
    else:
        row[config.num_prefix_tokens:] = 1.0 / (tokens - config.num_prefix_tokens)
    return row.expand(batch, -1)


CONFIGS = dict(VIT_CONFIGS, **{"avg-pool-with-class-token": dict(global_pool="avg", fc_norm=True)})


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_the_recorded_readout_is_the_token_mix_that_feeds_the_head(config):
    kwargs = dict(CONFIGS[config])
    model = vit.from_timm(tiny_timm_vit(kwargs.pop("name", "vit_tiny_patch16_224"), **kwargs)).double()
    x = torch.randn(2, 3, *model.config.img_size, dtype=torch.float64)
    with recording() as tape:
        model(x)
        readout = tape.space("image").readout
    torch.testing.assert_close(readout, hand_built_readout(model.config, 2), rtol=0, atol=1e-15)


@pytest.mark.parametrize("config", VIT_CONFIGS, ids=list(VIT_CONFIGS))
def test_transformer_attribution_rules_conserve_relevance_at_every_block(config):
    # spec §1.6 and §8.5: from a one-hot start, the total at every block input stays about 1
    model, x = model_and_images(config)
    totals = relevance.relevance_per_block(model, x, target=[0, 4])
    assert totals.shape == (2, model.config.depth + 1)
    torch.testing.assert_close(totals, torch.ones_like(totals), rtol=0, atol=1e-3)


def zero_biases(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.zero_()
    return model


@pytest.mark.parametrize("config", VIT_CONFIGS, ids=list(VIT_CONFIGS))
def test_cp_lrp_is_exactly_conservative_without_biases(config):
    # Ali et al. 2022: with attention and the normalisation scale held constant, Gradient x Input through a
    # bias-free transformer conserves the target logit at every block (their Eq. for conservation)
    model, x = model_and_images(config)
    zero_biases(model)
    totals = relevance.relevance_per_block(model, x, target=[0, 4], method="cp_lrp")
    logits = model(x).gather(1, torch.tensor([[0], [4]])).detach()
    torch.testing.assert_close(totals, logits.expand_as(totals), rtol=1e-9, atol=1e-12)
    # the pixels: with position embeddings and prefix tokens at zero too (they absorb their share otherwise),
    # the bias-free patch convolution hands the whole logit down to the pixels
    with torch.no_grad():
        for name in ("pos_embed", "cls_token", "dist_token", "reg_token"):
            if getattr(model, name) is not None:
                getattr(model, name).zero_()
    logits = model(x).gather(1, torch.tensor([[0], [4]])).detach()
    explanation = relevance.explain(model, x, method="cp_lrp", target=[0, 4])
    torch.testing.assert_close(explanation.relevance.sum(dim=(1, 2)), logits[:, 0], rtol=1e-9, atol=1e-12)
    # plain Gradient x Input (the attention's own gradient) loses conservation: what CP-LRP fixes
    plain_rules = CP_LRP_RULES.with_rules(attention_values=Gradient(), attention_scores=Gradient())
    with recording(plain_rules) as tape:
        output = model(x)
        tape.mode = Mode.RELEVANCE
        seed = torch.zeros_like(output).scatter_(1, torch.tensor([[0], [4]]), 1.0)
        first = tape.block_inputs["image"][0]
        (gradient,) = torch.autograd.grad(output, first, seed)
    plain_total = (first * gradient).sum(dim=(1, 2)).detach()
    assert ((plain_total - logits[:, 0]).abs() > 1e-6 * logits[:, 0].abs()).all()


class _IdentityActivation(torch.autograd.Function):
    """AttnLRP's identity rule for an element-wise activation, in lxt's explicit form (relevance passes)."""

    @staticmethod
    def forward(ctx, x, function):
        return function(x)

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


def attnlrp_reference(model: vit.VisionTransformer, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Relevance (B, N, D) at the first block's input, computed with lxt's explicit AttnLRP rules on the model's
    weights: an independent forward pass, written here with ``lxt.explicit.functional``."""
    import torch.nn.functional as F
    import lxt.explicit.functional as lxt

    eps = 1e-12
    x = tokens.detach().requires_grad_(True)
    h = x
    for block in model.blocks:
        attention = block.attn
        normed = lxt.layer_norm_grad_fn.apply(h, block.norm1.weight, block.norm1.bias, block.norm1.eps, eps)
        batch, n, dim = normed.shape
        qkv = lxt.linear_epsilon(normed, attention.qkv.weight, attention.qkv.bias, epsilon=eps)
        q, k, v = qkv.reshape(batch, n, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        scores = lxt.mul2(lxt.matmul(q, k.transpose(-2, -1), epsilon=eps), attention.scale)
        probabilities = lxt.softmax(scores, -1)
        context = lxt.matmul(probabilities, v, epsilon=eps).transpose(1, 2).reshape(batch, n, dim)
        h = lxt.add2(h, lxt.linear_epsilon(context, attention.proj.weight, attention.proj.bias, epsilon=eps),
                     epsilon=eps)
        normed = lxt.layer_norm_grad_fn.apply(h, block.norm2.weight, block.norm2.bias, block.norm2.eps, eps)
        hidden = lxt.linear_epsilon(normed, block.mlp.fc1.weight, block.mlp.fc1.bias, epsilon=eps)
        hidden = _IdentityActivation.apply(hidden, F.gelu)
        h = lxt.add2(h, lxt.linear_epsilon(hidden, block.mlp.fc2.weight, block.mlp.fc2.bias, epsilon=eps),
                     epsilon=eps)
    h = lxt.layer_norm_grad_fn.apply(h, model.norm.weight, model.norm.bias, model.norm.eps, eps)
    logits = lxt.linear_epsilon(h[:, 0], model.head.weight, model.head.bias, epsilon=eps)
    seed = torch.zeros_like(logits).scatter_(1, targets.unsqueeze(1), 1.0) * logits.detach()
    (result,) = torch.autograd.grad(logits, x, seed)
    return result


def test_attnlrp_equals_the_authors_explicit_rules_on_a_vit():
    model, x = model_and_images("vit-class-token-patch8", batch=3)
    targets = torch.tensor([1, 4, 6])
    with recording(ATTNLRP_RULES) as tape:
        logits = model(x.requires_grad_(True))
        first = tape.block_inputs["image"][0]
        tape.mode = Mode.RELEVANCE
        seed = torch.zeros_like(logits).scatter_(1, targets.unsqueeze(1), 1.0)
        (gradient,) = torch.autograd.grad(logits, first, seed)
        ours = (first * gradient).detach()
    expected = attnlrp_reference(model, first.detach(), targets)
    assert expected.abs().max() > 0
    torch.testing.assert_close(ours, expected, rtol=1e-7, atol=1e-9 * expected.abs().max().item())
    # and the method reads the same rules' relevance at the pixels, per sample
    explanation = relevance.explain(model, x.detach(), method="attnlrp", target=targets)
    assert explanation.relevance.shape == (3, 32, 32)
    single = relevance.explain(model, x[1:2].detach(), method="attnlrp", target=4)
    torch.testing.assert_close(explanation.relevance[1:2], single.relevance, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------------------- orientation
def spotlight_vit(image_size=(16, 24), patch=8):
    """A one-block ViT whose [CLS] query attends to the bright patches: patch features are the patch's mean
    brightness in dimension 0, the keys are the normalised features, and the [CLS] query points at the
    normalised features of a bright patch. Raw attention then peaks where the object is."""
    model = tiny_timm_vit(img_size=image_size, patch_size=patch, embed_dim=8, depth=1, num_heads=1, spread=False)
    dim = 8
    with torch.no_grad():
        model.patch_embed.proj.weight.zero_()
        model.patch_embed.proj.weight[0] = 1.0 / (3 * patch * patch)
        model.patch_embed.proj.bias.zero_()
        model.pos_embed.zero_()
        model.cls_token.zero_()
        model.cls_token[0, 0, 1] = 1.0
        block = model.blocks[0]
        block.norm1.weight.fill_(1.0)
        block.norm1.bias.zero_()
        bright = torch.nn.functional.layer_norm(torch.eye(dim)[0], (dim,), eps=1e-6)
        cls = torch.nn.functional.layer_norm(torch.eye(dim)[1], (dim,), eps=1e-6)
        weight = torch.zeros(3 * dim, dim)
        weight[:dim] = 10.0 * torch.outer(bright, cls) / cls.dot(cls)  # q_cls = 10 * bright
        weight[dim:2 * dim] = torch.eye(dim)  # k_j = normalised features of token j
        weight[2 * dim:] = torch.randn(dim, dim)
        block.attn.qkv.weight.copy_(weight)
        block.attn.qkv.bias.zero_()
    return vit.from_timm(model).double()


@pytest.mark.parametrize("corner", [(0, 2), (1, 0), (1, 2)])
def test_maps_of_non_square_images_put_the_object_in_its_corner(corner):
    model = spotlight_vit()
    image = np.zeros((16, 24, 3), dtype=np.uint8)  # height 16, width 24: a 2 x 3 patch grid
    row, col = corner
    image[8 * row:8 * row + 8, 8 * col:8 * col + 8] = 255
    from relevance.images import DataConfig

    model.data_config = DataConfig(input_size=(16, 24), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                   interpolation="bilinear", crop_pct=1.0, crop_mode="squash")
    for method in ("attention", "rollout"):
        explanation = relevance.explain(model, [image], method=method)
        values = explanation.relevance[0]
        assert values.shape == (2, 3)
        assert divmod(int(values.argmax()), 3) == corner, method
        overlay = explanation.overlay(0, colormap="jet")
        assert overlay.shape == image.shape
        inside = overlay[8 * row + 2:8 * row + 6, 8 * col + 2:8 * col + 6].astype(float)
        # jet's hot end is red: the object's own pixels are the reddest of the picture
        redness = overlay[..., 0].astype(float) - overlay[..., 2].astype(float)
        assert (inside[..., 0] - inside[..., 2]).mean() >= redness.max() - 40, method


def test_heatmaps_on_the_original_image_follow_the_object():
    model = spotlight_vit()
    from relevance.images import DataConfig

    model.data_config = DataConfig(input_size=(16, 24), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                   interpolation="bilinear", crop_pct=1.0, crop_mode="squash")
    image = np.zeros((32, 48, 3), dtype=np.uint8)  # twice the model's size: resized, same aspect
    image[0:16, 32:48] = 255  # the top-right patch after resizing
    explanation = relevance.explain(model, [image], method="attention")
    heatmap = explanation.maps["image"].heatmap_on_original(0)
    assert heatmap.shape == (32, 48) and heatmap.min() >= 0 and heatmap.max() == 1
    assert heatmap[8, 40] > 0.9 and heatmap[24, 8] < 0.5
