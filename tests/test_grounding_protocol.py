"""``relevance evaluate --model shapes-clip`` (the grounding protocol) against a computation by hand on the embedded
shapes-clip: each caption's pointing game and mass in the named object from ``relevance.explain`` and the scene's
object masks; sharded runs equal one shard; misuse is a usage error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import relevance
import relevance.models
from relevance.cli import main
from relevance.evaluation.grounding import grounding_samples

SEED = 2_000_000


@pytest.fixture(scope="module")
def model():
    return relevance.models.create("shapes-clip")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _hand(model, samples, method: str) -> tuple[list[float], list[float]]:
    """Per caption: 1 when the map's maximum lies on the named object, and the share of the positive relevance on
    it (the map upsampled bilinearly to the 64 x 64 scene)."""
    pointing, mass = [], []
    for sample in samples:
        values = relevance.explain(model, sample.scene.image, texts=sample.caption, method=method).image_relevance
        big = torch.nn.functional.interpolate(values[:, None].double(), size=(64, 64), mode="bilinear",
                                              align_corners=False)[0, 0].numpy()
        mask = sample.target_mask
        pointing.append(float(mask.reshape(-1)[big.argmax()]))
        positive = np.clip(big, 0, None)
        mass.append(float(positive[mask].sum() / positive.sum()))
    return pointing, mass


def test_grounding_protocol_against_the_hand_computation(model, tmp_path, capsys):
    out = tmp_path / "one"
    args = ["evaluate", "--model", "shapes-clip", "--samples", "5", "--seed", str(SEED), "--methods",
            "transformer_attribution,gradient_rollout", "--figure-rows", "2", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| transformer_attribution |" in printed and "| random |" in printed
    samples = grounding_samples(5, SEED)
    result = json.loads((out / "results.json").read_text())
    assert result["protocol"] == "grounding" and result["samples"] == 5 and result["methods"] == [
        "transformer_attribution", "gradient_rollout", "random"]
    assert result["scenes"] == len({s.scene.seed for s in samples})
    assert result["start_layers"]["gradient_rollout"] == {"image": 3, "text": 2}  # the CLIP notebook's last block
    for method in ("transformer_attribution", "gradient_rollout"):
        pointing, mass = _hand(model, samples, method)
        metrics = result["metrics"][method]
        assert metrics["pointing"]["mean"] == pytest.approx(100 * np.mean(pointing), abs=1e-9)
        assert metrics["mass"]["mean"] == pytest.approx(100 * np.mean(mass), rel=1e-4)
        assert metrics["pointing"]["n"] == 5
    # on these captions transformer attribution finds the named objects, far above the random floor
    masses = {m: result["metrics"][m]["mass"]["mean"] for m in ("transformer_attribution", "random")}
    assert masses["transformer_attribution"] > 3 * masses["random"]
    report = (out / "results.md").read_text()
    assert report.startswith("# Grounding captions on the shapes world (shapes-clip)")
    assert f"`relevance evaluate --model shapes-clip --samples 5 --seed {SEED} --methods " in report
    assert (out / "figure.png").stat().st_size > 1000
    # two shards of 2 and 3 captions give the same table (the random floor too: drawn per caption)
    assert main([*args, "--shard-size", "2", "--batch-size", "2", "--out", str(tmp_path / "two")]) == 0
    capsys.readouterr()
    sharded = json.loads((tmp_path / "two" / "results.json").read_text())
    for method, metrics in result["metrics"].items():
        for key, values in metrics.items():
            assert sharded["metrics"][method][key]["mean"] == pytest.approx(values["mean"], rel=1e-5, abs=1e-9), \
                (method, key)
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == [
        "manifest.json", "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]


def test_grounding_protocol_usage_errors(tmp_path, capsys):
    assert main(["evaluate", "--protocol", "grounding", "--model", "shapes-vit", "--out", str(tmp_path)]) == 2
    assert "--model must be 'shapes-clip' or a folder written by demos/train_shapes_clip.py" in capsys.readouterr().err
    assert main(["evaluate", "--model", "shapes-clip", "--checkpoint", "x.safetensors", "--out", str(tmp_path)]) == 2
    assert "not --checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--model", "shapes-clip", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["evaluate", "--model", "shapes-clip", "--start-layer", "9", "--out", str(tmp_path)]) == 2
    assert "--start-layer must lie in 0..2 (or -3..-1)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_grounding_protocol_of_a_missing_clip_family_says_what_it_needs(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "relevance.cli.protocols.grounding", None)  # as if it were not installed
    assert main(["evaluate", "--model", "shapes-clip", "--out", str(tmp_path)]) == 2
    assert "needs the CLIP family" in capsys.readouterr().err
