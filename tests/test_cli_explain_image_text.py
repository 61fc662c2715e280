"""End-to-end tests of ``relevance explain IMAGE... --text CAPTION`` and ``--labels`` (through ``relevance.cli.main``)
on the embedded shapes-clip: each pair's files hold the engine's maps of *that* image and caption, the printed logits
and rankings are the model's, and misuse is a clear usage error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import relevance
import relevance.models
from relevance import cli
from relevance.cli.explain_image_text import pair_label
from relevance.images import load_image, prepare
from relevance.models.clip import similarity_matrix, zero_shot
from relevance.render import annotate, overlay
from relevance.render.text import text_heatmap_document

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
THREE = EXAMPLES / "scene-20000001_orange-cross_green-star_blue-ring.png"
STAR = EXAMPLES / "scene-20000002_purple-star.png"
METHOD = "gradient_rollout"


@pytest.fixture(scope="module")
def model():
    return relevance.models.create("shapes-clip")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _expected(model, paths: list[Path], captions: list[str], **kwargs):
    rgbs = [load_image(p) for p in paths]
    batch = prepare(rgbs, model.data_config)
    return rgbs, batch.geometries, relevance.explain(model, batch.pixels, texts=captions, method=METHOD, **kwargs)


def _check_pair(out: Path, stem: str, explanation, index: int, rgb, geometry, label: str) -> None:
    """The overlay and the heatmap under ``stem`` are sample ``index`` of ``explanation``, drawn as the CLIs draw."""
    picture = annotate(overlay(rgb, explanation.maps["image"].values[index], geometry, colormap="jet", alpha=0.5),
                       label, position="top")
    np.testing.assert_array_equal(_png(out / f"{stem}__{METHOD}.png"), picture)
    text_map = explanation.maps["text"]
    options = dict(words=False, show_special=False)
    page = (out / f"{stem}__{METHOD}__text.html").read_text()
    assert page == text_heatmap_document([text_map.html(index, **options)], [label],
                                         title=f"Token relevance · {METHOD}")
    heatmap = annotate(text_map.png(index, width=800, **options), label, position="top")
    np.testing.assert_array_equal(_png(out / f"{stem}__{METHOD}__text.png"), heatmap)


def test_one_image_against_several_captions_gives_each_caption_its_own_files(model, tmp_path, capsys):
    star, ring = "a photo of a green star", "a photo of a blue ring"
    out = tmp_path / "out"
    code, printed, err = _run(["explain", str(THREE), "--model", "shapes-clip", "--text", star, "--text", ring,
                               "--method", METHOD, "--out", str(out)], capsys)
    assert code == 0, err
    rgbs, geometries, expected = _expected(model, [THREE, THREE], [star, ring])
    logits = similarity_matrix(model, [load_image(THREE)], [star, ring])[0]
    torch.testing.assert_close(expected.scores.float(), logits.float(), rtol=1e-4, atol=1e-4)
    for k, (caption, slug) in enumerate([(star, "a-photo-of-a-green-star"), (ring, "a-photo-of-a-blue-ring")]):
        assert f'text {k + 1} "{caption}": logit {float(logits[k]):.2f}\n' in printed
        label = pair_label(caption, float(expected.scores[k]), METHOD)
        _check_pair(out, f"{THREE.stem}__{slug}", expected, k, rgbs[k], geometries[k], label)
    # the two captions' maps differ: a swapped file would fail above
    assert not torch.allclose(expected.maps["image"].values[0], expected.maps["image"].values[1])
    assert len(list(out.iterdir())) == 6 and "wrote 2 explained pairs" in printed


def test_equal_counts_are_pairs_and_one_caption_broadcasts(model, tmp_path, capsys):
    star, ring = "a photo of a purple star", "a photo of a blue ring"
    out = tmp_path / "pairs"
    code, printed, err = _run(["explain", str(STAR), str(THREE), "--model", "shapes-clip", "--text", star,
                               "--text", ring, "--method", METHOD, "--no-label", "--batch-size", "1", "--out",
                               str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}__{METHOD}{suffix}" for stem in (f"{STAR.stem}__a-photo-of-a-purple-star",
                                                 f"{THREE.stem}__a-photo-of-a-blue-ring")
        for suffix in (".png", "__text.html", "__text.png"))
    logits = similarity_matrix(model, [load_image(STAR), load_image(THREE)], [star, ring])
    assert f'{STAR}: text 1 "{star}": logit {float(logits[0, 0]):.2f}' in printed
    assert f'{THREE}: text 2 "{ring}": logit {float(logits[1, 1]):.2f}' in printed
    out = tmp_path / "broadcast"
    code, printed, err = _run(["explain", str(STAR), str(THREE), "--model", "shapes-clip", "--text", star,
                               "--method", METHOD, "--out", str(out)], capsys)
    assert code == 0, err
    rgbs, geometries, expected = _expected(model, [STAR, THREE], [star, star])
    for k, path in enumerate([STAR, THREE]):
        assert f'{path}: text 1 "{star}": logit {float(logits[k, 0]):.2f}' in printed
        _check_pair(out, f"{path.stem}__a-photo-of-a-purple-star", expected, k, rgbs[k], geometries[k],
                    pair_label(star, float(expected.scores[k]), METHOD))


def test_labels_are_ranked_and_the_best_prompts_explained(model, tmp_path, capsys):
    labels = ["red circle", "green star", "blue ring", "orange cross", "purple star"]
    out = tmp_path / "out"
    code, printed, err = _run(["explain", str(THREE), str(STAR), "--model", "shapes-clip", "--labels",
                               ",".join(labels), "--top-k", "2", "--method", METHOD, "--out", str(out)], capsys)
    assert code == 0, err
    ranked = zero_shot(model, [load_image(THREE), load_image(STAR)], labels, template="a photo of a {}")
    assert ranked.prompts[0] == "a photo of a red circle"  # the shapes CLIP's own prompt, not CLIP's "...{}."
    best = ranked.ranking[:, :2]
    assert {labels[int(j)] for j in best[0]} <= {"green star", "blue ring", "orange cross"}
    assert labels[int(best[1, 0])] == "purple star"
    for i, path in enumerate([THREE, STAR]):
        line = ", ".join(f"{name} {p:.1%}" for name, p in ranked.top(3)[i])
        assert f"{path}: {line}\n" in printed
    rgbs, geometries, expected = _expected(model, [THREE, THREE, STAR, STAR], ranked.prompts,
                                           target=best.reshape(-1).tolist())
    probabilities = ranked.probabilities
    for sample, (i, path) in enumerate([(0, THREE), (0, THREE), (1, STAR), (1, STAR)]):
        rank, j = sample % 2 + 1, int(best[i, sample % 2])
        label = pair_label(labels[j], float(expected.scores[sample]), METHOD, rank, float(probabilities[i, j]))
        _check_pair(out, f"{path.stem}__{rank}_{labels[j].replace(' ', '-')}", expected, sample, rgbs[sample],
                    geometries[sample], label)
    assert len(list(out.iterdir())) == 12
    # --top-k 1 (the default) takes the adapter's own choice, target="best": the same rank-1 files
    code, printed, err = _run(["explain", str(STAR), "--model", "shapes-clip", "--labels", ",".join(labels),
                               "--method", METHOD, "--out", str(tmp_path / "best")], capsys)
    assert code == 0, err
    (overlay_png,) = (tmp_path / "best").glob("*__gradient_rollout.png")
    assert overlay_png.name == f"{STAR.stem}__1_purple-star__{METHOD}.png"
    np.testing.assert_array_equal(_png(overlay_png), _png(out / overlay_png.name))


def test_image_text_usage_errors(tmp_path, capsys):
    scene, caption = str(THREE), "a photo of a red circle"
    cases = [
        ([scene, "--text", caption, "--model", "shapes-vit"], "error: shapes-vit is an image classifier: images with "
                                                              "--text or --labels need an image-text model"),
        ([scene, "--text", caption, "--model", "reviews-bert"], "error: reviews-bert is a text classifier"),
        ([scene, "--model", "shapes-clip"], "error: shapes-clip is an image-text model: give the images with --text "
                                            "CAPTION"),
        (["--text", caption, "--model", "shapes-clip"], "error: shapes-clip is an image-text model: give image "
                                                        "files or folders with --text CAPTION"),
        ([scene, scene, scene, "--text", caption, "--text", caption, "--model", "shapes-clip"],
         "error: 3 images and 2 captions cannot be paired"),
        ([scene, "--text", caption, "--model", "shapes-clip", "--method", "nope"], "error: unknown method 'nope'"),
        ([scene, "--text", caption, "--labels", "red circle", "--model", "shapes-clip"], "not both"),
        (["--labels", "red circle", "--model", "shapes-clip"], "give image files or folders"),
        ([scene, "--labels", "red circle,,blue star", "--model", "shapes-clip"], "empty label (label 2"),
        ([scene, "--labels", "red circle", "--template", "a photo", "--model", "shapes-clip"], "needs '{}'"),
        ([scene, "--labels", "red dog", "--model", "shapes-clip"], "does not know: dog"),
        ([scene, "--labels", "red circle,blue star", "--top-k", "3", "--model", "shapes-clip"],
         "--top-k 3 exceeds the 2 labels"),
        ([scene, "--text", caption, "--top-k", "2", "--model", "shapes-clip"], "--top-k ranks the --labels"),
        ([scene, "--text", caption, "--target", "1", "--model", "shapes-clip"], "--target picks a class"),
        ([scene, "--template", "a {}"], "--template makes the prompts of --labels"),
    ]
    for args, message in cases:
        code, _, err = _run(["explain", *args, "--out", str(tmp_path)], capsys)
        assert code == 2 and message in err, (args, err)
    assert not list(tmp_path.iterdir())


def test_bad_captions_are_skipped_with_the_maximum_and_the_default_model_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    too_long = " ".join(["a red circle"] * 7)  # 21 words: 23 tokens with start and end, the context holds 20
    code, printed, err = _run(["explain", str(THREE), "--text", "", "--text", too_long, "--text",
                               "a photo of a blue ring", "--method", METHOD, "--out", str(tmp_path)], capsys)
    assert code == 1  # two captions could not be explained; the third was
    assert err.count("using the embedded model 'shapes-clip'") == 1  # the image-text default, offline
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ['error: text 1 "": the caption is empty: there is nothing to explain',
                      'error: text 2 "a red circle a red circle a red circle…": 23 tokens, but shapes-clip takes '
                      'at most 20 (start and end tokens included): shorten the caption']
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{THREE.stem}__a-photo-of-a-blue-ring__{METHOD}{s}" for s in (".png", "__text.html", "__text.png")]
    assert "wrote 1 explained pair " in printed
