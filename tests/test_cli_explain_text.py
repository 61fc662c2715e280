"""End-to-end tests of ``relevance explain --text`` (through ``relevance.cli.main``) on the embedded reviews-bert: the
printed probabilities and every file equal what ``relevance.explain`` gives for the same batch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import relevance
from relevance import cli
from relevance.cli.explain import overlay_label
from relevance.models.reviews import load_embedded
from relevance.render import annotate
from relevance.render.text import text_heatmap_document

NOT_DULL = "the acting was not dull ."
MIXED = "the music was wonderful , but the plot felt really tedious ."
TOO_LONG = " ".join(["the film was great ."] * 13)  # 65 words: 67 tokens with [CLS] and [SEP]


@pytest.fixture(scope="module")
def model():
    return load_embedded()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_texts_are_explained_in_one_batch_with_files_and_probabilities_of_the_engine(model, tmp_path, capsys,
                                                                                      monkeypatch):
    calls = []
    real_explain = relevance.explain
    monkeypatch.setattr(relevance, "explain", lambda m, inputs, **kw: calls.append(list(inputs)) or
                        real_explain(m, inputs, **kw))
    out = tmp_path / "out"
    code, printed, err = _run(["explain", "--text", NOT_DULL, "--text", "", "--text", MIXED, "--text", TOO_LONG,
                               "--model", "reviews-bert", "--out", str(out)], capsys)
    assert code == 1  # two texts could not be explained; the others were
    assert calls == [[NOT_DULL, MIXED]]  # one batch
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ['error: text 2 "": the text is empty: there is nothing to explain',
                      'error: text 4 "the film was great . the film was great…": 67 tokens, but reviews-bert takes '
                      'at most 64 (special tokens included): shorten the text']
    expected = real_explain(model, [NOT_DULL, MIXED], method="transformer_attribution", start_layer=0)
    names = model.class_names
    for i, (number, text, slug) in enumerate([(1, NOT_DULL, "the-acting-was-not-dull"),
                                              (3, MIXED, "the-music-was-wonderful-but-the-plot-fel")]):
        probabilities = expected.probabilities[i]
        top = int(probabilities.argmax())
        order = probabilities.argsort(descending=True).tolist()
        line = ", ".join(f"{names[c]} {float(probabilities[c]):.1%}" for c in order)
        assert f'text {number} "{text[:39].rstrip()}' in printed and f": {line}\n" in printed
        stem = out / f"{slug}__1_{names[top]}__transformer_attribution"
        label = overlay_label(names[top], 1, float(probabilities[top]), "transformer_attribution")
        fragment = expected.maps["text"].html(i, words=False, show_special=False)
        page = stem.with_suffix(".html").read_text()
        assert page == text_heatmap_document([fragment], [label], title="Token relevance · transformer_attribution")
        assert "[CLS]" not in page and f'title="{text.split()[1]}: ' in page  # exact scores, no special tokens
        picture = annotate(expected.maps["text"].png(i, width=800, words=False, show_special=False), label,
                           position="top")
        np.testing.assert_array_equal(_png(stem.with_suffix(".png")), picture)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}__1_{c}__transformer_attribution.{e}" for s, c in [("the-acting-was-not-dull", "positive"),
                                                                ("the-music-was-wonderful-but-the-plot-fel",
                                                                 "negative")] for e in ("html", "png"))
    assert "wrote 2 heatmaps (HTML and PNG)" in printed


def test_top_k_words_signed_maps_and_no_label(model, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, err = _run(["explain", "--text", MIXED, "--text", MIXED, "--model", "reviews-bert", "--top-k", "2",
                               "--method", "attnlrp", "--words", "--no-label", "--batch-size", "1", "--out",
                               str(out)], capsys)
    assert code == 0, err
    logits = relevance.explain(model, MIXED, method="attention").logits[0]
    ranked = logits.argsort(descending=True).tolist()
    expected = relevance.explain(model, [MIXED, MIXED], method="attnlrp", target=ranked)  # one call: both classes
    assert expected.maps["text"].signed
    for rank, cls in enumerate(ranked, start=1):
        for stem in ("the-music-was-wonderful-but-the-plot-fel", "the-music-was-wonderful-but-the-plot-fel-2"):
            base = out / f"{stem}__{rank}_{model.class_names[cls]}__attnlrp"
            fragment = expected.maps["text"].html(rank - 1, words=True, show_special=False)
            assert base.with_suffix(".html").read_text() == text_heatmap_document(
                [fragment], None, title="Token relevance · attnlrp")  # no label: no caption
            assert "signed: blue negative, red positive" in fragment  # diverging, centred on 0
            np.testing.assert_array_equal(_png(base.with_suffix(".png")), expected.maps["text"].png(
                rank - 1, width=800, words=True, show_special=False))  # no label band
    assert len(list(out.iterdir())) == 8
    assert printed.count(f'text 1 "{MIXED[:39].rstrip()}…": ') == 1 and "text 2" in printed


def test_target_by_name_and_the_default_model_offline(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, printed, err = _run(["explain", "--text", NOT_DULL, "--target", "NEGATIVE", "--method", "rollout",
                               "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert err.count("using the embedded model 'reviews-bert'") == 1  # the text default, offline
    (html,) = tmp_path.glob("*.html")
    assert html.name == "the-acting-was-not-dull__2_negative__rollout.html"  # the runner-up class, as asked
    expected = relevance.explain(model, [NOT_DULL], method="rollout", target=0)
    assert expected.maps["text"].html(0, words=False, show_special=False) in html.read_text()
    code, _, err = _run(["explain", "--text", NOT_DULL, "--model", "reviews-bert", "--target", "negativ",
                         "--out", str(tmp_path)], capsys)
    assert code == 2 and "close" in err and "negative" in err


def test_texts_and_images_need_the_right_model(tmp_path, capsys):
    scene = "assets/examples/scene-20000004_green-square_magenta-triangle_red-circle.png"
    code, _, err = _run(["explain", "--text", NOT_DULL, "--model", "shapes-vit", "--out", str(tmp_path)], capsys)
    assert code == 2 and "error: shapes-vit is not a text classifier: --text needs one" in err
    code, _, err = _run(["explain", scene, "--model", "reviews-bert", "--out", str(tmp_path)], capsys)
    assert code == 2 and "error: reviews-bert is a text model: give --text TEXT instead of image files" in err
    # images with --text are image-text pairs (tests/test_cli_explain_image_text.py): a text classifier cannot
    code, _, err = _run(["explain", scene, "--text", NOT_DULL, "--model", "reviews-bert", "--out", str(tmp_path)],
                        capsys)
    assert code == 2 and "error: reviews-bert is a text classifier: images with --text or --labels need an " \
                         "image-text model" in err
    code, _, err = _run(["explain", "--text", NOT_DULL, "--model", "shapes-clip", "--out", str(tmp_path)], capsys)
    assert code == 2 and "error: shapes-clip is an image-text model: give image files or folders with --text" in err
    code, _, err = _run(["explain", "--out", str(tmp_path)], capsys)
    assert code == 2 and "give image files or folders (with --text CAPTION or --labels for an image-text model), " \
                         "or --text TEXT" in err
    assert not list(tmp_path.iterdir())


def test_texts_outside_the_reviews_world_get_one_warning(tmp_path, capsys):
    code, printed, err = _run(["explain", "--text", "quantum chromodynamics rules", "--text", NOT_DULL,
                               "--text", "stock markets fell sharply", "--model", "reviews-bert", "--out",
                               str(tmp_path)], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: 2 of 3 texts (text 1, 3): not from the "
                                                         "procedural reviews world")
    assert re.search(r"wrote 3 heatmaps", printed)
