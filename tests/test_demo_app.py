"""The Gradio demo without a browser: its handlers, its model catalog, its CLI and its HTTP API.

Every overlay the app returns is compared with :meth:`relevance.Explanation.overlay` computed
directly for the same input, so these tests check that the app shows the right explanation, not
only that it answers. A tiny random ViT keeps them fast; the API tests talk to a real server on
127.0.0.1 through ``gradio_client``.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import relevance.models as models  # noqa: E402
import relevance  # noqa: E402
from demos import app as demo_app  # noqa: E402
from demos import app_engine  # noqa: E402
from demos import app_models  # noqa: E402
from demos.app_common import OverlayFiles, class_name_placeholder, match_class_name  # noqa: E402
from demos.app_image import (METHOD_CAPTIONS, METHOD_LABELS, ImageClassificationHandlers, ModelHints,  # noqa: E402
                             method_caption)
from demos.app_models import EMBEDDED_LABEL, OFFLINE_REASON, HubModel, ModelCatalog, load_catalog  # noqa: E402
from relevance.labels import resolve_class  # noqa: E402
from relevance.models.embedded import load_embedded  # noqa: E402
from demos.app_testing import free_port, serving, tiny_vit  # noqa: E402
from relevance.render import COLORMAPS, DIVERGING_COLORMAPS, colorbar, overlay as draw_overlay  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "assets" / "samples"
SHAPES_EXAMPLE = sorted((REPO / "assets" / "examples").glob("*.png"))[0]
pytestmark = [  # gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]
ALL_METHODS = app_engine.method_names()  # the engine's methods but the expensive gradient/perturbation ones
TINY = "tiny test ViT"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_vit(depth=3)


@pytest.fixture(scope="module")
def demo_handlers(tiny_model, tmp_path_factory):
    catalog = ModelCatalog.from_models({TINY: tiny_model})
    return ImageClassificationHandlers(catalog, OverlayFiles(tmp_path_factory.mktemp("overlays")))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Test images: non-square RGB, greyscale, RGBA, 16-bit greyscale, and a file that is no image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    height, width = 60, 90
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], axis=-1).astype(np.uint8)
    rgb[10:30, 50:80] = (240, 30, 30)
    other = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    paths = {
        "rgb": folder / "photo.png",
        "other": folder / "noise.png",
        "grey": folder / "grey.png",
        "rgba": folder / "alpha.png",
        "grey16": folder / "grey16.png",
        "bad": folder / "holiday.png",
        "truncated": folder / "cut.png",
    }
    Image.fromarray(rgb).save(paths["rgb"])
    Image.fromarray(other).save(paths["other"])
    Image.fromarray(rgb[..., 0]).save(paths["grey"])
    Image.fromarray(np.dstack([rgb, np.full((height, width), 128, np.uint8)])).save(paths["rgba"])
    Image.fromarray((yy * 1000 + xx).astype(np.uint16)).save(paths["grey16"])
    paths["bad"].write_bytes(b"this is not an image at all\n" * 10)
    paths["truncated"].write_bytes(paths["other"].read_bytes()[:200])
    return paths


def direct_overlay(model, path, method, target=None, start_layer=0, alpha=0.5, colormap="jet"):
    """The reference: the engine's own overlay for the same input. Full LRP maps are signed: drawn
    centred on 0 with a diverging colour map (the chosen one if it is diverging, else "bwr")."""
    explanation = relevance.explain(model, str(path), method=method, target=target, start_layer=start_layer)
    if not relevance.get_method(method).signed:
        return explanation.overlay(0, colormap=colormap, alpha=alpha), explanation
    diverging = colormap if colormap in DIVERGING_COLORMAPS else "bwr"
    picture = draw_overlay(
        explanation.originals[0], explanation.relevance[0], explanation.geometries[0],
        colormap=diverging, alpha=alpha, signed=True,
    )
    return picture, explanation


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


# ------------------------------------------------------------------------------------ handlers


@pytest.mark.parametrize("method", ["transformer_attribution", "lrp", "gradient_rollout"])
def test_explain_returns_the_engines_overlay_at_the_images_size(demo_handlers, tiny_model, images, method):
    overlay, top_k, download, status, colour_bar = demo_handlers.explain(
        str(images["rgb"]), TINY, method, None, "", 1, 0.6, "inferno"
    )
    expected, explanation = direct_overlay(
        tiny_model, images["rgb"], method, start_layer=1, alpha=0.6, colormap="inferno"
    )
    original = np.asarray(Image.open(images["rgb"]).convert("RGB"))
    assert overlay.shape == original.shape == (60, 90, 3)
    np.testing.assert_array_equal(overlay, expected)
    assert np.abs(overlay.astype(int) - original).mean() > 5, "the overlay must differ from the input"
    np.testing.assert_array_equal(read_png(download), overlay)
    assert Path(download).name == f"photo_{method}_{tiny_model.class_names[int(explanation.target[0])]}.png"
    probabilities = explanation.probabilities[0].numpy()
    best = int(probabilities.argmax())
    assert next(iter(top_k)) == tiny_model.class_names[best]
    assert top_k[tiny_model.class_names[best]] == pytest.approx(float(probabilities[best]), abs=1e-6)
    assert METHOD_LABELS[method] in status and "start layer 1" in status
    expected_bar = colorbar("bwr", 480, 88, signed=True) if method == "lrp" else colorbar("inferno", 480, 88)
    np.testing.assert_array_equal(colour_bar, expected_bar)


def test_signed_maps_are_centred_on_zero_with_a_diverging_colour_map(demo_handlers, tiny_model, images):
    """Full LRP is signed: its overlay uses only a diverging map's colours, scaled so that 0 is the
    centre colour (not min-max, which would make 0 some arbitrary colour); the colour bar says so."""
    explanation = relevance.explain(tiny_model, str(images["rgb"]), method="lrp")
    relevance_map = explanation.relevance[0]
    assert relevance_map.min() < 0 < relevance_map.max(), "the test needs a map with both signs"
    for chosen, used in (("jet", "bwr"), ("coolwarm", "coolwarm")):
        overlay, _, _, _, colour_bar = demo_handlers.explain(str(images["rgb"]), TINY, "lrp", None, "", 0, 1.0, chosen)
        table = COLORMAPS[used]
        palette = {tuple(c) for c in table}
        assert {tuple(c) for c in overlay.reshape(-1, 3)} <= palette
        min_max = draw_overlay(
            explanation.originals[0], relevance_map, explanation.geometries[0], colormap=used, alpha=1.0
        )
        assert not np.array_equal(overlay, min_max)
        height = colour_bar.shape[0]
        assert tuple(colour_bar[0, 0]) == tuple(table[255]) and tuple(colour_bar[-1, 0]) == tuple(table[0])
        assert tuple(colour_bar[height // 2, 0]) == tuple(table[128])  # the colour of 0
    # Unsigned methods keep the chosen map and min-max normalisation.
    overlay, *_, colour_bar = demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "", 0, 1.0, "jet")
    np.testing.assert_array_equal(overlay, direct_overlay(tiny_model, images["rgb"], "rollout", alpha=1.0)[0])
    assert tuple(colour_bar[0, 0]) == tuple(COLORMAPS["jet"][255])


def test_a_new_image_clears_the_previous_results(demo_handlers):
    classes, top_k, status, overlay, colour_bar, gallery, download = demo_handlers.clear_results(
        {"path": "/tmp/new.png", "orig_name": "new.png"}
    )
    assert classes["choices"] == [] and classes["value"] is None
    assert top_k is None and overlay is None and colour_bar is None and download is None and gallery == []
    assert "Top prediction" not in status and "for class" not in status
    assert demo_handlers.clear_results(None)[2] == "Upload an image or pick an example."


def test_every_new_image_clears_the_results_before_it_is_predicted(tiny_model):
    """Upload, clear and example clicks first run clear_results on every result component, then predict."""
    app = demo_app.build_app({TINY: tiny_model}, shapes_examples=[str(REPO / "assets" / "examples" / name)
                             for name in ("scene-20000002_purple-star.png",)], photo_examples=[])
    config = app.get_config_file()
    elem_ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    dependencies = {d["id"]: d for d in config["dependencies"]}
    results = {"overlay-output", "overlay-colorbar", "compare-gallery", "download-button", "top-k", "status"}
    clears = [d for d in dependencies.values() if results <= {elem_ids[o] for o in d["outputs"]}]
    assert len(clears) == 3  # upload, clear, example click
    triggers = {(elem_ids.get(t[0]), t[1]) for d in clears for t in d["targets"]}
    assert {("image-input", "upload"), ("image-input", "clear")} <= triggers
    for clear in clears:
        followers = [d for d in dependencies.values() if d.get("trigger_after") == clear["id"]]
        assert [elem_ids[o] for o in followers[0]["outputs"]] == ["class-select", "top-k", "status"]
    upload_predict = [d for d in dependencies.values() if d.get("api_name") == "predict"]
    assert len(upload_predict) == 1 and upload_predict[0]["trigger_after"] is not None
    images = {c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("type") == "image"}
    assert images["overlay-output"]["height"] >= 400 and images["overlay-output"]["format"] == "png"
    assert images["overlay-colorbar"]["height"] == images["overlay-output"]["height"]


def test_explain_opacity_zero_gives_the_original_back(demo_handlers, images):
    overlay, *_ = demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "", 0, 0.0)
    np.testing.assert_array_equal(overlay, np.asarray(Image.open(images["rgb"]).convert("RGB")))


def test_predict_fills_the_class_list_with_the_top_k(demo_handlers, tiny_model, images):
    update, top_k, status = demo_handlers.predict({"path": str(images["rgb"]), "orig_name": "photo.png"}, TINY)
    probabilities = relevance.explain(tiny_model, str(images["rgb"]), method="attention").probabilities[0].numpy()
    order = np.argsort(-probabilities)
    assert [value for _, value in update["choices"]] == order.tolist()
    assert update["value"] == int(order[0])
    first_text = update["choices"][0][0]
    assert first_text == f"{tiny_model.class_names[order[0]]} ({probabilities[order[0]]:.1%})"
    assert list(top_k) == [tiny_model.class_names[i] for i in order]
    assert "Top prediction" in status


def test_multi_label_models_show_independent_class_probabilities(images, tmp_path):
    model = tiny_vit(depth=2, seed=3)
    model.multi_label = True
    handlers = ImageClassificationHandlers(ModelCatalog.from_models({"multi": model}), OverlayFiles(tmp_path))
    _, top_k, status = handlers.predict(str(images["rgb"]), "multi")
    logits = relevance.explain(model, str(images["rgb"]), method="attention").logits[0]
    sigmoid = 1 / (1 + np.exp(-logits.double().numpy()))
    assert top_k == pytest.approx({model.class_names[i]: sigmoid[i] for i in range(5)}, abs=1e-6)
    present = [model.class_names[i] for i in range(5) if sigmoid[i] > 0.5]
    assert f"present (over 50%): {', '.join(present) or 'none'}" in status
    _, top_k_explained, _, _, _ = handlers.explain(str(images["rgb"]), "multi", "rollout", None, "", 0, 0.5)
    assert top_k_explained == pytest.approx(top_k, abs=1e-6)


def test_the_chosen_class_is_the_one_explained(demo_handlers, tiny_model, images):
    path = str(images["rgb"])
    for choice, typed, expected_target in [(3, "", 3), (None, "Banana", 1), (4, " cherry ", 2), (None, "0", 0)]:
        overlay, _, _, status, _ = demo_handlers.explain(path, TINY, "transformer_attribution", choice, typed, 0, 0.5)
        expected, explanation = direct_overlay(tiny_model, path, "transformer_attribution", target=expected_target)
        assert int(explanation.target[0]) == expected_target
        np.testing.assert_array_equal(overlay, expected)
        assert f"for class **{tiny_model.class_names[expected_target]}**" in status


def test_unknown_class_name_suggests_close_names(demo_handlers, images):
    with pytest.raises(gr.Error) as error:
        demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "bananna", 0, 0.5)
    assert "Unknown class 'bananna'" in error.value.message and "'banana'" in error.value.message
    with pytest.raises(gr.Error) as error:
        demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "zebra", 0, 0.5)
    assert "apple, banana, cherry, date, elderberry" in error.value.message


def test_match_class_name_handles_synonyms_duplicates_and_indices():
    """The command line's rule (relevance.labels; tests/test_labels.py proves both agree), as sentences."""
    names = ["tench, Tinca tinca", "tabby, tabby cat", "crane", "crane", "maillot"]
    assert match_class_name(names, "Tabby Cat") == 1
    assert match_class_name(names, "tinca  tinca") == 0
    assert match_class_name(names, "tabby, tabby cat") == 1
    assert match_class_name(names, "4") == 4
    with pytest.raises(ValueError, match=r"^'crane' is ambiguous: it names classes 2 \(crane\), 3 \(crane\); "
                                         r"give the index\.$"):
        match_class_name(names, "crane")  # duplicates are an error naming both, never a silent pick
    with pytest.raises(ValueError, match=r"^Class index 5 is out of range: the model has classes 0\.\.4\.$"):
        match_class_name(names, "5")
    with pytest.raises(ValueError, match=r"^Unknown class 'taby cat'; close matches: 'tabby cat' \(1\)\.$"):
        match_class_name(names, "taby cat")


def test_the_class_placeholder_comes_from_the_models_own_classes(images, tmp_path):
    shapes = load_embedded()
    assert class_name_placeholder(shapes.class_names) == "e.g. cross or 4"
    fruit = ["apple", "banana", "cherry", "date", "elderberry"]
    assert class_name_placeholder(fruit) == "e.g. cherry or 3"
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    imagenet = [info.index_to_description(i) for i in range(1000)]
    placeholder = class_name_placeholder(imagenet)
    name, index = placeholder.removeprefix("e.g. ").rsplit(" or ", 1)
    assert resolve_class(name, imagenet) == 500 and 0 <= int(index) < 1000  # both parts work as typed
    assert class_name_placeholder(["crane", "crane"]) == "e.g. 1"  # no unambiguous name: an index only
    hints = ModelHints(ModelCatalog.from_models({"shapes": shapes, "fruit": tiny_vit(depth=2)}))
    assert hints.class_hint("fruit")["placeholder"] == "e.g. cherry or 3"
    assert hints.class_hint("shapes")["placeholder"] == "e.g. cross or 4"
    assert "tabby" not in hints.class_hint("shapes")["placeholder"]


def test_photos_given_to_the_shapes_model_get_a_visible_domain_notice(images):
    shapes = load_embedded()
    hints = ModelHints(ModelCatalog.from_models({"shapes": shapes, TINY: tiny_vit(depth=2)}))
    for photo in sorted(SAMPLES.glob("*.jpg")):
        notice = hints.domain_notice({"path": str(photo), "orig_name": photo.name}, "shapes")
        assert notice.startswith("⚠️ **Outside the model's domain:** Not from the procedural shapes world")
        assert "mean nothing" in notice
    assert hints.domain_notice(str(SHAPES_EXAMPLE), "shapes") == ""  # a scene: no notice
    assert hints.domain_notice(str(SAMPLES / "chelsea.jpg"), TINY) == ""  # not a shapes model: no notice
    assert hints.domain_notice(None, "shapes") == ""  # nothing uploaded yet
    assert hints.domain_notice(str(images["bad"]), "shapes") == ""  # the other handlers report a bad file
    assert hints.domain_notice(str(SAMPLES / "chelsea.jpg"), "no such model") == ""


def test_an_unreachable_hub_is_a_sentence_on_the_page_and_details_in_the_log(monkeypatch, caplog):
    import logging

    import relevance.models.hub as hub

    detail = "URLError: <urlopen error [Errno -3] Temporary failure in name resolution>"
    monkeypatch.setattr(hub, "weights_available", lambda name: (False, f"no model hub reachable ({detail})"))
    with caplog.at_level(logging.INFO, logger=app_models.logger.name):
        available, reason = app_models.hub_weights_available("vit_base_patch16_224")
    assert not available and reason == OFFLINE_REASON
    assert reason.startswith("no model hub reachable (offline)") and "embedded model" in reason
    assert "URLError" not in reason and "Errno" not in reason
    assert detail in caplog.text  # the technical reason is kept for the server's operator

    def broken(name):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(hub, "weights_available", broken)
    available, reason = app_models.hub_weights_available("vit_base_patch16_224")
    assert not available and reason == app_models.CHECK_FAILED_REASON and "secret" not in reason
    monkeypatch.setattr(hub, "weights_available", lambda name: (True, "cached locally"))
    assert app_models.hub_weights_available("vit_base_patch16_224") == (True, "cached locally")


def test_compare_shows_every_method_for_the_same_class(demo_handlers, tiny_model, images):
    gallery, status = demo_handlers.compare(str(images["rgb"]), TINY, 2, "", 1, 0.5)
    assert len(gallery) == len(ALL_METHODS) == len(relevance.list_methods()) - len(app_engine.DEMO_EXCLUDED_METHODS)
    assert [caption for _, caption in gallery] == [method_caption(m) for m in ALL_METHODS]
    assert method_caption("lrp").startswith(METHOD_CAPTIONS["lrp"]) and "signed" in method_caption("lrp")
    assert method_caption("rollout") == METHOD_CAPTIONS["rollout"]
    for (overlay, _), method in zip(gallery, ALL_METHODS):
        expected, _ = direct_overlay(tiny_model, images["rgb"], method, target=2, start_layer=1)
        np.testing.assert_array_equal(overlay, expected)
    assert f"{len(ALL_METHODS)} methods" in status and "cherry" in status


def test_the_demo_leaves_out_only_the_expensive_gradient_and_perturbation_methods():
    expensive = {m for m in relevance.list_methods() if relevance.get_method(m).attribution is not None} - {
        "saliency", "input_x_gradient"}  # one backward pass each: in the demo
    assert set(app_engine.DEMO_EXCLUDED_METHODS) == expensive
    assert ALL_METHODS == [m for m in relevance.list_methods() if m not in expensive]
    assert "saliency" in ALL_METHODS and "input_x_gradient" in ALL_METHODS


def test_compare_without_class_pins_the_top_prediction(demo_handlers, tiny_model, images):
    gallery, _ = demo_handlers.compare(str(images["other"]), TINY, None, "", 0, 0.5)
    top = int(relevance.explain(tiny_model, str(images["other"]), method="attention").target[0])
    for (overlay, _), method in zip(gallery, ALL_METHODS):
        np.testing.assert_array_equal(overlay, direct_overlay(tiny_model, images["other"], method, target=top)[0])


@pytest.mark.parametrize("kind", ["grey", "rgba", "grey16"])
def test_unusual_image_formats_are_explained(demo_handlers, tiny_model, images, kind):
    overlay, *_ = demo_handlers.explain(str(images[kind]), TINY, "gradient_rollout", None, "", 0, 0.5)
    assert overlay.shape == (60, 90, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay, direct_overlay(tiny_model, images[kind], "gradient_rollout")[0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": "bad"}, "holiday.png: not a readable image file"),
        ({"image": "truncated"}, "cut.png: cannot decode image (image file is truncated)"),
        ({"image": None}, "Upload an image or pick an example first."),
        ({"model": "/etc/passwd"}, "Unknown model '/etc/passwd'. Choose one of: tiny test ViT."),
        ({"method": "os.system"}, "Unknown method 'os.system'"),
        ({"start_layer": 3}, "Start layer must be between 0 and 2"),
        ({"opacity": 1.5}, "Opacity must be between 0 and 1"),
        ({"class_choice": 99}, "does not belong to this model"),
        ({"colormap": "rainbow<script>"}, "Unknown colour map 'rainbow&lt;script&gt;'"),
    ],
)
def test_bad_inputs_give_a_clear_message_and_no_traceback(demo_handlers, images, change, message):
    arguments = {
        "image": "rgb", "model": TINY, "method": "rollout", "class_choice": None, "class_name": "",
        "start_layer": 0, "opacity": 0.5, "colormap": "jet",
    }
    arguments.update(change)
    image = arguments["image"]
    image_value = None if image is None else {"path": str(images[image]), "orig_name": images[image].name}
    with pytest.raises(gr.Error) as error:
        demo_handlers.explain(
            image_value, arguments["model"], arguments["method"], arguments["class_choice"],
            arguments["class_name"], arguments["start_layer"], arguments["opacity"], arguments["colormap"],
        )
    assert message in error.value.message
    assert "Traceback" not in error.value.message
    assert str(images["bad"].parent) not in error.value.message, "server paths must not leak into messages"


def test_images_over_the_demo_pixel_cap_are_refused(demo_handlers, images, monkeypatch):
    monkeypatch.setattr(app_engine, "DEMO_MAX_PIXELS", 50 * 50)
    with pytest.raises(gr.Error, match="image too large for the demo"):
        demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "", 0, 0.5)


def test_internal_errors_are_logged_not_shown(demo_handlers, images, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app_engine, "explain_overlay", broken)
    with pytest.raises(gr.Error) as error:
        demo_handlers.explain(str(images["rgb"]), TINY, "rollout", None, "", 0, 0.5)
    assert "internal error" in error.value.message and "secret" not in error.value.message


def test_model_change_resizes_the_start_layer_slider(images, tmp_path):
    catalog = ModelCatalog.from_models({"deep": tiny_vit(depth=4), "shallow": tiny_vit(depth=2)})
    handlers = ImageClassificationHandlers(catalog, OverlayFiles(tmp_path))
    slider, classes, top_k, _ = handlers.model_changed("shallow", str(images["rgb"]), 3)
    assert (slider["maximum"], slider["value"]) == (1, 1)
    assert len(classes["choices"]) == 5 and top_k
    slider, classes, top_k, _ = handlers.model_changed("deep", None, 1)
    assert (slider["maximum"], slider["value"]) == (3, 1)
    assert classes["choices"] == [] and top_k is None
    slider, classes, top_k, status = handlers.model_changed("shallow", str(images["bad"]), 0)
    assert slider["maximum"] == 1 and classes["choices"] == [] and top_k is None
    assert status == "holiday.png: not a readable image file (unknown or unsupported format)"


def test_concurrent_requests_get_their_own_results(demo_handlers, tiny_model, images):
    """Many threads share one model: each result equals the same request computed alone."""
    requests = [
        (kind, method, target)
        for kind in ("rgb", "other", "grey")
        for method, target in (("transformer_attribution", 0), ("gradient_rollout", 3), ("lrp", None))
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [
            pool.submit(demo_handlers.explain, str(images[kind]), TINY, method, target, "", 0, 0.5)
            for kind, method, target in requests
        ]
        results = [future.result() for future in futures]
    for (kind, method, target), (overlay, *_rest) in zip(requests, results):
        np.testing.assert_array_equal(overlay, direct_overlay(tiny_model, images[kind], method, target=target)[0])


# ------------------------------------------------------------------------------------ catalog and CLI


def test_catalog_serves_only_preloaded_models(tiny_model):
    catalog = ModelCatalog.from_models({TINY: tiny_model})
    assert catalog.get(TINY) is tiny_model
    for label in ["shapes-vit", "vit_base_patch16_224", "../model.pth", None, 3]:
        with pytest.raises(ValueError, match="Unknown model"):
            catalog.get(label)


def test_offline_catalog_has_the_embedded_model_and_says_why_not_the_others():
    started = time.perf_counter()
    calls = []

    def unreachable(name):
        calls.append(name)
        return False, "no model hub reachable (test)"

    catalog = load_catalog("cpu", availability=unreachable)
    assert time.perf_counter() - started < 20
    assert calls == list(models.HUB_MODELS.values())
    assert catalog.labels == [EMBEDDED_LABEL] and catalog.offline
    assert catalog.unavailable == {label: "no model hub reachable (test)" for label in models.HUB_MODELS}
    notice = demo_app.model_notice(catalog)
    assert notice.startswith("**No model hub reachable: using the embedded shapes model**")


def test_hub_models_are_loaded_when_available(monkeypatch, tiny_model):
    loaded = []

    def fake_load_model(name, device="cpu", **kwargs):
        loaded.append((name, device))
        return tiny_model

    monkeypatch.setattr(models, "load_model", fake_load_model)
    catalog = load_catalog(
        "cpu",
        hub=(HubModel("Hub A", "vit_base_patch16_224"), HubModel("Hub B", "deit_base_patch16_224")),
        availability=lambda name: (name.startswith("vit"), "cached locally" if name.startswith("vit") else "nope"),
    )
    assert loaded == [("vit_base_patch16_224", "cpu")]
    assert catalog.labels == ["Hub A", EMBEDDED_LABEL] and catalog.default_label == "Hub A"
    assert catalog.unavailable == {"Hub B": "nope"} and not catalog.offline


def _accepts_connections(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _serve_once(monkeypatch, tiny_model, argv: list[str]) -> dict:
    """Run ``relevance demo ARGV`` with a tiny catalog until the server is up; what the running server showed."""
    import argparse

    seen: dict = {}

    def tiny_catalog(device="cpu", **kwargs):
        seen["device"] = device
        return ModelCatalog.from_models({TINY: tiny_model})

    def stop_when_up(app, stop):
        port = app.server_port
        seen.update(host=app.server_name, port=port, share=app.share,
                    on_127_0_0_1=_accepts_connections("127.0.0.1", port),
                    on_127_0_0_2=_accepts_connections("127.0.0.2", port))  # loopback too, but another address
        signal.raise_signal(signal.SIGINT)  # Ctrl+C: the demo's handler sets the stop event, nothing is raised
        seen["stopped"] = stop.wait(5)

    monkeypatch.setattr(demo_app, "load_catalog", tiny_catalog)
    monkeypatch.setattr(demo_app, "_serve_until_stopped", stop_when_up)
    parser = argparse.ArgumentParser()
    demo_app.add_arguments(parser)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        assert demo_app.run(parser.parse_args(argv)) == 0
        seen["restored"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl+C as before, after
    finally:
        signal.signal(signal.SIGINT, before)
    return seen


def test_the_demo_serves_this_machine_only_unless_told_otherwise(monkeypatch, tiny_model):
    import argparse

    parser = argparse.ArgumentParser()
    demo_app.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.share, args.device) == ("127.0.0.1", 7860, False, "cpu")
    port = free_port()
    seen = _serve_once(monkeypatch, tiny_model, ["--port", str(port)])
    assert seen == {"device": "cpu", "host": "127.0.0.1", "port": port, "share": False,
                    "on_127_0_0_1": True, "on_127_0_0_2": False, "stopped": True,
                    "restored": True}  # bound to 127.0.0.1, not to every address
    port = free_port()
    seen = _serve_once(monkeypatch, tiny_model, ["--host", "127.0.0.2", "--port", str(port), "--device", "cpu:0"])
    assert seen == {"device": "cpu:0", "host": "127.0.0.2", "port": port, "share": False,
                    "on_127_0_0_1": False, "on_127_0_0_2": True, "stopped": True, "restored": True}


def test_demo_command_starts_offline_within_seconds(tmp_path):
    """`relevance demo` (run as `python -m relevance demo`) serves the page with the offline banner."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # no cached hub weights: offline for sure
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "relevance", "demo", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Ctrl+C as in a terminal, even when this suite runs as a background job (which starts with SIGINT ignored,
        # and the demo leaves an ignored signal ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "relevance demo running at" in line:
                break
        output = "".join(lines)
        elapsed = time.perf_counter() - started
        assert f"relevance demo running at http://127.0.0.1:{port}" in output, output
        assert "No model hub reachable: using the embedded shapes model." in output
        assert elapsed < 60, f"took {elapsed:.1f} s to start"
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).text
        assert "No model hub reachable: using the embedded shapes model" in config
        assert EMBEDDED_LABEL in config
        for label in models.HUB_MODELS:
            assert f"{label}: no model hub reachable" in config
        process.send_signal(signal.SIGINT)  # Ctrl+C stops it cleanly
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)


# ------------------------------------------------------------------------------------ HTTP API


@pytest.fixture(scope="module")
def demo_server(tiny_model):
    app = demo_app.build_app({TINY: tiny_model})
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def demo_client(demo_server):
    from gradio_client import Client

    return Client(demo_server, verbose=False)


def test_api_lists_the_three_endpoints(demo_client):
    endpoints = demo_client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/explain", "/compare"} <= set(endpoints)


def test_api_predict_returns_the_top_prediction(demo_client, tiny_model, images):
    from gradio_client import handle_file

    classes, top_k, status = demo_client.predict(handle_file(str(images["other"])), TINY, api_name="/predict")
    probabilities = relevance.explain(tiny_model, str(images["other"]), method="attention").probabilities[0]
    best = int(probabilities.argmax())
    assert classes["value"] == best
    assert [value for _, value in classes["choices"]] == probabilities.argsort(descending=True).tolist()
    assert top_k["label"] == tiny_model.class_names[best]
    assert [c["confidence"] for c in top_k["confidences"]] == pytest.approx(
        sorted(probabilities.tolist(), reverse=True), abs=1e-6
    )
    assert "Top prediction" in status


def test_api_explain_matches_the_engine(demo_client, tiny_model, images):
    from gradio_client import handle_file

    overlay_path, top_k, download_path, status, colour_bar_path = demo_client.predict(
        handle_file(str(images["rgb"])), TINY, "transformer_attribution", 4, "", 2, 0.5, "jet", api_name="/explain"
    )
    expected, explanation = direct_overlay(
        tiny_model, images["rgb"], "transformer_attribution", target=4, start_layer=2
    )
    np.testing.assert_array_equal(read_png(overlay_path), expected)
    np.testing.assert_array_equal(read_png(download_path), expected)
    assert top_k["label"] == tiny_model.class_names[int(explanation.probabilities[0].argmax())]
    assert len(top_k["confidences"]) == 5
    assert "for class **elderberry**" in status
    np.testing.assert_array_equal(read_png(colour_bar_path), colorbar("jet", 480, 88))


def test_api_compare_returns_one_image_per_method(demo_client, tiny_model, images):
    from gradio_client import handle_file

    gallery, status = demo_client.predict(
        handle_file(str(images["other"])), TINY, 1, "", 0, 0.5, "jet", api_name="/compare"
    )
    assert len(gallery) == len(ALL_METHODS)
    assert [item["caption"] for item in gallery] == [method_caption(m) for m in ALL_METHODS]
    for item, method in zip(gallery, ALL_METHODS):
        expected, _ = direct_overlay(tiny_model, images["other"], method, target=1)
        np.testing.assert_array_equal(read_png(item["image"]), expected)


def test_api_concurrent_users_get_unmixed_results(demo_client, tiny_model, images):
    from gradio_client import handle_file

    requests = [
        ("rgb", "transformer_attribution", 0),
        ("other", "lrp", 2),
        ("rgb", "rollout", 4),
        ("other", "gradient_rollout", 1),
    ]
    jobs = [
        demo_client.submit(
            handle_file(str(images[kind])), TINY, method, target, "", 0, 0.5, "jet", api_name="/explain"
        )
        for kind, method, target in requests
    ]
    for job, (kind, method, target) in zip(jobs, requests):
        overlay_path, _, _, status, _ = job.result(timeout=120)
        expected, _ = direct_overlay(tiny_model, images[kind], method, target=target)
        np.testing.assert_array_equal(read_png(overlay_path), expected)
        assert f"for class **{tiny_model.class_names[target]}**" in status


def test_api_bad_file_gives_the_message_not_a_traceback(demo_client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as error:
        demo_client.predict(
            handle_file(str(images["bad"])), TINY, "rollout", None, "", 0, 0.5, "jet", api_name="/explain"
        )
    assert str(error.value) == "holiday.png: not a readable image file (unknown or unsupported format)"


def test_api_refuses_uploads_over_the_size_cap(demo_server, tmp_path):
    assert demo_app.MAX_FILE_SIZE == "20mb"
    too_big = tmp_path / "big.png"
    too_big.write_bytes(b"\0" * (21 * 1024 * 1024))
    with too_big.open("rb") as handle:
        response = httpx.post(f"{demo_server}gradio_api/upload", files={"files": ("big.png", handle)}, timeout=60)
    assert response.status_code == 413


def test_every_method_of_the_image_tab_has_a_readable_name():
    methods = app_engine.method_names()
    assert {"attnlrp", "cp_lrp", "legrad", "transformer_attribution"} <= set(methods)
    missing = [m for m in methods if m not in METHOD_LABELS or m not in METHOD_CAPTIONS]
    assert not missing, f"methods shown by their raw name: {missing}"
