"""The shapes CLIP: a short training run end to end, the shipped model and its registration, captions and hard
negatives, and the grounding evaluation (its metrics on hand-made maps, its table and figure)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import relevance
from relevance.data.shapes import COLOURS, SHAPE_CLASSES, render_scene
from relevance.data.shapes_captions import (VOCABULARY, caption, describes, hard_negative, sample_caption,
                                            scene_objects)
from relevance.evaluation.grounding import (METRICS, RANDOM, GroundingSample, evaluate_grounding, grounding_samples,
                                            text_share)
from relevance.models import shapes_clip

ROOT = Path(__file__).resolve().parent.parent


def test_captions_describe_their_scene_and_hard_negatives_do_not():
    rng = np.random.default_rng(0)
    for seed in range(60):
        scene = render_scene(seed, 64)
        named, template = sample_caption(scene, rng)
        assert describes(named, scene_objects(scene)) and template.count("{}") == 1
        negative = hard_negative(named, scene, rng)
        assert not describes(negative, scene_objects(scene))
        assert sum(a != b for a, b in zip(named, negative)) == 1  # one object's colour or shape swapped
        words = caption(negative, template).replace(",", " ,").split()
        assert set(words) <= set(VOCABULARY)
    assert caption([("orange", 0), ("red", 4)], "a photo of {}") == "a photo of an orange circle and a red star"


def test_text_share_counts_positive_relevance_on_colour_and_shape_words():
    words = [("a", 1.0), ("photo", -5.0), ("of", 0.0), ("a", 1.0), ("red", 3.0), ("circle", 3.0)]
    assert text_share(words) == pytest.approx(6.0 / 8.0)
    assert np.isnan(text_share([("a", -1.0), ("red", 0.0)]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few hundred pairs of training: the script end to end, written and loaded as the embedded model is."""
    sys.path.insert(0, str(ROOT / "demos"))
    import train_shapes_clip

    out = tmp_path_factory.mktemp("shapes_clip")
    args = train_shapes_clip.parse_args(["--scenes", "256", "--epochs", "2", "--batch-size", "64", "--heldout", "64",
                                         "--threads", "1", "--log-every", "4", "--out", str(out)])
    metrics = train_shapes_clip.train(args)
    return out, metrics


def test_a_short_training_run_writes_a_loadable_model_that_learns(trained):
    out, metrics = trained
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["object_naming_accuracy"] == metrics["object_naming_accuracy"]
    model = shapes_clip.load_shapes_clip(directory=out)
    assert model.tokenizer.words == list(VOCABULARY)
    # 8 steps already move the model off chance (1 in 48 colour-shape prompts) on held-out scenes
    assert metrics["object_naming_accuracy"] > metrics["initial"]["object_naming_accuracy"]
    assert metrics["single_object_zero_shot_accuracy"] > 100 / 48
    scene = render_scene(2_000_000, 64)
    result = relevance.explain(model, scene.image, texts=caption(scene_objects(scene)[:1], "a photo of {}"),
                               method="gradient_rollout")
    assert result.image_relevance.shape == (1, 8, 8) and torch.isfinite(result.text_relevance).all()


def test_grounding_end_to_end_on_the_trained_model(trained):
    model = shapes_clip.load_shapes_clip(directory=trained[0])
    result = evaluate_grounding(model, samples=6, seed=2_000_000, methods=["gradient_rollout", "legrad", "lrp"],
                                batch_size=4, figure_rows=3)
    assert result.methods == ["gradient_rollout", "legrad", "lrp", RANDOM]
    table = result.table().splitlines()
    assert "Pointing" in table[0] and len(table) == 2 + 4
    assert [row.split("|")[1].strip() for row in table[2:]] == result.methods
    for method in result.methods:
        assert all(len(result.values[method][key]) == 6 for key, _ in METRICS)
    assert result.start_layers["gradient_rollout"] == {"image": 3, "text": 2}  # the notebook's last block
    figure = result.figure()
    assert figure.ndim == 3 and figure.shape[2] == 3 and figure.shape[1] > 4 * 112


def test_grounding_metrics_on_hand_made_maps():
    # a model stand-in whose maps are exactly the named object's mask: every localisation metric is perfect
    samples = grounding_samples(5, seed=2_000_000)
    expected = [(seed, i) for seed in range(2_000_000, 2_000_010) for i in range(len(render_scene(seed, 64).labels))]
    assert [(s.scene.seed, s.index) for s in samples] == expected[:5]  # every object of each scene, in turn
    assert all(isinstance(s, GroundingSample) and s.caption.startswith("a photo of a") for s in samples)
    from relevance.evaluation.localisation import class_specificity, mass_inside, pointing_game

    maps = torch.from_numpy(np.stack([s.target_mask for s in samples])).double()
    masks = maps > 0
    assert pointing_game(maps, masks).tolist() == [1.0] * 5 and mass_inside(maps, masks).tolist() == [1.0] * 5
    others = torch.from_numpy(np.stack([s.other_mask for s in samples]))
    specificity = class_specificity(maps, masks, others)
    assert all(v == 1.0 or np.isnan(v) for v in specificity.tolist())


def test_the_shipped_shapes_clip_is_registered_small_and_names_objects():
    model = relevance.models.create("shapes-clip")
    assert "shapes-clip" in relevance.models.list_models()
    files = [ROOT / "assets" / "shapes_clip" / name for name in ("config.json", "model.safetensors", "MODEL_CARD.md")]
    assert all(f.is_file() for f in files) and sum(f.stat().st_size for f in files) < 10 * 2**20
    card = files[2].read_text()
    config = json.loads(files[0].read_text())
    assert config["training"]["command"] in card
    # on held-out scenes it names the objects of a scene far above chance (1 in 48)
    pairs = [(c, s) for s in range(len(SHAPE_CLASSES)) for c in COLOURS]
    prompts = [caption([pair], "a photo of {}") for pair in pairs]
    scenes = [render_scene(3_000_000 + i, 64) for i in range(30)]
    logits = relevance.models.clip.similarity_matrix(model, [s.image for s in scenes], prompts)
    hits = [int(logits[i].argmax()) in [pairs.index(obj) for obj in scene_objects(s)] for i, s in enumerate(scenes)]
    assert np.mean(hits) > 0.6
    # the image-text default falls back to it offline (HF_HUB_OFFLINE=1 in the tests)
    assert relevance.models.create(modality="image-text", quiet=True).info.name == "shapes-clip"


def test_the_image_text_default_is_the_embedded_model_offline(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = relevance.models.create(modality="image-text")
    assert model.info.name == "shapes-clip" and model.info.output == "pair_logits"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "using the embedded model 'shapes-clip'" in err  # one line says so
    relevance.models.create(modality="image-text", quiet=True)
    assert capsys.readouterr().err == ""
