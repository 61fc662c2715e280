"""The demo's "Image-text" tab: its handlers (each caption's overlay, heatmap and logit equal explaining that pair
directly with the engine; the zero-shot ranking is :func:`relevance.models.clip.zero_shot`'s; errors are
sentences), its fixed catalog of image-text models, and, in Chromium, a user who picks a shapes scene, explains its
captions, ranks labels zero-shot and meets an error message."""

from __future__ import annotations

import concurrent.futures
import html
import os
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import relevance  # noqa: E402
from demos import app as demo_app  # noqa: E402
from demos.app_image_text import (CAPTIONS_MODE, DEFAULT_LABELS, DEFAULT_TEMPLATE,  # noqa: E402
                                  EMBEDDED_IMAGE_TEXT_LABEL, HUB_IMAGE_TEXT_MODELS, MAX_CAPTION_CHARS, MAX_CAPTIONS,
                                  MAX_LABELS, METHOD_DEFAULT_START, NOT_CACHED_REASON, ZERO_SHOT_MODE,
                                  ImageTextHandlers, example_captions, image_text_methods, load_image_text_catalog,
                                  method_label)
from demos.app_models import ModelCatalog  # noqa: E402
from demos.app_testing import chromium_context, serving, tiny_vit  # noqa: E402
from relevance.images import load_image  # noqa: E402
from relevance.models.clip import zero_shot  # noqa: E402
from relevance.models.shapes_clip import load_shapes_clip  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCENE = REPO / "assets" / "examples" / "scene-20000001_orange-cross_green-star_blue-ring.png"
PHOTO = REPO / "assets" / "samples" / "chelsea.jpg"
SHAPES = "shapes test CLIP"
TINY = "tiny test ViT"
LABELS = [label.strip() for label in DEFAULT_LABELS.split(",")]
pytestmark = [  # gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
    pytest.mark.usefixtures("one_thread"),  # conftest.py: the tiny models run fastest on one thread
]


@pytest.fixture(scope="module")
def model():
    return load_shapes_clip()


@pytest.fixture(scope="module")
def handlers(model):
    return ImageTextHandlers(ModelCatalog.from_models({SHAPES: model, TINY: tiny_vit(depth=2)}))


def engine_pair(model, image, caption: str, method: str, **options):
    """The reference: the engine's explanation of the pair, its overlay and its heatmap (special tokens hidden)."""
    explanation = relevance.explain(model, image, texts=[caption], method=method, **options)
    return explanation, explanation.maps["image"].overlay(0), explanation.maps["text"].html(0, show_special=False)


def explain(handlers, image=SCENE, captions="", *, mode=CAPTIONS_MODE, labels=DEFAULT_LABELS,
            template=DEFAULT_TEMPLATE, choice="", model=SHAPES, method="gradient_rollout"):
    value = str(image) if isinstance(image, Path) else image
    return handlers.explain(value, mode, captions, labels, template, choice, model, method)


# ------------------------------------------------------------------------------------------------ handlers
def test_the_methods_are_those_that_explain_image_text_pairs():
    methods = image_text_methods()
    assert method_label("attention") == "Raw attention (same image map for every caption)"
    assert method_label("attnlrp") == "AttnLRP (signed: blue \u2212, red +)"
    assert methods[:2] == ["attention", "rollout"] and {"gradient_rollout", "attnlrp", "legrad"} <= set(methods)
    assert not {"saliency", "integrated_gradients", "lime"} & set(methods)  # captum: too slow for a web page


@pytest.mark.parametrize("method", ["gradient_rollout", "attnlrp", "legrad"])
def test_each_caption_gets_the_map_of_explaining_that_pair(handlers, model, method):
    captions = example_captions(SCENE)
    assert captions == ["a photo of an orange cross", "a photo of a green star", "a photo of a blue ring",
                        "a photo of a red circle"]  # the scene's objects, then an absent one
    gallery, rows, ranking, status, notice = explain(handlers, SCENE, "\n".join(captions), method=method)
    image = load_image(SCENE)
    logits = []
    for k, caption in enumerate(captions):
        reference, overlay, fragment = engine_pair(model, image, caption, method)
        logit = float(reference.scores[0])
        logits.append(logit)
        assert np.array_equal(gallery[k][0], overlay) and gallery[k][1] == f"{k + 1}. {caption} · logit {logit:.2f}"
        title = f"{k + 1}. &ldquo;{caption}&rdquo; · similarity logit {logit:.2f}"
        assert f'<div class="it-row-title">{title}</div>{fragment}</div>' in rows
        assert ("signed: blue negative, red positive" in fragment) == relevance.get_method(method).signed
    assert min(logits[:3]) > logits[3]  # the absent red circle matches least
    best = captions[int(np.argmax(logits))]
    assert "for 4 caption(s)" in status and f"the most similar: **{best}**" in status
    assert ranking is None and notice == ""


def test_the_start_layers_of_each_tower_reach_the_engine(handlers, model):
    caption = "a photo of a green star"
    image = load_image(SCENE)
    gallery, rows, *_ = handlers.explain(str(SCENE), CAPTIONS_MODE, caption, DEFAULT_LABELS, DEFAULT_TEMPLATE, "",
                                         SHAPES, "gradient_rollout", 0, "1")
    chosen, overlay, fragment = engine_pair(model, image, caption, "gradient_rollout",
                                            start_layer={"image": 0, "text": 1})
    assert np.array_equal(gallery[0][0], overlay) and fragment in rows
    assert chosen.start_layers == {"image": 0, "text": 1}
    default, default_overlay, _ = engine_pair(model, image, caption, "gradient_rollout")
    assert default.start_layers != chosen.start_layers and not np.array_equal(default_overlay, overlay)
    only_text = handlers.explain(str(SCENE), CAPTIONS_MODE, caption, DEFAULT_LABELS, DEFAULT_TEMPLATE, "", SHAPES,
                                 "gradient_rollout", METHOD_DEFAULT_START, 1)[0]
    _, expected, _ = engine_pair(model, image, caption, "gradient_rollout", start_layer={"text": 1})
    assert np.array_equal(only_text[0][0], expected)
    depth = relevance.adapter_for(model).depths()["image"]
    image_menu, text_menu = handlers.start_layer_choices(SHAPES)
    assert image_menu["choices"][0] == METHOD_DEFAULT_START and len(image_menu["choices"]) == depth + 1
    for bad in (depth, -1, "two", "1.5"):
        with pytest.raises(gr.Error, match=f"The image start layer must be 'method default' or a block from 0 to "
                                           f"{depth - 1}"):
            handlers.explain(str(SCENE), CAPTIONS_MODE, caption, DEFAULT_LABELS, DEFAULT_TEMPLATE, "", SHAPES,
                             "gradient_rollout", bad, METHOD_DEFAULT_START)


def test_zero_shot_ranks_the_labels_and_explains_the_best_or_chosen_prompt(handlers, model):
    image = load_image(SCENE)
    reference = zero_shot(model, image, LABELS, DEFAULT_TEMPLATE)
    gallery, rows, ranking, status, _ = explain(handlers, SCENE, mode=ZERO_SHOT_MODE, method="attnlrp")
    assert list(ranking.items()) == reference.top(len(LABELS))[0]  # same order, same probabilities
    best = int(reference.best[0])
    direct = relevance.explain(model, image, texts=reference.prompts, target="best", method="attnlrp")
    assert int(direct.extras["prompt_index"][0]) == best
    _, overlay, fragment = engine_pair(model, image, reference.prompts[best], "attnlrp")
    assert np.array_equal(gallery[0][0], overlay) and np.array_equal(direct.maps["image"].overlay(0), overlay)
    assert len(gallery) == 1 and fragment in rows and direct.maps["text"].html(0, show_special=False) == fragment
    assert f"for the prompt **{reference.prompts[best]}** (label {LABELS[best]}, p = " in status
    # a chosen label (any case): its prompt, as zero-shot with target=index explains it
    gallery, rows, ranking, status, _ = explain(handlers, SCENE, mode=ZERO_SHOT_MODE, choice=" Circle ",
                                                method="attnlrp")
    chosen = relevance.explain(model, image, texts=reference.prompts, target=LABELS.index("circle"), method="attnlrp")
    assert np.array_equal(gallery[0][0], chosen.maps["image"].overlay(0))
    assert chosen.maps["text"].html(0, show_special=False) in rows and "a photo of a circle" in status
    assert list(ranking) == [LABELS[j] for j in reference.ranking[0].tolist()]


def test_compare_shows_every_method_for_the_first_caption(handlers, model):
    gallery, comparison, status = handlers.compare(str(SCENE), CAPTIONS_MODE, "a photo of a green star\na photo of a "
                                                   "blue ring", "", "", "", SHAPES)
    image, methods = load_image(SCENE), image_text_methods()
    assert [caption for _, caption in gallery] == [method_label(m) for m in methods]
    positions = []
    for (overlay, _), method in zip(gallery, methods):
        _, expected, fragment = engine_pair(model, image, "a photo of a green star", method)
        assert np.array_equal(overlay, expected), method
        item = (f'<div class="it-row" data-method="{method}"><div class="it-row-title">'
                f"{html.escape(method_label(method))}</div>{fragment}</div>")
        assert comparison.count(item) == 1
        positions.append(comparison.index(item))
    assert positions == sorted(positions)
    assert f"Compared {len(methods)} methods for **a photo of a green star**" in status


def test_a_photo_on_the_shapes_clip_shows_the_engines_warning(handlers, model):
    *_, notice = explain(handlers, PHOTO, "a photo of a red circle", method="rollout")
    warning = relevance.explain(model, load_image(PHOTO), texts=["a photo of a red circle"], method="rollout").warnings
    assert warning and notice == f"⚠️ **Outside the model's domain:** {warning[0][:1].upper() + warning[0][1:]}."
    assert "procedural shapes world" in notice


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_greyscale_alpha_and_palette_images_are_converted_as_on_the_image_tab(handlers, model, tmp_path, mode):
    path = tmp_path / f"scene-{mode}.png"
    Image.open(SCENE).convert(mode).save(path)
    gallery, rows, *_ = explain(handlers, path, "a photo of a green star", method="transformer_attribution")
    converted = load_image(path)  # the engine's reader: RGB uint8
    assert converted.shape == (128, 128, 3) and gallery[0][0].shape == (128, 128, 3)
    _, overlay, fragment = engine_pair(model, converted, "a photo of a green star", "transformer_attribution")
    assert np.array_equal(gallery[0][0], overlay) and fragment in rows


def test_uploads_are_capped_as_on_the_image_tab(handlers, monkeypatch, tmp_path):
    from demos import app_engine

    monkeypatch.setattr(app_engine, "DEMO_MAX_PIXELS", 100 * 100)  # the scene is 128 x 128
    with pytest.raises(gr.Error, match="image too large for the demo"):
        explain(handlers, {"path": str(SCENE), "orig_name": "my scene.png"}, "a photo of a green star")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(gr.Error, match="notes.png") as error:
        explain(handlers, tmp_path / "notes.png", "a photo of a green star")
    assert str(tmp_path) not in error.value.message  # the user's file name, never the server's path


LONG = "a photo of a red circle , a blue star , a green ring , a cyan cross and a red square"


@pytest.mark.parametrize("change, message", [
    ({"image": None}, "Upload an image or pick an example first."),
    ({"image": "/no/such/file.png"}, "file.png"),
    ({"captions": "   \n "}, "Type at least one caption (one per line), or pick an example."),
    ({"captions": None}, "Type at least one caption"),
    ({"captions": "a photo of a green star\n\na blue ring"}, "Caption 2 is empty"),
    ({"captions": LONG}, "Caption 1 has 24 tokens (start and end included) but shapes test CLIP takes at most 20"),
    ({"captions": "a " * MAX_CAPTION_CHARS}, f"the limit is {MAX_CAPTION_CHARS}"),
    ({"captions": "\n".join(["a red circle"] * (MAX_CAPTIONS + 1))}, f"Too many captions: {MAX_CAPTIONS + 1}"),
    ({"captions": "a red circle\na <b>dog</b>"}, "Caption 2: 'a &lt;b&gt;dog&lt;/b&gt;' has words this model does "
                                                 "not know: &lt;, &lt;/, &gt;, b, dog"),
    ({"model": "/etc/passwd"}, "Unknown model '/etc/passwd'."),
    ({"model": "openai/clip-vit-base-patch16"}, "Unknown model 'openai/clip-vit-base-patch16'."),
    ({"model": TINY}, f"'{TINY}' is not an image-text model."),
    ({"method": "saliency"}, "Unknown method 'saliency'"),
    ({"mode": "os.system"}, "Unknown mode 'os.system'"),
    ({"mode": ZERO_SHOT_MODE, "labels": " "}, "Type the labels to rank"),
    ({"mode": ZERO_SHOT_MODE, "labels": "star,,ring"}, "Label 2 is empty"),
    ({"mode": ZERO_SHOT_MODE, "labels": "star, ring, star"}, "Each label may appear only once."),
    ({"mode": ZERO_SHOT_MODE, "labels": ",".join(["star"] * (MAX_LABELS + 1))}, f"Too many labels: {MAX_LABELS + 1}"),
    ({"mode": ZERO_SHOT_MODE, "template": "a photo of a"}, "The template needs exactly one {}"),
    ({"mode": ZERO_SHOT_MODE, "template": "a {} of a {}"}, "The template needs exactly one {}"),
    ({"mode": ZERO_SHOT_MODE, "template": "{0.__class__} {}"}, "The template needs exactly one {}"),
    ({"mode": ZERO_SHOT_MODE, "labels": "star, dog"}, "The prompt of label 2: 'a photo of a dog' has words"),
    ({"mode": ZERO_SHOT_MODE, "choice": "dog"}, "'dog' is not one of the labels (circle, square,"),
])
def test_bad_inputs_give_a_clear_message(handlers, change, message):
    arguments = dict(image=SCENE, captions="a photo of a green star", mode=CAPTIONS_MODE)
    arguments.update(change)
    with pytest.raises(gr.Error) as error:
        explain(handlers, arguments.pop("image"), arguments.pop("captions"), **arguments)
    assert message in error.value.message and "Traceback" not in error.value.message


def test_concurrent_requests_get_their_own_results(handlers, model):
    requests = [(caption, method) for caption in example_captions(SCENE)[:3] for method in ("attnlrp", "legrad")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda r: explain(handlers, SCENE, r[0], method=r[1])[0][0][0], requests))
    image = load_image(SCENE)
    assert all(np.array_equal(result, engine_pair(model, image, caption, method)[1])
               for result, (caption, method) in zip(results, requests))


# ------------------------------------------------------------------------------------------------ catalog
def test_the_catalog_offers_hub_clips_only_from_the_cache(monkeypatch, model):
    asked = []
    catalog = load_image_text_catalog("cpu", cached=lambda name: asked.append(name) or False)
    assert asked == list(HUB_IMAGE_TEXT_MODELS.values())  # asked, never downloaded
    assert catalog.labels == [EMBEDDED_IMAGE_TEXT_LABEL] and catalog.default_label == EMBEDDED_IMAGE_TEXT_LABEL
    assert catalog.unavailable == {label: NOT_CACHED_REASON for label in HUB_IMAGE_TEXT_MODELS}
    import relevance.models as models

    created = []
    monkeypatch.setattr(models, "create", lambda name, **kw: created.append((name, kw["modality"])) or model)
    catalog = load_image_text_catalog("cpu", hub={"Cached CLIP": "owner/cached-clip", "Other": "owner/other-clip"},
                                      cached=lambda name: name == "owner/cached-clip")
    assert created == [("owner/cached-clip", "image-text")]
    assert catalog.labels == ["Cached CLIP", EMBEDDED_IMAGE_TEXT_LABEL] and catalog.default_label == "Cached CLIP"
    assert catalog.unavailable == {"Other": NOT_CACHED_REASON}
    for label in ("owner/other-clip", "shapes-clip", "../assets/shapes_clip/model.safetensors", None):
        with pytest.raises(ValueError, match="Unknown model"):
            catalog.get(label)


def test_the_app_has_the_image_text_tab_with_its_caps_and_endpoints(model):
    from relevance.models.reviews import load_embedded

    app = demo_app.build_app({TINY: tiny_vit(depth=2)}, shapes_examples=[], photo_examples=[],
                             text_models={"reviews": load_embedded()}, image_text_models={SHAPES: model},
                             image_text_examples=[str(SCENE)])
    config = app.get_config_file()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c.get("props")}
    assert props["it-captions"]["max_length"] == MAX_CAPTIONS * (MAX_CAPTION_CHARS + 1)
    assert [tuple(c) for c in props["it-model"]["choices"]] == [(SHAPES, SHAPES)]
    assert [c[1] for c in props["it-method"]["choices"]] == image_text_methods()
    assert props["it-overlays"]["format"] == "png" and props["it-compare-gallery"]["format"] == "png"
    assert {d.get("api_name") for d in config["dependencies"]} >= {"explain_image_text", "compare_image_text",
                                                                   "explain_text", "explain"}


# ------------------------------------------------------------------------------------------------ browser
def normalised(page, fragment: str) -> str:
    """The fragment as the browser serialises it (the page's innerHTML of the same markup)."""
    return page.evaluate("f => { const t = document.createElement('template'); t.innerHTML = f; return t.innerHTML; }",
                         fragment)


def test_a_user_explains_an_image_against_captions_in_the_browser(model):
    from playwright.sync_api import expect
    from relevance.models.reviews import load_embedded

    expect.set_options(timeout=60_000)
    scenes = sorted(str(p) for p in (REPO / "assets" / "examples").glob("scene-*.png"))
    app = demo_app.build_app({TINY: tiny_vit(depth=2)}, shapes_examples=[], photo_examples=[],
                             text_models={"reviews": load_embedded()}, image_text_models={SHAPES: model},
                             image_text_examples=scenes)
    with serving(app) as url, chromium_context() as context:
        page = context.new_page()
        page.set_default_timeout(60_000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.get_by_role("tab", name="Image-text").click()
        status, heatmaps = page.locator("#it-status"), page.locator("#it-heatmaps")

        # pick the three-object scene: its captions fill the box; explain them with the default method
        page.get_by_label(ZERO_SHOT_MODE).check()  # the example switches back to its captions
        expect(page.locator("#it-captions")).to_be_hidden()
        page.locator("#it-examples tr.tr-body").nth(scenes.index(str(SCENE))).click()
        captions = example_captions(SCENE)
        expect(page.locator("#it-captions textarea")).to_have_value("\n".join(captions))
        page.click("#it-explain")
        expect(status).to_contain_text("Gradient rollout (GAE) for 4 caption(s)")
        images = page.locator("#it-overlays img")
        expect(images).to_have_count(4)
        page.wait_for_function("() => [...document.querySelectorAll('#it-overlays img')]"
                               ".every(i => i.complete && i.naturalWidth === 128)")
        _, _, fragment = engine_pair(model, load_image(SCENE), captions[1], "gradient_rollout")
        assert normalised(page, fragment) in heatmaps.inner_html()
        expect(heatmaps.locator(".it-row-title")).to_have_count(4)
        expect(page.locator("#it-ranking")).to_be_hidden()  # no ranking for captions
        expect(heatmaps.locator(".it-row-title").nth(1)).to_contain_text(f"2. “{captions[1]}” · similarity logit")

        # zero-shot: the labels are ranked, the best prompt explained
        page.get_by_label(ZERO_SHOT_MODE).check()
        expect(page.locator("#it-labels").get_by_role("textbox")).to_have_value(DEFAULT_LABELS)
        page.click("#it-explain")
        reference = zero_shot(model, load_image(SCENE), LABELS, DEFAULT_TEMPLATE)
        best = LABELS[int(reference.best[0])]
        expect(status).to_contain_text(f"for the prompt {DEFAULT_TEMPLATE.format(best)}")
        expect(page.locator("#it-ranking")).to_contain_text(best)
        expect(images).to_have_count(1)

        # compare: every method for the explained prompt
        page.click("#it-compare-button")
        prompt = DEFAULT_TEMPLATE.format(best)
        expect(status).to_contain_text(f"Compared {len(image_text_methods())} methods for {prompt}")
        expect(page.locator("#it-compare .it-row")).to_have_count(len(image_text_methods()))
        expect(page.locator("#it-compare-gallery img")).to_have_count(len(image_text_methods()))

        # an error: a readable message, no traceback
        page.locator("#it-labels").get_by_role("textbox").fill("star, ring, star")
        page.click("#it-explain")
        expect(page.get_by_text("Each label may appear only once.").first).to_be_visible()
        assert "Traceback" not in page.locator("body").inner_text()
        assert problems == []
