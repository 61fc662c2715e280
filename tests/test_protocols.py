"""The papers' tables from `relevance evaluate --protocol ...`, end to end on tiny fixture files in the real formats,
against the protocols computed by hand here (spec §5.2, §5.3); one process against two (torchrun, gloo); resumption.

The fixtures are shapes scenes (so that the embedded shapes-vit classifies them) written as ``gtsegs_ijcv.mat`` and as
an ImageNet val folder (:mod:`imagenet_fixtures`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import average_precision_score

import relevance
from imagenet_fixtures import write_gtsegs, write_imagenet_val
from relevance.cli import main
from relevance.evaluation import removal_order, segmentation_scores, segmentation_statistics
from relevance.models.embedded import load_embedded

REPO = Path(__file__).resolve().parents[1]
#: The start layers of the paper's scripts (spec §2.1): 1 for transformer attribution and rollout.
PAPER_START = {"transformer_attribution": 1, "rollout": 1}


@pytest.fixture(scope="module")
def model():
    return load_embedded()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _to01(image: np.ndarray, size: int = 64) -> torch.Tensor:
    """Squash-resize (bilinear) and scale to [0, 1], written out here rather than taken from the reader."""
    resized = Image.fromarray(image).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def _maps(model, pixels, method, target=None):
    e = relevance.explain(model, pixels, method=method, target=target, start_layer=PAPER_START.get(method))
    r = e.relevance.detach().float()
    if r.shape[-1] != 64:
        r = F.interpolate(r[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    return r, e.target


# ------------------------------------------------------------------------------------------- library pieces
def test_segmentation_statistics_by_hand():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    masks = torch.tensor([[[0, 0], [1, 1]], [[1, 0], [0, 0]]])
    s = segmentation_statistics(maps, masks)
    # image 0: normalised (0, 1/3, 2/3, 1), mean 1/2 -> foreground (0, 0, 1, 1) = the mask: all 4 correct
    # image 1: constant -> zeros, never NaN -> all background: 3 of 4 correct
    assert s["correct"].tolist() == [4, 3] and s["labelled"].tolist() == [4, 4]
    assert s["intersection"].tolist() == [[2, 2], [3, 0]] and s["union"].tolist() == [[2, 2], [4, 1]]
    assert s["ap"][0] == pytest.approx(1.0) and np.isfinite(s["ap"]).all()
    scores = segmentation_scores(**s)
    assert scores.pixel_accuracy == pytest.approx(100 * 7 / 8)
    # mIoU accumulates over the dataset: background 5/6, foreground 2/3 (not the mean of per-image IoUs)
    assert scores.miou == pytest.approx(100 * (5 / 6 + 2 / 3) / 2)
    assert scores.map == pytest.approx(100 * (s["ap"][0] + s["ap"][1]) / 2)


def test_removal_order_breaks_ties_by_pixel_index():
    maps = torch.tensor([[[1.0, 3.0], [3.0, 1.0]]])
    assert removal_order(maps, positive=True).tolist() == [[1, 2, 0, 3]]
    assert removal_order(maps, positive=False).tolist() == [[0, 3, 1, 2]]
    # the same order as numpy's stable sort, which the hand computations below use
    values = torch.rand(3, 16, 16).round(decimals=1)  # many ties
    for positive in (True, False):
        flat = values.reshape(3, -1).numpy()
        expected = np.argsort(-flat if positive else flat, axis=1, kind="stable")
        assert np.array_equal(removal_order(values, positive=positive).numpy(), expected)


# ------------------------------------------------------------------------------------- Table 1 end to end
def test_imagenet_seg_protocol_against_the_hand_computation(tmp_path, model, capsys):
    images, masks = write_gtsegs(tmp_path / "gtsegs_ijcv.mat", 5)
    methods = ["transformer_attribution", "rollout", "lrp", "attention_gradcam"]
    out = tmp_path / "seg"
    rc = main(["evaluate", "--protocol", "imagenet-seg", "--data", str(tmp_path / "gtsegs_ijcv.mat"), "--model",
               "shapes-vit", "--methods", ",".join(methods), "--batch-size", "8", "--out", str(out), "--no-progress",
               "--figure-rows", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    table = json.loads((out / "results.json").read_text())["methods"]

    pixels = (torch.stack([_to01(image) for image in images]) - 0.5) / 0.5
    truths = [np.asarray(Image.fromarray(m).resize((64, 64), Image.Resampling.NEAREST)) > 0 for m in masks]
    for method in methods:
        maps, _ = _maps(model, pixels, method)  # the predicted class
        correct = labelled = 0
        inter, union, aps = np.zeros(2), np.zeros(2), []
        for value, truth in zip(maps.double().numpy(), truths):
            span = value.max() - value.min()
            value = ((value - value.min()) / span if span > 0 else np.zeros_like(value)).astype(np.float32)
            foreground = value > value.mean()
            correct += int((foreground == truth).sum())
            labelled += truth.size
            for k, (p, g) in enumerate(((~foreground, ~truth), (foreground, truth))):
                inter[k] += (p & g).sum()
                union[k] += (p | g).sum()
            aps.append(average_precision_score(np.r_[1 - truth.ravel(), truth.ravel()],
                                               np.r_[1 - value.ravel(), value.ravel()]))
        got = table[method]
        assert got["pixel_accuracy"] == pytest.approx(100 * correct / labelled, abs=1e-9), method
        assert got["miou"] == pytest.approx(100 * np.mean(inter / union), abs=1e-9), method
        assert got["map"] == pytest.approx(100 * np.mean(aps), abs=1e-9), method
        assert got["start_layer"] == PAPER_START.get(method)
    assert table["transformer_attribution"]["paper"] == {"pixel_accuracy": 79.70, "map": 86.03, "miou": 61.95}
    report = (out / "results.md").read_text()
    assert "| TA (ours) (`transformer_attribution`) | 1 | " in report and "| 79.70 |" in report
    assert (out / "examples.png").is_file() and (out / "examples.pdf").is_file()


# ------------------------------------------------------------------------------------- Table 2 end to end
def _hand_table2(model, items, methods):
    """Spec §5.3 written out: per method and explained class, the hit curve over p = 0 .. 0.9 and its AUC."""
    x01 = torch.stack([_to01(np.asarray(Image.open(path).convert("RGB"))) for path, _ in items])
    labels = torch.tensor([label for _, label in items])
    norm = lambda x: (x - 0.5) / 0.5  # noqa: E731
    with torch.no_grad():
        predicted = model(norm(x01)).argmax(-1)
    unperturbed = (predicted == labels).numpy()
    cells = {}
    for method in methods:
        for which in ("predicted", "target"):
            if which == "target" and method in ("rollout", "attention"):
                continue  # class-agnostic: no target row
            maps, explained = _maps(model, norm(x01), method, predicted if which == "predicted" else labels)
            assert explained.tolist() == (predicted if which == "predicted" else labels).tolist()
            for test in ("positive", "negative"):
                curve = [unperturbed.mean()]
                for i in range(1, 10):
                    k = 64 * 64 * i // 10  # floor(H W p), exactly
                    perturbed = x01.clone().numpy()
                    for b, value in enumerate(maps.numpy()):
                        flat = value.ravel()
                        removed = np.argsort(-flat if test == "positive" else flat, kind="stable")[:k]
                        perturbed[b].reshape(3, -1)[:, removed] = 0.0  # all channels, before normalisation
                    with torch.no_grad():
                        hits = model(norm(torch.from_numpy(perturbed))).argmax(-1) == labels  # against the label
                    curve.append(hits.double().mean().item())
                trapezoids = [(a + b) / 2 * 0.1 for a, b in zip(curve, curve[1:])]  # x = 0, 0.1, ..., 0.9
                cells[f"{method}.{which}.{test}"] = (curve, 100 * sum(trapezoids))
    return cells, float(unperturbed.mean())


def test_perturbation_protocol_against_the_hand_computation(tmp_path, model, capsys):
    items = write_imagenet_val(tmp_path / "imagenet", 5, mislabelled=(1, 3))
    methods = ["transformer_attribution", "rollout"]
    out = tmp_path / "pert"
    rc = main(["evaluate", "--protocol", "perturbation", "--data", str(tmp_path / "imagenet"), "--model",
               "shapes-vit", "--methods", ",".join(methods), "--batch-size", "8", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads((out / "results.json").read_text())
    expected, accuracy = _hand_table2(model, items, methods)
    assert result["images"] == 5 and result["unperturbed_accuracy"] == pytest.approx(accuracy)
    assert 0 < accuracy < 1  # the model reads the fixture; two labels are not what it sees (target != predicted)
    assert set(result["cells"]) == set(expected)  # no target row for rollout
    for key, (curve, auc) in expected.items():
        assert result["cells"][key]["curve"] == pytest.approx(curve, abs=1e-12), key
        assert result["cells"][key]["auc"] == pytest.approx(auc, abs=1e-9), key
    report = (out / "results.md").read_text()
    ta = result["cells"]["transformer_attribution.predicted.positive"]["auc"]
    assert f"| Positive, predicted ↓ | {ta:.2f} (17.03) |" in report
    assert "| Negative, target ↑ |" in report and "— |" in report  # rollout has no target cell
    for which in ("predicted", "target"):
        assert (out / f"perturbation-{which}.png").is_file() and (out / f"perturbation-{which}.pdf").is_file()


def test_protocol_usage_errors(tmp_path, capsys):
    assert main(["evaluate", "--protocol", "imagenet-seg", "--out", str(tmp_path)]) == 2
    assert "needs --data gtsegs_ijcv.mat" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "perturbation", "--data", str(tmp_path / "missing"), "--model",
                 "shapes-vit", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "few" / "val" / "n0").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "few" / "val" / "n0" / "a.JPEG")
    assert main(["evaluate", "--protocol", "perturbation", "--data", str(tmp_path / "few"), "--model",
                 "shapes-vit", "--out", str(tmp_path)]) == 2
    assert "1 class folders but shapes-vit has 6 classes" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "eraser", "--data", str(tmp_path)]) == 2
    assert "no ERASER split test.jsonl" in capsys.readouterr().err  # the BERT family is installed: the data is missing
    assert main(["evaluate", "--model", "vit_tiny_patch16_224", "--out", str(tmp_path)]) == 2
    assert "choose a protocol" in capsys.readouterr().err


# ------------------------------------------------------------------------------ at scale: processes, resume
def _merged_rows(folder: Path) -> dict[str, np.ndarray]:
    shards = sorted(folder.glob("shard-*.npz"))
    parts = [dict(np.load(path)) for path in shards]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _perturbation_args(data: Path, out: Path) -> list[str]:
    return ["evaluate", "--protocol", "perturbation", "--data", str(data), "--model", "shapes-vit", "--methods",
            "transformer_attribution,rollout", "--shard-size", "1", "--batch-size", "1", "--out", str(out),
            "--no-progress"]


def test_two_processes_with_torchrun_equal_one_process(tmp_path, capsys):
    write_imagenet_val(tmp_path / "imagenet", 5)
    assert main(_perturbation_args(tmp_path / "imagenet", tmp_path / "one")) == 0
    capsys.readouterr()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "relevance", *_perturbation_args(tmp_path / "imagenet", tmp_path / "two")]
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # rank 0 alone prints: one table, one summary line, naming 2 processes
    assert completed.stdout.count("| Positive, predicted ↓ |") == 1
    assert completed.stdout.count("5 samples in 5 shards of 1, 2 process(es)") == 1
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    for result in (one, two):
        result.pop("data")
    assert one == two  # the merged table is exactly the one-process table
    rows_one, rows_two = _merged_rows(tmp_path / "one" / "shards"), _merged_rows(tmp_path / "two" / "shards")
    assert rows_one.keys() == rows_two.keys()
    assert all(np.array_equal(rows_one[k], rows_two[k]) for k in rows_one)
    assert rows_two["index"].tolist() == [0, 1, 2, 3, 4]


def test_a_run_that_died_resumes_without_redoing_finished_shards(tmp_path, capsys):
    write_imagenet_val(tmp_path / "imagenet", 3)
    args = _perturbation_args(tmp_path / "imagenet", tmp_path / "run")
    assert main(args) == 0
    first = json.loads((tmp_path / "run" / "results.json").read_text())
    capsys.readouterr()
    shards = tmp_path / "run" / "shards"
    # the run "died" before shard 2 and before writing its outputs; shard 0 was finished (we mark its hits)
    (shards / "shard-00002.npz").unlink()
    (tmp_path / "run" / "results.json").unlink()
    marked = dict(np.load(shards / "shard-00000.npz"))
    key = "transformer_attribution.predicted.positive"
    marked[key] = np.ones_like(marked[key])
    np.savez(shards / "shard-00000.npz", **marked)
    stamp = (shards / "shard-00001.npz").stat().st_mtime_ns
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "resuming: 2 of 3 shards already done" in captured.out
    assert (shards / "shard-00001.npz").stat().st_mtime_ns == stamp  # not rewritten
    second = json.loads((tmp_path / "run" / "results.json").read_text())
    # shard 0 was read, not recomputed: its marked hits are in the curve; shard 2 was recomputed as before
    rows = _merged_rows(shards)
    assert second["cells"][key]["curve"] == pytest.approx(rows[key].mean(0).tolist())
    assert rows[key][0].all()
    other = "transformer_attribution.target.negative"
    assert second["cells"][other] == first["cells"][other]
    # another method list is another run: refused, not mixed in
    changed = [a if a != "transformer_attribution,rollout" else "rollout" for a in args]
    assert main(changed) == 2
    assert "other settings (differing: methods" in capsys.readouterr().err


def test_torchrun_module_entry_point_exists():
    """`torchrun -m relevance` needs `python -m relevance` (relevance/__main__.py)."""
    completed = subprocess.run([sys.executable, "-m", "relevance", "evaluate", "--help"], capture_output=True,
                               text=True, timeout=120, cwd=REPO)
    assert completed.returncode == 0 and "--protocol" in completed.stdout and "imagenet-seg" in completed.stdout


def test_the_shapes_benchmark_on_two_processes_equals_one(tmp_path, capsys):
    args = ["evaluate", "--samples", "4", "--shard-size", "2", "--batch-size", "4", "--methods",
            "transformer_attribution,rollout", "--figure-rows", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                "-m", "relevance", *args, "--out", str(tmp_path / "two")], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("explained objects in 4 scenes, 2 process(es)") == 1  # rank 0 alone reports
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    for result in (one, two):  # wall-clock timing differs between runs; every measured value must not
        assert set(result.pop("milliseconds_per_explanation")) == {"transformer_attribution", "rollout", "random"}
    assert one == two and one["scenes"] == 4
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == [
        "manifest.json", "shard-00000.npz", "shard-00001.npz"]


def test_protocols_of_a_missing_family_say_what_they_need(monkeypatch, tmp_path, capsys):
    """An installation without the BERT family (simulated): the text protocols name what is missing."""
    monkeypatch.setitem(sys.modules, "relevance.models.bert", None)  # importing it now fails
    assert main(["evaluate", "--protocol", "eraser", "--data", str(tmp_path)]) == 2
    assert "needs the BERT family" in capsys.readouterr().err


def test_a_model_family_plugs_its_own_runner_in_with_one_registry_entry(monkeypatch, capsys):
    """What the BERT and CLIP families did: one Protocol entry and one model line; `--samples N --seed S` reach
    their runner."""
    import types

    from relevance.cli import evaluate

    seen = {}
    runner = types.ModuleType("toy_reviews_runner")
    runner.run = lambda args: seen.update(samples=args.samples, seed=args.seed, model=args.model) or 0
    monkeypatch.setitem(sys.modules, "toy_reviews_runner", runner)
    monkeypatch.setattr(evaluate, "PROTOCOLS", dict(evaluate.PROTOCOLS))
    monkeypatch.setattr(evaluate, "MODEL_PROTOCOLS", dict(evaluate.MODEL_PROTOCOLS))
    evaluate.register_protocol(evaluate.Protocol("reviews", "toy_reviews_runner", "the reviews world"),
                               models=("toy-reviews-bert",))
    assert main(["evaluate", "--model", "toy-reviews-bert", "--samples", "3", "--seed", "5"]) == 0
    assert seen == {"samples": 3, "seed": 5, "model": "toy-reviews-bert"}
    assert main(["evaluate", "--protocol", "reviews", "--model", "toy-reviews-bert", "--samples", "2"]) == 0
    assert seen["samples"] == 2


def test_the_evaluation_library_imports_no_model_demo_gradio_or_plotting_code():
    modules = ["relevance.evaluation", "relevance.evaluation.sharding", "relevance.evaluation.protocols",
               "relevance.evaluation.segmentation_protocol", "relevance.evaluation.perturbation_protocol",
               "relevance.evaluation.paper_numbers", "relevance.evaluation.shapes_benchmark"]
    code = (f"import sys; [__import__(m) for m in {modules!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'demos', 'models', 'matplotlib') "
            "or m.startswith('relevance.models') or m.startswith('relevance.figures')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
