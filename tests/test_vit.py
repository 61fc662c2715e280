"""models.vit: logits equal timm's, unsupported parts are named, checkpoints load safely, hubs fail fast."""

import pickle
import socket
import threading
import time

import pytest
import torch
from conftest import VIT_CONFIGS, tiny_timm_vit

from relevance.models import hub, vit

CONFIGS = VIT_CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_logits_equal_timm(config):
    kwargs = dict(CONFIGS[config])
    timm_model = tiny_timm_vit(kwargs.pop("name", "vit_tiny_patch16_224"), **kwargs)
    model = vit.from_timm(timm_model)
    torch.manual_seed(1)
    images = torch.randn(3, 3, *model.config.img_size)
    with torch.no_grad():
        expected, actual = timm_model(images), model(images)
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert expected.std() > 0.1  # logits that differ between classes: the comparison means something
    with torch.no_grad():  # float64 copies agree to double precision
        expected64 = timm_model.double()(images.double())
        actual64 = vit.from_timm(timm_model)(images.double())
    assert (actual64 - expected64).abs().max() <= 1e-12 * expected64.abs().max()


def test_from_timm_copies_and_keeps_the_source_unchanged():
    timm_model = tiny_timm_vit()
    before = {k: v.clone() for k, v in timm_model.state_dict().items()}
    model = vit.from_timm(timm_model)
    with torch.no_grad():
        model.head.weight.zero_()
    for key, value in timm_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.data_config.input_size == (32, 32)
    assert model.class_names is None


@pytest.mark.parametrize(
    ("build", "named_part"),
    [
        (lambda: tiny_timm_vit("vit_tiny_r_s16_p8_224", spread=False, img_size=64, patch_size=None), "HybridEmbed"),
        (lambda: tiny_timm_vit(global_pool="map", spread=False), "attention pooling"),
        (lambda: tiny_timm_vit(mlp_layer=__import__("timm").layers.SwiGLUPacked, spread=False), "MLP"),
        (lambda: tiny_timm_vit(block_fn=__import__("timm").models.vision_transformer.ResPostBlock, spread=False),
         "ResPostBlock"),
        (lambda: tiny_timm_vit(num_classes=0, spread=False), "classifier head"),
        (lambda: __import__("timm").create_model("resnet18", pretrained=False), "VisionTransformer"),
    ],
    ids=["hybrid-stem", "map-head", "swiglu", "post-norm-block", "no-head", "resnet"],
)
def test_unsupported_parts_are_named(build, named_part):
    try:
        model = build()
    except TypeError:  # a timm version that cannot even build this variant
        pytest.fail("timm could not build the variant under test")
    with pytest.raises(vit.UnsupportedModelError, match=named_part):
        vit.from_timm(model)


# -------------------------------------------------------------------------------------------- checkpoints
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)


def test_create_from_safetensors_and_wrapped_pth(tmp_path):
    from safetensors.torch import save_file

    source = tiny_timm_vit(**TINY)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(images)
    save_file(source.state_dict(), str(tmp_path / "weights.safetensors"))
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "weights.pth")
    for filename in ("weights.safetensors", "weights.pth"):
        model = vit.create("vit_tiny_patch16_224", checkpoint=tmp_path / filename, **TINY)
        with torch.no_grad():
            torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-6)


def test_bad_checkpoints_are_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    other = tiny_timm_vit(**{**TINY, "embed_dim": 36})
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises((ValueError, RuntimeError), match="size mismatch|does not match"):
        vit.create("vit_tiny_patch16_224", checkpoint=tmp_path / "other.safetensors", **TINY)

    class Payload:  # an arbitrary object: weights_only=True must refuse to unpickle it
        def __reduce__(self):
            return (print, ("executed",))

    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump(Payload(), handle, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        vit.create("vit_tiny_patch16_224", checkpoint=tmp_path / "evil.pth", **TINY)
    with pytest.raises(FileNotFoundError):
        vit.create("vit_tiny_patch16_224", checkpoint=tmp_path / "missing.safetensors", **TINY)
    with pytest.raises(ValueError, match="unknown timm model"):
        vit.create("vit_tinyy_patch16_224", pretrained=False)


# ------------------------------------------------------------------------------------------------ the hub
def test_offline_hub_fails_at_once_and_says_how_to_work_offline(monkeypatch):
    monkeypatch.setattr(hub, "cached_weights", lambda name: None)
    start = time.monotonic()
    with pytest.raises(hub.HubUnavailableError, match="checkpoint"):
        vit.create("vit_base_patch16_224", pretrained=True)
    assert time.monotonic() - start < 2.0


def test_hub_that_accepts_and_never_answers_fails_within_seconds(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_and_stay_silent():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(hub, "cached_weights", lambda name: None)
        monkeypatch.setattr(hub, "PROBE_TIMEOUT_S", 1.5)
        start = time.monotonic()
        with pytest.raises(hub.HubUnavailableError, match="did not answer|timed out") as error:
            vit.create("vit_base_patch16_224", pretrained=True)
        elapsed = time.monotonic() - start
        assert accepted, "the probe never connected: the test would prove nothing"
        assert elapsed < 5.0
        assert "checkpoint" in str(error.value)
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()
