"""End-to-end tests of ``relevance explain`` (through ``relevance.cli.main``) on a tiny timm ViT checkpoint."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

import relevance
from relevance import cli
from relevance.cli.explain import UsageError, resolve_target, slugify
from relevance.models import vit

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
TINY_NAME = "relevance_cli_test_vit"
NUM_CLASSES = 5


@register_model
def relevance_cli_test_vit(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """A 2-block, 32x32-input timm ViT, registered so the CLI can load it by name like any timm model."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                              num_classes=NUM_CLASSES, **kwargs)
    model.pretrained_cfg = {
        "architecture": TINY_NAME, "input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875,
        "crop_mode": "center", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "num_classes": NUM_CLASSES,
    }
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = timm.create_model(TINY_NAME, pretrained=False)
    with torch.no_grad():  # make the head decisive so ranks and probabilities are not all ties
        model.head.weight.mul_(20)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def reference_model(checkpoint):
    return vit.create(TINY_NAME, checkpoint=checkpoint)


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(SAMPLES / "chelsea.jpg", folder / "chelsea.jpg")
    shutil.copy(SAMPLES / "rocket.jpg", folder / "nested" / "rocket.jpg")
    gradient = np.linspace(0, 255, 90 * 50 * 3).reshape(90, 50, 3).astype(np.uint8)
    Image.fromarray(gradient).save(folder / "gradient.png")
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG at all" * 20)
    (folder / "notes.txt").write_text("not an image; ignored by the folder walk")
    return folder


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _outputs(out_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(out_dir.glob("*.png"))}


def test_explain_folder_end_to_end(photo_folder, checkpoint, reference_model, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = _run(["explain", str(photo_folder), "--model", TINY_NAME, "--checkpoint", str(checkpoint),
                           "--batch-size", "2", "--out", str(out_dir)], capsys)
    assert code == 1  # one unreadable file
    broken = photo_folder / "broken.jpg"
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert error_lines == [f"error: {broken}: not a readable image file (unknown or unsupported format)"]
    assert "Traceback" not in err

    images = {"chelsea": photo_folder / "chelsea.jpg", "gradient": photo_folder / "gradient.png",
              "rocket": photo_folder / "nested" / "rocket.jpg"}
    written = _outputs(out_dir)
    assert len(written) == 3
    for stem, source in images.items():
        # Independent reference: explain the raw file alone with the same weights.
        expected = relevance.explain(reference_model, str(source))
        top_class = int(expected.logits[0].argmax())
        name = f"{stem}__1_class-{top_class}__transformer_attribution.png"
        assert name in written, (name, list(written))
        picture = np.asarray(Image.open(written[name]).convert("RGB"))
        original = relevance.images.load_image(source)
        assert picture.shape == original.shape  # the original's own resolution
        assert np.abs(picture.astype(int) - original.astype(int)).mean() > 5  # the map is drawn
        reference = expected.overlay(0, colormap="jet", alpha=0.5)
        assert np.mean(picture == reference) > 0.99  # the right map on the right image (batching aside)
        probability = float(expected.probabilities[0, top_class])
        assert re.search(rf"{re.escape(str(source))}: class {top_class} {probability:.1%}", out)
    assert "wrote 3 overlays" in out


def test_top_k_and_explicit_target(photo_folder, checkpoint, reference_model, tmp_path, capsys):
    source = photo_folder / "chelsea.jpg"
    logits = relevance.explain(reference_model, str(source)).logits[0]
    ranking = logits.argsort(descending=True).tolist()

    out_dir = tmp_path / "topk"
    code, out, _ = _run(["explain", str(source), "--model", TINY_NAME, "--checkpoint", str(checkpoint),
                         "--top-k", "2", "--method", "gae", "--colormap", "inferno", "--alpha", "1",
                         "--out", str(out_dir)], capsys)
    assert code == 0
    expected_names = {f"chelsea__{rank + 1}_class-{ranking[rank]}__gradient_rollout.png" for rank in range(2)}
    assert set(_outputs(out_dir)) == expected_names
    # --top-k 2 prints at least three predictions, best first
    assert f"class {ranking[0]} " in out and out.index(f"class {ranking[0]} ") < out.index(f"class {ranking[1]} ")

    # The rank-2 overlay must show the map for the second class (not the first one again).
    second = relevance.explain(reference_model, str(source), method="gradient_rollout", target=ranking[1])
    picture = np.asarray(Image.open(out_dir / f"chelsea__2_class-{ranking[1]}__gradient_rollout.png"))
    assert np.mean(picture == second.overlay(0, colormap="inferno", alpha=1.0)) > 0.99

    target_dir = tmp_path / "target"
    least = ranking[-1]
    code, _, _ = _run(["explain", str(source), "--model", TINY_NAME, "--checkpoint", str(checkpoint),
                       "--target", str(least), "--method", "attention", "--out", str(target_dir)], capsys)
    assert code == 0
    assert list(_outputs(target_dir)) == [f"chelsea__{NUM_CLASSES}_class-{least}__attention.png"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "magic"], r"unknown method 'magic'; valid methods: attention, rollout, .*transformer_attribution"),
        (["--target", "tabby cat"], r"no class names: give --target as an index 0\.\.4"),
        (["--target", "7"], r"--target 7 is out of range"),
        (["--top-k", "6"], r"--top-k 6 exceeds the model's 5 classes"),
        (["--start-layer", "2"], r"--start-layer must be below the model's 2 blocks"),
    ],
)
def test_usage_errors_exit_2(photo_folder, checkpoint, tmp_path, capsys, extra, message):
    code, _, err = _run(["explain", str(photo_folder / "chelsea.jpg"), "--model", TINY_NAME, "--checkpoint",
                         str(checkpoint), "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not list((tmp_path / "o").rglob("*.png"))  # nothing written


def test_unknown_model_lists_valid_names(photo_folder, tmp_path, capsys):
    code, _, err = _run(["explain", str(photo_folder), "--model", "vit_bse_patch16_224", "--out",
                         str(tmp_path / "o")], capsys)
    assert code == 2
    assert "unknown model 'vit_bse_patch16_224'; valid models: shapes-vit" in err
    assert "vit_base_patch16_224" in err  # a close timm name is suggested


def test_cuda_requested_without_cuda(photo_folder, checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run(["explain", str(photo_folder), "--model", TINY_NAME, "--checkpoint", str(checkpoint),
                         "--device", "cuda", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "CUDA is not available" in err


def test_missing_path_is_reported_and_others_processed(photo_folder, checkpoint, tmp_path, capsys):
    missing = tmp_path / "nope.jpg"
    code, _, err = _run(["explain", str(missing), str(photo_folder / "gradient.png"), "--model", TINY_NAME,
                         "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert f"error: {missing}: no such file or folder" in err
    assert len(list((tmp_path / "o").glob("gradient__1_*.png"))) == 1


def test_resolve_target_by_name():
    names = ["tench, Tinca tinca", "tabby, tabby cat", "crane", "tiger cat", "crane"]
    assert resolve_target("tabby cat", names, 5) == 1
    assert resolve_target("TABBY, Tabby Cat", names, 5) == 1
    assert resolve_target("3", names, 5) == 3
    with pytest.raises(UsageError, match=r"ambiguous.*2 \(crane\), 4 \(crane\)"):
        resolve_target("crane", names, 5)
    with pytest.raises(UsageError, match=r"unknown class 'tabby kat'; close matches: 'tabby cat'"):
        resolve_target("tabby kat", names, 5)
    assert slugify("great white shark, white shark") == "great-white-shark-white-shark"


def test_cli_help_lists_subcommands_and_missing_modules(capsys, monkeypatch):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert all(name in out for name in ("explain", "evaluate", "demo"))
    code, _, err = _run([], capsys)
    assert code == 2 and "explain" in err
    monkeypatch.setitem(cli.SUBCOMMANDS, "evaluate", ("demos.no_such_module_for_tests", "x"))
    code, _, err = _run(["evaluate", "--whatever"], capsys)
    assert code == 2
    assert "the 'evaluate' command is not available yet" in err
    code, out, _ = _run(["explain", "--help"], capsys)
    assert code == 0 and "--top-k" in out and "--colormap" in out
