"""``relevance views`` and ``relevance flows``: the files they write, and their errors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from relevance.cli import main
from test_flows import SCENE

OTHER = "assets/examples/scene-20000011_purple-triangle.png"


def test_views_writes_each_kind_per_image(tmp_path, capsys):
    for kind in ("head", "model", "neuron", "grid"):
        assert main(["views", kind, SCENE, OTHER, "--model", "shapes-vit", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.split("/")[-1] for p in printed)
    stems = ("scene-20000004_green-square_magenta-triangle_red-circle", "scene-20000011_purple-triangle")
    expected = sorted(f"{s}__{k}" for s in stems for k in ("head.html", "model.html", "model.png", "neuron.html",
                                                          "grid.png"))
    assert names == expected and sorted(p.name for p in tmp_path.iterdir()) == expected
    head = (tmp_path / f"{stems[1]}__head.html").read_text()
    assert head.startswith("<!DOCTYPE html>") and "rv-head" in head and "[CLS]" in head and "<svg" in head
    grid = np.asarray(Image.open(tmp_path / f"{stems[0]}__grid.png"))
    assert grid.shape[0] > 4 * 112 and grid.shape[1] > 4 * 112


def test_flows_writes_one_model_or_a_comparison(tmp_path, capsys):
    assert main(["flows", SCENE, "--out", str(tmp_path), "--heads", "0,2", "--output", "5"]) == 0
    assert main(["flows", SCENE, "--compare", "shapes-vit", "--names", "embedded,again", "--weights", "gradient",
                 "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    stem = "scene-20000004_green-square_magenta-triangle_red-circle"
    assert written == [f"{stem}__flow-comparison.html", f"{stem}__flow-comparison.png", f"{stem}__flow.html",
                       f"{stem}__flow.png"]
    page = (tmp_path / f"{stem}__flow-comparison.html").read_text()
    assert "embedded" in page and "again" in page and page.count('class="rv-flow-svg"') == 3


def test_text_views_use_the_embedded_text_model_and_images_need_an_image_model(tmp_path, capsys):
    assert main(["views", "neuron", "--text", "the acting was wonderful", "--out", str(tmp_path)]) == 0
    (page,) = tmp_path.iterdir()
    assert page.name == "the-acting-was-wonderful__neuron.html"
    assert "wonderful" in page.read_text() and "reviews-bert" in page.read_text()
    assert main(["views", "head", "--text", "the acting was not dull .", "--out", str(tmp_path / "head")]) == 0
    head = (tmp_path / "head" / "the-acting-was-not-dull__head.html").read_text()
    tokens = ["[CLS]", "the", "acting", "was", "not", "dull", ".", "[SEP]"]  # reviews-bert's pieces, in order
    positions = [head.index(f">{token}<") for token in tokens]
    assert positions == sorted(positions) and "rv-head" in head and "<svg" in head
    assert main(["views", "head", "--model", "shapes-vit", "--text", "a film", "--out", str(tmp_path / "x")]) == 2
    assert "no text stream" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_usage_errors(tmp_path, capsys):
    assert main(["views", "head", "--out", str(tmp_path)]) == 2
    assert "give image files" in capsys.readouterr().err
    assert main(["views", "head", "missing.png", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["views", "grid", SCENE, "--layer", "9", "--out", str(tmp_path)]) == 2
    assert main(["views", "head", SCENE, "--text", "x", "--out", str(tmp_path)]) == 2
    assert main(["flows", SCENE, "--heads", "a", "--out", str(tmp_path)]) == 2
    assert main(["flows", SCENE, "--compare", "no-such-model", "--out", str(tmp_path)]) == 2
    assert main(["views", "mosaic", SCENE]) == 2
