"""TensorBoard logging of relevance maps and attention grids: the event files read back (tags, steps, images,
texts), and training unchanged by logging."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from demos import train_shapes  # noqa: E402
from relevance.tensorboard import RelevanceLogger, token_table  # noqa: E402
from text_standin import TinyTextModel  # noqa: E402

TRAIN = ["--scenes", "96", "--epochs", "2", "--batch-size", "16", "--heldout", "32", "--depth", "2", "--dim", "32",
         "--drop-path", "0.1",
         "--heads", "2", "--eval-every", "0"]


def events(folder) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def decoded(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


def test_training_logs_maps_and_grids_every_n_steps_and_trains_the_same(tmp_path, capsys):
    plain, logged = tmp_path / "plain", tmp_path / "logged"
    assert train_shapes.main(TRAIN + ["--out", str(plain)]) == 0
    assert train_shapes.main(TRAIN + ["--out", str(logged), "--tensorboard", str(tmp_path / "runs"),
                                      "--tensorboard-every", "5", "--tensorboard-probes", "2"]) == 0
    assert "TensorBoard" in capsys.readouterr().out
    # logging leaves training exactly as it was: same metrics, same weights
    assert json.loads((plain / "config.json").read_text())["metrics"]["loss"] == \
        json.loads((logged / "config.json").read_text())["metrics"]["loss"]
    assert (plain / "model.safetensors").read_bytes() == (logged / "model.safetensors").read_bytes()
    assert "--tensorboard" not in json.loads((logged / "config.json").read_text())["training"]["command"]

    accumulator = events(tmp_path / "runs")
    tags = set(accumulator.Tags()["images"])
    expected = {f"relevance/{kind}/probe_{i}" for kind in ("transformer_attribution", "attention") for i in (0, 1)}
    assert tags == expected
    steps_per_epoch = 96 // 16
    wanted = list(range(0, 2 * steps_per_epoch, 5)) + [2 * steps_per_epoch]  # every 5 steps, then the final state
    for tag in expected:
        images = accumulator.Images(tag)
        assert [event.step for event in images] == wanted, tag
        first = decoded(images[0])
        if "attention" in tag:  # 2 blocks x 2 heads of 112 px tiles
            assert first.shape[0] > 2 * 112 and first.shape[1] > 2 * 112 and first.shape[2] == 3
        else:  # the overlay on the 64 x 64 scene
            assert (images[0].height, images[0].width) == (64, 64) and first.shape == (64, 64, 3)
        assert not np.array_equal(first, decoded(images[-1])), f"{tag} changes while the model learns"


def test_text_probes_are_logged_as_markdown_tables_and_heatmaps(tmp_path):
    model = TinyTextModel()
    logger = RelevanceLogger(tmp_path, ["the film was great", "boring plot"], every=3, target=[1, 0])
    assert [logger(model, step) for step in range(7)] == [True, False, False, True, False, False, True]
    logger.close()
    accumulator = events(tmp_path)
    texts = accumulator.Tags()["tensors"]
    assert sorted(texts) == ["relevance/transformer_attribution/probe_0/text_summary",
                             "relevance/transformer_attribution/probe_1/text_summary"]
    records = accumulator.Tensors(texts[1])
    assert [r.step for r in records] == [0, 3, 6]
    table = records[0].tensor_proto.string_val[0].decode()
    assert "**negative**" in table and "| `boring` |" in table and "| `[CLS]` |" in table
    images = set(accumulator.Tags()["images"])
    assert "relevance/transformer_attribution/probe_0/heatmap" in images and "relevance/attention/probe_1" in images


def test_token_table_escapes_and_scales():
    table = token_table(["a|b", "<x>"], [0.5, -1.0], title="t")
    assert "`a\\|b`" in table and "&lt;x&gt;" in table and "| -1.0000 | -" + "\u2588" * 12 in table
    with pytest.raises(ValueError, match="every"):
        RelevanceLogger(object(), ["x"], every=0)


def test_training_the_reviews_model_logs_token_relevance_and_trains_the_same(tmp_path, capsys):
    from demos import train_reviews
    from relevance.data.reviews import generate_reviews

    argv = ["--train", "64", "--heldout", "16", "--epochs", "1", "--batch-size", "16", "--hidden", "16", "--layers",
            "2", "--heads", "2", "--intermediate", "32", "--max-length", "48"]
    plain, logged = tmp_path / "plain", tmp_path / "logged"
    assert train_reviews.main(argv + ["--out", str(plain)]) == 0
    assert train_reviews.main(argv + ["--out", str(logged), "--tensorboard", str(tmp_path / "runs"),
                                      "--tensorboard-every", "3", "--tensorboard-probes", "2"]) == 0
    assert "TensorBoard: token relevance" in capsys.readouterr().out
    # logging leaves training exactly as it was, and the recorded command leaves the logging out
    assert (plain / "model.safetensors").read_bytes() == (logged / "model.safetensors").read_bytes()
    config = json.loads((logged / "config.json").read_text())
    assert config["relevance_metrics"]["loss"] == json.loads((plain / "config.json").read_text())[
        "relevance_metrics"]["loss"]
    assert "--tensorboard" not in config["relevance_training"]["command"]

    accumulator = events(tmp_path / "runs")
    tables = sorted(accumulator.Tags()["tensors"])
    assert tables == [f"relevance/transformer_attribution/probe_{i}/text_summary" for i in (0, 1)]
    probes = generate_reviews(2, seed=2)  # the first held-out reviews, explained for their labels
    for i, probe in enumerate(probes):
        records = accumulator.Tensors(tables[i])
        assert [r.step for r in records] == [0, 3, 4]  # every 3 of the 4 steps, then the final state
        table = records[0].tensor_proto.string_val[0].decode()
        assert f"**{('negative', 'positive')[probe.label]}**" in table
        assert all(f"| `{word}` |" in table for word in probe.words)
        images = set(accumulator.Tags()["images"])
        assert {f"relevance/transformer_attribution/probe_{i}/heatmap", f"relevance/attention/probe_{i}"} <= images
        grid = decoded(accumulator.Images(f"relevance/attention/probe_{i}")[-1])
        assert grid.shape[0] > 2 * 50 and grid.ndim == 3  # 2 blocks x 2 heads
