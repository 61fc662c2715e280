"""The training script (one epoch on a few hundred scenes) and the shipped embedded model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from demos import train_shapes
from relevance.models.embedded import EMBEDDED_DIR, load_config, load_embedded, load_timm_embedded
from relevance.data import SHAPE_CLASSES, multi_hot, render_scene
from relevance.evaluation import average_precision


def test_one_epoch_training_run_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["--scenes", "320", "--epochs", "1", "--batch-size", "32", "--heldout", "96", "--depth", "2",
            "--dim", "64", "--heads", "2", "--eval-every", "0", "--out", str(out)]
    assert train_shapes.main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out (96 scenes" in printed and "mAP" in printed
    config = json.loads((out / "config.json").read_text())
    metrics = config["metrics"]
    assert metrics["loss"] < metrics["initial_loss"], "one epoch lowers the held-out loss"
    assert 0 <= metrics["mAP"] <= 100 and set(metrics["per_class_accuracy"]) == set(SHAPE_CLASSES)
    assert config["model"]["depth"] == 2 and config["class_names"] == list(SHAPE_CLASSES)
    assert config["data_config"]["crop_pct"] == 1.0 and config["data_config"]["crop_mode"] == "squash"
    assert "--scenes 320" in config["training"]["command"] and f"--out {out}" in config["training"]["command"]
    card = (out / "MODEL_CARD.md").read_text()
    assert config["training"]["command"] in card and f"{metrics['mAP']:.2f}" in card
    # the saved weights reproduce the trained model, both as timm and as the LRP-aware model
    timm_model = load_timm_embedded(out)
    x = torch.randn(2, 3, 64, 64)
    lrp_model = load_embedded(directory=out)
    assert torch.allclose(timm_model(x), lrp_model(x), atol=1e-5)
    assert lrp_model.class_names == list(SHAPE_CLASSES) and lrp_model.multi_label
    assert tuple(lrp_model.data_config.input_size) == (64, 64)


def test_training_script_rejects_overlapping_seeds():
    with pytest.raises(SystemExit):
        train_shapes.main(["--scenes", "10", "--heldout-seed", "5"])


def test_missing_model_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path)


def test_shipped_model_is_small_documented_and_accurate():
    weights = EMBEDDED_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 10 * 1024 * 1024
    config = load_config()
    card = (EMBEDDED_DIR / "MODEL_CARD.md").read_text()
    assert config["training"]["command"] in card
    assert f"{config['metrics']['mAP']:.2f}" in card
    model = load_timm_embedded()
    # held-out scenes different from both the training seeds and the model card's held-out seeds
    scenes = [render_scene(20_000_000 + i) for i in range(150)]
    x = torch.stack([torch.from_numpy(s.image.transpose(2, 0, 1).copy()) for s in scenes]).float() / 255
    with torch.no_grad():
        probs = torch.sigmoid(model((x - 0.5) / 0.5))
    y = torch.from_numpy(np.stack([multi_hot(s.labels) for s in scenes]))
    mean_ap = np.mean([average_precision(y[:, c], probs[:, c]) for c in range(len(SHAPE_CLASSES))])
    assert mean_ap >= 0.9, f"shipped model mAP {mean_ap:.3f}"
    assert ((probs > 0.5) == (y > 0.5)).float().mean() >= 0.9
