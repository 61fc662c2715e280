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
from relevance.cli.explain import UsageError, overlay_label, resolve_target, slugify
from relevance.render.image import annotate
import relevance.models as models
from relevance.models import vit

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
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
        probability = float(expected.probabilities[0, top_class])
        label = overlay_label(f"class {top_class}", 1, probability, "transformer_attribution")
        assert label == f"1. class {top_class} {probability:.1%} | transformer_attribution"
        reference = annotate(expected.overlay(0, colormap="jet", alpha=0.5), label, position="top")
        assert np.mean(picture == reference) > 0.99  # the right map on the right image (batching aside)
        assert re.search(rf"{re.escape(str(source))}: class {top_class} {probability:.1%}", out)
    assert "wrote 3 overlays" in out


def test_top_k_is_one_batched_explanation(photo_folder, checkpoint, reference_model, tmp_path, capsys,
                                         monkeypatch):
    sources = [photo_folder / "chelsea.jpg", photo_folder / "gradient.png"]
    rankings = [relevance.explain(reference_model, str(s)).logits[0].argsort(descending=True).tolist()
                for s in sources]
    calls = []
    real_explain = relevance.explain

    def counting_explain(model, images, **kwargs):
        calls.append((images.shape[0], torch.as_tensor(kwargs["target"]).tolist()))
        return real_explain(model, images, **kwargs)

    monkeypatch.setattr(relevance, "explain", counting_explain)
    out_dir = tmp_path / "topk"
    code, out, _ = _run(["explain", *map(str, sources), "--model", TINY_NAME, "--checkpoint", str(checkpoint),
                         "--top-k", "3", "--method", "gae", "--colormap", "inferno", "--alpha", "1", "--no-label",
                         "--out", str(out_dir)], capsys)
    monkeypatch.undo()
    assert code == 0
    # ONE explain call for the batch: each image repeated K times in a row, with its K top classes as targets
    assert calls == [(6, rankings[0][:3] + rankings[1][:3])]
    expected_names = {f"{s.stem}__{rank + 1}_class-{ranking[rank]}__gradient_rollout.png"
                      for s, ranking in zip(sources, rankings) for rank in range(3)}
    assert set(_outputs(out_dir)) == expected_names
    # --top-k 3 prints at least three predictions, best first
    assert f"class {rankings[0][0]} " in out
    assert out.index(f"class {rankings[0][0]} ") < out.index(f"class {rankings[0][1]} ")

    # Each rank's overlay shows the map of a single call for that class (not the first class again).
    for source, ranking in zip(sources, rankings):
        for rank in range(3):
            single = relevance.explain(reference_model, str(source), method="gradient_rollout", target=ranking[rank])
            picture = np.asarray(Image.open(out_dir / f"{source.stem}__{rank + 1}_class-{ranking[rank]}"
                                                      "__gradient_rollout.png"))
            assert np.mean(picture == single.overlay(0, colormap="inferno", alpha=1.0)) > 0.99


def test_explicit_target(photo_folder, checkpoint, reference_model, tmp_path, capsys):
    source = photo_folder / "chelsea.jpg"
    ranking = relevance.explain(reference_model, str(source)).logits[0].argsort(descending=True).tolist()

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
        (["--target", "tabby cat"], r"--target: the model has no class names: give the class as an index 0\.\.4"),
        (["--target", "7"], r"--target: class index 7 is out of range: the model has classes 0\.\.4"),
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
    """The shared matcher's rule (tests/test_labels.py), with the option's name in front of its messages."""
    names = ["tench, Tinca tinca", "tabby, tabby cat", "crane", "tiger cat", "crane"]
    assert resolve_target("tabby cat", names, 5) == 1
    assert resolve_target("TABBY, Tabby Cat", names, 5) == 1
    assert resolve_target("3", names, 5) == 3
    with pytest.raises(UsageError, match=r"^--target: 'crane' is ambiguous: it names classes 2 \(crane\), 4 \(crane\)"):
        resolve_target("crane", names, 5)
    with pytest.raises(UsageError, match=r"^--target: unknown class 'tabby kat'; close matches: 'tabby cat' \(1\)$"):
        resolve_target("tabby kat", names, 5)
    assert slugify("great white shark, white shark") == "great-white-shark-white-shark"


def test_labels_can_be_turned_off(photo_folder, checkpoint, reference_model, tmp_path, capsys):
    source = photo_folder / "nested" / "rocket.jpg"
    common = ["explain", str(source), "--model", TINY_NAME, "--checkpoint", str(checkpoint), "--method", "rollout"]
    assert _run([*common, "--out", str(tmp_path / "plain"), "--no-label"], capsys)[0] == 0
    assert _run([*common, "--out", str(tmp_path / "labelled")], capsys)[0] == 0
    (plain,), (labelled,) = _outputs(tmp_path / "plain").values(), _outputs(tmp_path / "labelled").values()
    plain, labelled = np.asarray(Image.open(plain)), np.asarray(Image.open(labelled))
    expected = relevance.explain(reference_model, str(source), method="rollout")
    np.testing.assert_array_equal(plain, expected.overlay(0))  # --no-label: the bare overlay
    changed_rows = np.flatnonzero((plain != labelled).any(axis=(1, 2)))
    assert changed_rows.size and changed_rows.min() == 0 and changed_rows.max() < 0.1 * plain.shape[0]  # a top band
    np.testing.assert_array_equal(labelled[changed_rows.max() + 1:], plain[changed_rows.max() + 1:])


def test_photos_given_to_the_shapes_model_get_one_warning_line(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    scene = sorted(EXAMPLES.glob("*.png"))[0]
    shutil.copy(scene, folder / scene.name)
    code, out, err = _run(["explain", str(folder), "--model", "shapes-vit", "--out", str(tmp_path / "o"),
                           "--method", "attention"], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: 2 of 3 images (astronaut.jpg, coffee.jpg): "
                        f"{models.domain_warning(models.load_model('shapes-vit'), np.zeros((8, 8, 3), np.uint8))}"]
    assert "mean nothing" in warnings[0]
    code, _, err = _run(["explain", str(EXAMPLES), "--model", "shapes-vit", "--out", str(tmp_path / "scenes"),
                         "--method", "attention"], capsys)
    assert code == 0 and "warning:" not in err


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
    assert code == 0 and "--top-k" in out and "--colormap" in out and "--no-label" in out
    method_lines = out[out.index("methods (--method NAME):"):].splitlines()[1:]
    assert [line.split()[0] for line in method_lines] == relevance.list_methods()  # one line each, in order
    for line, name in zip(method_lines, relevance.list_methods()):
        assert relevance.METHODS[name].title in line
    assert "alias gae" in method_lines[relevance.list_methods().index("gradient_rollout")]
    assert "(the default)" in method_lines[relevance.list_methods().index("transformer_attribution")]
    assert "same map for every class" in method_lines[relevance.list_methods().index("rollout")]
