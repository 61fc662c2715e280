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
