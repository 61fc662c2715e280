"""Test-wide settings: no network, no telemetry, a fixed thread count, and a small-model factory."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

#: Tests of the engine run on this device (CPU in CI; RELEVANCE_TEST_DEVICE=cuda on a GPU machine).
DEVICE = os.environ.get("RELEVANCE_TEST_DEVICE", "cpu")


@pytest.fixture
def device() -> str:
    return DEVICE


def tiny_timm_vit(name: str = "vit_tiny_patch16_224", seed: int = 0, spread: bool = True, **kwargs):
    """A small random timm ViT (width 48, 3 blocks, 32 px unless overridden); LayerNorm, head and embedding
    weights spread out so that no map is degenerate."""
    import timm

    torch.manual_seed(seed)
    options = dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=7)
    options.update(kwargs)
    model = timm.create_model(name, pretrained=False, **options).eval()
    if spread:
        with torch.no_grad():
            for parameter_name, parameter in model.named_parameters():
                if "norm" in parameter_name:
                    parameter.add_(torch.randn_like(parameter) * 0.3)
                if any(key in parameter_name for key in ("head", "pos_embed", "cls_token", "dist_token", "reg_token")):
                    parameter.normal_(0, 0.5)
                if "gamma" in parameter_name:
                    parameter.uniform_(0.5, 1.5)
    return model


#: ViT configurations every engine test runs on (timm kwargs; ``name`` picks the timm architecture).
VIT_CONFIGS = {
    "vit-class-token-patch8": dict(),
    "deit-distilled": dict(name="deit_tiny_distilled_patch16_224"),
    "patch32-at-384": dict(name="vit_base_patch32_384", img_size=384, patch_size=32, depth=2),
    "register-tokens": dict(reg_tokens=4, no_embed_class=True),
    "patch14-no-qkv-bias": dict(img_size=56, patch_size=14, qkv_bias=False),
    "avg-pool-fc-norm-no-class-token": dict(global_pool="avg", class_token=False, fc_norm=True),
    "layer-scale-qk-norm-pre-norm": dict(init_values=1e-5, qk_norm=True, pre_norm=True),
    "non-square-image": dict(img_size=(32, 48)),
    "gelu-tanh-deep-wide-heads": dict(depth=5, num_heads=6, act_layer="gelu_tanh"),
}


def vit_config_model(config: str, **overrides):
    """A small random timm ViT of one of :data:`VIT_CONFIGS`."""
    kwargs = dict(VIT_CONFIGS[config])
    kwargs.update(overrides)
    return tiny_timm_vit(kwargs.pop("name", "vit_tiny_patch16_224"), **kwargs)


#: Small options for the gradient and perturbation methods (captum) in tests that run every method: their defaults
#: (50 integration steps, 50 noisy copies, 256 subsets) are tested in tests/test_attribution.py. LIME's Lasso weight
#: is lowered because a random model's scores move by about 0.01 when a patch is removed, and captum's default
#: (alpha 0.01) would set every coefficient to zero.
FAST_OPTIONS = {"integrated_gradients": dict(n_steps=8), "smoothgrad": dict(n_samples=4),
                "lime": dict(n_samples=40, alpha=1e-5), "kernel_shap": dict(n_samples=40)}


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (restored after it): the tiny models run fastest on one thread, and far
    faster than on two when other work shares the CPU. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
