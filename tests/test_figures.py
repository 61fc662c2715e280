"""`relevance figures`: every figure offline on the embedded model at small sizes, and what it shows checked against
the engine called directly; deterministic files; the text figure on the embedded reviews-bert, the image-text figure
on the embedded shapes-clip against the scene's known objects."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import relevance
import relevance.models
from relevance.cli import main
from relevance.evaluation import STEPS, make_normalize, multilabel_present, perturbation_auc, segmentation_statistics
from relevance.figures import FIGURES, list_figures, make_figure
from relevance.figures.inputs import display_overlay
from relevance.images import load_image
from relevance.models.embedded import load_embedded

EXAMPLES = Path(relevance.__file__).resolve().parents[1] / "assets" / "examples"
TWO_OBJECTS = EXAMPLES / "scene-20000014_cyan-square_purple-ring.png"
THREE_OBJECTS = EXAMPLES / "scene-20000001_orange-cross_green-star_blue-ring.png"


@pytest.fixture(scope="module")
def model():
    return load_embedded()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _pictures(figure) -> list[np.ndarray]:
    """The RGB pictures drawn in a figure's axes, in drawing order (the colour keys are 2-D arrays: left out)."""
    return [np.asarray(axes.get_images()[0].get_array()) for axes in figure.axes
            if axes.get_images() and axes.get_images()[0].get_array().ndim == 3]


def _titles(figure) -> list[str]:
    return [axes.get_title() for axes in figure.axes if axes.get_title()]


def test_the_registry_lists_every_figure(capsys):
    assert list_figures() == ["methods", "class-specific", "perturbation", "layers", "segmentation", "text",
                              "image-text"]
    assert main(["figures", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in FIGURES) and "needs" in listed
    assert main(["figures", "nonsense"]) == 2
    assert "unknown figure" in capsys.readouterr().err


def test_methods_grid_shows_each_methods_map_of_the_predicted_class(model):
    methods = ["attention", "transformer_attribution", "lrp"]
    result = make_figure("methods", inputs=[str(THREE_OBJECTS), str(TWO_OBJECTS)], methods=methods)
    data = result.data
    images = [load_image(THREE_OBJECTS), load_image(TWO_OBJECTS)]
    for method in methods:
        direct = relevance.explain(model, images, method=method)
        assert torch.equal(data["maps"][method], direct.relevance), method
        assert data["targets"].tolist() == direct.logits.argmax(-1).tolist()  # the predicted class, every column
    titles = _titles(result.figure)
    assert titles[:4] == ["Input", "Raw attention [1]", "Transformer attr. [2]", "LRP [3]"]
    assert "[2] Transformer attribution: Chefer, Gur & Wolf" in result.caption
    # the cell of row 1, column "transformer attr." is that map's overlay on input 1 (signed LRP centred on zero)
    explanation = relevance.explain(model, images, method="transformer_attribution")
    pictures = _pictures(result.figure)
    assert len(pictures) == 2 * 4
    assert np.array_equal(pictures[4 + 2], display_overlay(explanation.maps["image"], 1))
    lrp = relevance.explain(model, images, method="lrp")
    assert np.array_equal(pictures[3], display_overlay(lrp.maps["image"], 0)) and lrp.maps["image"].signed


def test_class_specific_rows_differ_for_class_specific_methods_only(model):
    methods = ["attention", "rollout", "transformer_attribution", "gradient_rollout", "attention_gradcam"]
    result = make_figure("class-specific", methods=methods)
    data = result.data
    scene = load_image(TWO_OBJECTS)
    assert sorted(data["class_names"]) == ["ring", "square"]  # the two objects of the scene: the top-2 classes
    for method in methods:
        rows = [relevance.explain(model, scene, method=method, target=c).relevance[0] for c in data["classes"]]
        assert torch.allclose(data["maps"][method][0], rows[0], atol=1e-6)
        assert torch.allclose(data["maps"][method][1], rows[1], atol=1e-6)
    assert data["rows_differ"] == {"attention": False, "rollout": False, "transformer_attribution": True,
                                   "gradient_rollout": True, "attention_gradcam": True}
    assert torch.equal(data["maps"]["rollout"][0], data["maps"]["rollout"][1])
    assert not torch.allclose(data["maps"]["transformer_attribution"][0], data["maps"]["transformer_attribution"][1])
    assert sum("(class-agnostic)" in t for t in _titles(result.figure)) == 2
    chosen = make_figure("class-specific", methods=["transformer_attribution"], classes=["square", "ring"])
    assert chosen.data["class_names"] == ["square", "ring"]


def test_perturbation_legends_give_the_auc_of_the_curves_computed_by_hand(model):
    methods = ["transformer_attribution", "rollout"]
    result = make_figure("perturbation", methods=methods, samples=2)
    curves, aucs = result.data["curves"], result.data["aucs"]
    # by hand: every object of scenes 10000000..1, its class explained; a hit = the class is still predicted
    from relevance.evaluation.shapes_benchmark import held_out_samples

    samples = held_out_samples(2, 10_000_000, 64)
    x01 = torch.stack([torch.from_numpy(s.scene.image.transpose(2, 0, 1).copy()) for s in samples]).float() / 255
    labels = torch.tensor([s.label for s in samples])
    norm = make_normalize((0.5,) * 3, (0.5,) * 3)
    for method in methods:
        maps = relevance.explain(model, norm(x01), method=method, target=labels, start_layer=1).relevance
        maps = torch.nn.functional.interpolate(maps[:, None].float(), size=(64, 64), mode="bilinear")[:, 0]
        for test in ("positive", "negative"):
            curve = []
            for i in range(10):
                perturbed = x01.clone().numpy()
                for b, value in enumerate(maps.numpy()):
                    flat = value.ravel()
                    order = np.argsort(-flat if test == "positive" else flat, kind="stable")
                    perturbed[b].reshape(3, -1)[:, order[:4096 * i // 10]] = 0
                with torch.no_grad():
                    curve.append(multilabel_present(model(norm(torch.from_numpy(perturbed))), labels).double().mean())
            assert curves[method][test] == pytest.approx([float(c) for c in curve], abs=1e-12), (method, test)
            assert aucs[method][test] == pytest.approx(perturbation_auc(curve))
    # each panel's legend says each method's AUC, best first, and its lines are the curves
    for axes, test in zip(result.figure.axes[:2], ("positive", "negative")):
        labels_shown = [t.get_text() for t in axes.get_legend().get_texts()]
        shown = {re.sub(r" \(AUC .*\)$", "", t): float(re.search(r"AUC ([\d.]+)", t).group(1)) for t in labels_shown}
        assert shown == {"Transformer attr.": round(aucs["transformer_attribution"][test], 1),
                         "Rollout": round(aucs["rollout"][test], 1)}
        values = [shown[k] for k in shown]
        assert values == sorted(values, reverse=test == "negative")
        lines = {line.get_label(): line for line in axes.get_lines()}
        line = next(l for k, l in lines.items() if k.startswith("Transformer attr."))
        assert np.allclose(line.get_ydata(), 100 * np.asarray(curves["transformer_attribution"][test]))
        assert np.allclose(line.get_xdata(), 100 * np.asarray(STEPS))


def test_layers_columns_are_the_maps_of_each_start_layer(model):
    result = make_figure("layers", inputs=[str(THREE_OBJECTS)], methods=["transformer_attribution"])
    depth = len(model.blocks)
    maps = result.data["maps"]["transformer_attribution"]
    assert maps.shape[0] == depth and result.data["start_layers"]["transformer_attribution"] == list(range(depth))
    image = load_image(THREE_OBJECTS)
    for s in range(depth):
        assert torch.equal(maps[s], relevance.explain(model, image, method="transformer_attribution",
                                                      start_layer=s).relevance)
    assert not torch.allclose(maps[0], maps[-1])
    assert _titles(result.figure) == ["Input", "start 0 (all blocks)"] + [f"start {s}" for s in range(1, depth - 1)] \
        + [f"start {depth - 1} (last block)"]
    with pytest.raises(ValueError, match="do not chain blocks"):
        make_figure("layers", methods=["attention"])


def test_segmentation_figure_scores_the_mean_threshold_masks(model):
    result = make_figure("segmentation", methods=["transformer_attribution", "rollout"], samples=2)
    from relevance.data import render_scene

    scenes = [render_scene(10_000_000 + i, 64) for i in range(2)]
    x = (torch.stack([torch.from_numpy(s.image.transpose(2, 0, 1).copy()) for s in scenes]).float() / 255 - .5) / .5
    for method in ("transformer_attribution", "rollout"):
        e = relevance.explain(model, x, method=method, start_layer=1)
        masks = torch.from_numpy(np.stack([s.mask_for(int(c)) for s, c in zip(scenes, e.target)]))
        maps = torch.nn.functional.interpolate(e.relevance[:, None].float(), size=(64, 64), mode="bilinear")[:, 0]
        stats = segmentation_statistics(maps, masks)
        assert result.data["foreground_iou"][method] == pytest.approx(
            (stats["intersection"][:, 1] / stats["union"][:, 1]).tolist())


def test_files_are_deterministic_png_and_pdf(tmp_path, capsys):
    args = ["figures", "layers", "--inputs", str(TWO_OBJECTS), "--methods", "rollout"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "layers:" in capsys.readouterr().out
    for name in ("layers.png", "layers.pdf", "layers.json"):
        first, second = (tmp_path / d / name for d in "ab")
        assert first.stat().st_size > 100 and first.read_bytes() == second.read_bytes(), name
    assert (tmp_path / "a" / "layers.pdf").read_bytes().startswith(b"%PDF")
    from PIL import Image

    with Image.open(tmp_path / "a" / "layers.png") as image:
        assert image.mode == "P" and image.width > 600  # a palette PNG, small enough for the README
    assert main([*args, "--formats", "png", "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["layers.json", "layers.png"]


def test_unavailable_families_give_a_clear_error(tmp_path, capsys, monkeypatch):
    assert main(["figures", "image-text", "--model", "no-such-clip", "--out", str(tmp_path)]) == 2
    assert "error: image-text: unknown model 'no-such-clip'" in capsys.readouterr().err
    assert main(["figures", "image-text", "--model", "shapes-vit", "--out", str(tmp_path)]) == 2  # no texts
    assert "'shapes-vit' is not an image-text model" in capsys.readouterr().err
    assert main(["figures", "text", "--model", "shapes-vit", "--out", str(tmp_path)]) == 2  # not a text model
    assert "'shapes-vit' is not a text classifier" in capsys.readouterr().err
    # an installation without the embedded CLIP (simulated): the figure says what it needs, `all` skips it
    from relevance.models import registry

    registry._ensure_registered()
    monkeypatch.setattr(registry, "_EMBEDDED", {k: v for k, v in registry._EMBEDDED.items() if k != "shapes-clip"})
    assert main(["figures", "image-text", "--out", str(tmp_path)]) == 2
    assert "needs an image-text model: the CLIP family" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ the text figure, offline
def test_text_figure_on_the_embedded_text_model(tmp_path, capsys):
    from relevance.data.reviews import generate_reviews
    from relevance.figures.text import MIXED_REVIEW, REVIEWS, heatmap_options
    from relevance.models.reviews import load_embedded

    methods = ["transformer_attribution", "attnlrp", "attention_gradcam", "rollout", "attention"]
    result = make_figure("text", methods=methods)
    data = result.data
    model = load_embedded()
    reviews = [generate_reviews(1, seed, start=index)[0] for seed, index in REVIEWS]
    mixed = generate_reviews(1, MIXED_REVIEW[0], start=MIXED_REVIEW[1])[0]
    assert data["sentences"] == [r.text for r in reviews] and data["mixed"] == mixed.text
    assert mixed.kind == "contrast" and " , but " in mixed.text  # a sentence of mixed sentiment from the world
    assert data["classes"] == [0, 1] and data["class_names"] == ["negative", "positive"]
    pictures = _pictures(result.figure)
    assert len(pictures) == len(methods) * (len(reviews) + 2)

    def drawn(columns: int) -> dict:  # the heatmaps as the figure should draw them: no [CLS] / [SEP], no legend
        return dict(width=heatmap_options(columns)["width"], font_size=22, legend=False, show_special=False)

    part1 = {m: relevance.explain(model, data["sentences"], method=m) for m in methods}
    part2 = {m: relevance.explain(model, [mixed.text] * 2, method=m, target=[0, 1]) for m in methods}
    for row, method in enumerate(methods):
        first, second = part1[method], part2[method]
        # part 1: every cell is the engine's map of the predicted class (each review's label here), drawn as the
        # engine draws it
        assert data["targets"][method] == first.logits.argmax(-1).tolist() == [r.label for r in reviews]
        for i in range(len(reviews)):
            assert data["scores"][method][i] == first.maps["text"].scores(i).tolist()
            assert np.array_equal(pictures[row * 3 + i], first.maps["text"].png(i, **drawn(3)))
        # part 2: the mixed sentence explained for each class
        for c in (0, 1):
            assert data["class_rows"][method][c] == second.maps["text"].scores(c).tolist()
            assert np.array_equal(pictures[3 * len(methods) + row * 2 + c],
                                  second.maps["text"].png(c, **drawn(2)))
    assert data["class_rows_differ"] == {"transformer_attribution": True, "attnlrp": True,
                                         "attention_gradcam": True, "rollout": False, "attention": False}
    assert data["class_rows"]["attention"][0] == data["class_rows"]["attention"][1]
    # class-specific in content: attention Grad-CAM's two maps peak on the two clauses' opinion words, one each
    top = [max(part2["attention_gradcam"].maps["text"].words(c), key=lambda w: w[1])[0] for c in (0, 1)]
    assert sorted(top) == ["awful", "wonderful"]
    assert main(["figures", "text", "--methods", "rollout", "--formats", "png", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.json", "text.png"]
    assert "text:" in capsys.readouterr().out


# ------------------------------------------------------------------- the image-text figure, offline
def test_image_text_figure_on_the_embedded_clip_grounds_each_caption(tmp_path, capsys):
    from relevance.data.shapes import COLOURS, SHAPE_CLASSES, render_scene
    from relevance.figures.image_text import _HEATMAP

    methods = ["gradient_rollout", "transformer_attribution"]
    result = make_figure("image-text", methods=methods)
    captions = ["a photo of an orange cross", "a photo of a green star", "a photo of a blue ring",
                "a photo of a red circle"]  # each object of the scene, then one it does not have
    assert result.data["captions"] == captions
    pictures = _pictures(result.figure)
    assert len(pictures) == len(captions) * 2 * len(methods)  # per caption and method: image map, token heatmap
    model = relevance.models.create("shapes-clip")
    image = load_image(THREE_OBJECTS)
    scene = render_scene(20000001, 128)  # the example is this held-out scene: its object masks are known
    assert np.array_equal(scene.image, image)
    masks = torch.from_numpy(np.stack(scene.masks)).double()  # (3, 128, 128): cross, star, ring
    for m, method in enumerate(methods):
        expected = relevance.explain(model, [image] * 4, texts=captions, method=method)
        assert result.data["scores"][method] == expected.scores.tolist()
        torch.testing.assert_close(result.data["image_maps"][method], expected.maps["image"].values)
        for k in range(4):
            row = pictures[k * 2 * len(methods) + 2 * m: k * 2 * len(methods) + 2 * m + 2]
            assert np.array_equal(row[0], display_overlay(expected.maps["image"], k))
            assert np.array_equal(row[1], expected.maps["text"].png(k, **_HEATMAP))
        # content: the image map of a caption naming an object puts more of its mass on that object than on any
        # other object of the scene (at least twice as much), the map of each caption on its own object
        maps = torch.nn.functional.interpolate(result.data["image_maps"][method][:, None].double(), size=(128, 128),
                                               mode="bilinear", align_corners=False)[:, 0].clamp(min=0)
        share = (maps[:, None] * masks[None]).sum((-2, -1)) / maps.sum((-2, -1))[:, None]  # (caption, object)
        for k in range(3):
            others = [share[k, j] for j in range(3) if j != k]
            assert share[k, k] > 2 * max(others), (method, captions[k], share[k].tolist())
        # the caption's own colour or shape word is its most relevant word
        for k in range(3):
            top = max(expected.maps["text"].words(k), key=lambda w: w[1])[0]
            assert top in captions[k].split()[-2:] and top in (*COLOURS, *SHAPE_CLASSES), (method, k, top)
    # the present objects match the image better than the absent red circle
    assert min(result.data["scores"]["gradient_rollout"][:3]) > result.data["scores"]["gradient_rollout"][3]
    assert main(["figures", "image-text", "--methods", "gradient_rollout", "--formats", "png", "--out",
                 str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image-text.json", "image-text.png"]
    assert "image-text:" in capsys.readouterr().out


def test_a_figure_plugs_in_with_one_registry_entry(monkeypatch, tmp_path, capsys):
    import sys
    import types

    import relevance.figures as figures
    from relevance.figures.style import row_figure

    module = types.ModuleType("toy_figure")
    module.TITLE = "a toy"
    module.make = lambda request: figures.FigureResult(
        row_figure([("row", [np.zeros((10, 20, 3), np.uint8)])], column_widths=[2.0], title=request.texts[0]),
        {"texts": request.texts})
    monkeypatch.setitem(sys.modules, "toy_figure", module)
    monkeypatch.setitem(figures.FIGURES, "toy", figures.FigureSpec("toy", "toy_figure", "a toy"))
    assert main(["figures", "toy", "--texts", "hello", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.json", "toy.pdf", "toy.png"]
