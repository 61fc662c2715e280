"""The demo's "Text classification" tab: its handlers (the heatmap, predictions, download and comparison equal the
engine's own rendering; errors are sentences), its fixed catalog of text models, and, in Chromium, a user who picks
an example, types a text, explains, switches words and pieces, compares every method and downloads the page."""

from __future__ import annotations

import concurrent.futures
import html
import os
from pathlib import Path

import gradio as gr
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import relevance  # noqa: E402
from demos import app as demo_app  # noqa: E402
from demos.app_common import OverlayFiles  # noqa: E402
from demos.app_models import ModelCatalog  # noqa: E402
from demos.app_testing import chromium_context, serving, tiny_vit  # noqa: E402
from demos.app_text import (EMBEDDED_TEXT_LABEL, EXAMPLES, GRANULARITIES, HUB_TEXT_MODELS, MAX_TEXT_CHARS,  # noqa: E402
                            NOT_CACHED_REASON, TextClassificationHandlers, load_text_catalog, method_label)
from relevance.data.reviews import generate_reviews  # noqa: E402
from relevance.models.reviews import load_embedded  # noqa: E402
from relevance.render.text import text_heatmap_document  # noqa: E402

REVIEWS = "reviews test BERT"
TINY = "tiny test ViT"
PIECES, WORDS = list(GRANULARITIES)
SPLIT_WORD = "the acting was wonderfully moving ."  # "wonderfully" = wonderful ##l ##y
pytestmark = [  # gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
    pytest.mark.usefixtures("one_thread"),  # conftest.py: the tiny models run fastest on one thread
]


@pytest.fixture(scope="module")
def model():
    return load_embedded()


@pytest.fixture(scope="module")
def handlers(model, tmp_path_factory):
    catalog = ModelCatalog.from_models({REVIEWS: model, TINY: tiny_vit(depth=2)})
    return TextClassificationHandlers(catalog, OverlayFiles(tmp_path_factory.mktemp("text-downloads")))


def engine_fragment(model, text: str, method: str, target: int | None = None, words: bool = False) -> str:
    """The reference: the engine's own heatmap of the text (special tokens hidden, as the tab shows it)."""
    explanation = relevance.explain(model, [text], method=method, target=target)
    return explanation.maps["text"].html(0, words=words, show_special=False)


# ------------------------------------------------------------------------------------------------ handlers
@pytest.mark.parametrize("method", ["transformer_attribution", "attnlrp", "rollout"])
def test_explain_shows_the_engines_heatmap_and_downloads_it(handlers, model, method):
    text = EXAMPLES[5].text  # "the script seemed awful , but the cast was wonderful ."
    heatmap, label, download, status, notice = handlers.explain(text, REVIEWS, method, "", PIECES)
    reference = relevance.explain(model, [text], method=method)
    assert heatmap == engine_fragment(model, text, method)
    assert ("signed: blue negative, red positive" in heatmap) == relevance.get_method(method).signed
    probabilities = reference.probabilities[0].tolist()
    assert label == pytest.approx({"negative": probabilities[0], "positive": probabilities[1]}, abs=1e-9)
    explained = int(reference.target[0])
    name = model.class_names[explained]
    caption = f"{name} ({probabilities[explained]:.1%}) · {method_label(method)} · {REVIEWS}"
    assert Path(download).read_text(encoding="utf-8") == text_heatmap_document(
        [heatmap], [caption], title="Token relevance: " + text)
    assert Path(download).name == f"the-script-seemed-awful-but-the-cast-was_{method}_{name}.html"
    assert f"for class **{name}** (p = {probabilities[explained]:.1%}), 13 tokens" in status and notice == ""


def test_the_class_choice_and_the_word_switch(handlers, model):
    for choice, target in (("", None), (0, 0), ("1", 1)):
        heatmap, *_ = handlers.explain(SPLIT_WORD, REVIEWS, "gradient_rollout", choice, PIECES)
        assert heatmap == engine_fragment(model, SPLIT_WORD, "gradient_rollout", target)
    pieces, *_ = handlers.explain(SPLIT_WORD, REVIEWS, "gradient_rollout", 0, PIECES)
    words, *_ = handlers.explain(SPLIT_WORD, REVIEWS, "gradient_rollout", 0, WORDS)
    assert words == engine_fragment(model, SPLIT_WORD, "gradient_rollout", 0, words=True) != pieces
    assert ">wonderfully</span>" in words and ">wonderful</span>" in pieces and ">l</span>" in pieces
    update = handlers.class_choices(REVIEWS)
    assert update["choices"] == [("Top prediction", ""), ("negative", 0), ("positive", 1)] and update["value"] == ""


def test_compare_shows_every_method_for_one_class(handlers, model):
    text = EXAMPLES[3].text
    comparison, status = handlers.compare(text, REVIEWS, "", WORDS)
    top = int(relevance.explain(model, [text], method="attention").target[0])  # pinned: the top prediction
    positions = []
    for method in relevance.list_methods():
        fragment = engine_fragment(model, text, method, top, words=True)
        caption = f'<div class="text-compare-caption">{html.escape(method_label(method))}</div>'
        assert comparison.count(caption + fragment) == 1, method
        positions.append(comparison.index(caption))
    assert positions == sorted(positions)  # in the engine's order
    assert f"Compared {len(relevance.list_methods())} methods for class **{model.class_names[top]}**" in status
    other, _ = handlers.compare(text, REVIEWS, 1 - top, WORDS)
    assert engine_fragment(model, text, "transformer_attribution", 1 - top, words=True) in other


def test_examples_are_reviews_of_the_world_with_their_rationale_as_a_hint(handlers, model):
    kinds = {example.kind for example in EXAMPLES}
    assert {"plain", "negation", "contrast", "negation+contrast"} <= kinds
    for example in EXAMPLES:
        assert example.text in {r.text for r in generate_reviews(300, seed=2)}  # held out: reviews-bert saw seed 1
        hint = handlers.rationale_hint(example.text)
        assert f"**{example.label}**" in hint and f"**{' '.join(example.rationale)}**" in hint
        predicted = int(relevance.explain(model, example.text, method="attention").target[0])
        assert model.class_names[predicted] == example.label  # the model gets every example right
    assert handlers.rationale_hint("a text of my own") == "" and handlers.rationale_hint(None) == ""


def test_texts_outside_the_reviews_world_get_a_notice(handlers):
    *_, notice = handlers.explain("stock markets fell sharply on monday", REVIEWS, "rollout", "", PIECES)
    assert notice.startswith("⚠️ **Outside the model's domain:** Not from the procedural reviews world")


@pytest.mark.parametrize("change, message", [
    ({"text": "   "}, "Type a text or pick an example first."),
    ({"text": None}, "Type a text or pick an example first."),
    ({"text": "a" * (MAX_TEXT_CHARS + 1)}, f"the limit is {MAX_TEXT_CHARS}"),
    ({"text": " ".join(["the film was great ."] * 13)}, f"67 tokens but {REVIEWS} takes at most 64"),
    ({"model": "/etc/passwd"}, "Unknown model '/etc/passwd'."),
    ({"model": "textattack/bert-base-uncased-SST-2"}, "Unknown model 'textattack/bert-base-uncased-SST-2'."),
    ({"model": TINY}, f"'{TINY}' is not a text classifier."),
    ({"method": "os.system"}, "Unknown method 'os.system'"),
    ({"class_choice": 7}, "does not belong to this model"),
    ({"granularity": "<b>letters</b>"}, "Unknown display '&lt;b&gt;letters&lt;/b&gt;'"),
])
def test_bad_inputs_give_a_clear_message(handlers, change, message):
    arguments = dict(text="the plot was dull .", model=REVIEWS, method="rollout", class_choice="", granularity=PIECES)
    arguments.update(change)
    with pytest.raises(gr.Error) as error:
        handlers.explain(*arguments.values())
    assert message in error.value.message and "Traceback" not in error.value.message


def test_concurrent_requests_get_their_own_results(handlers, model):
    requests = [(example.text, method) for example in EXAMPLES[:3] for method in ("attnlrp", "gradient_rollout")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda r: handlers.explain(r[0], REVIEWS, r[1], "", PIECES)[0], requests))
    assert results == [engine_fragment(model, text, method) for text, method in requests]


# ------------------------------------------------------------------------------------------------ catalog
def test_the_catalog_offers_hub_text_models_only_from_the_cache(monkeypatch, model):
    asked = []
    catalog = load_text_catalog("cpu", cached=lambda name: asked.append(name) or False)
    assert asked == list(HUB_TEXT_MODELS.values())  # asked, never downloaded
    assert catalog.labels == [EMBEDDED_TEXT_LABEL] and catalog.default_label == EMBEDDED_TEXT_LABEL
    assert catalog.unavailable == {label: NOT_CACHED_REASON for label in HUB_TEXT_MODELS}
    import relevance.models as models

    created = []
    monkeypatch.setattr(models, "create", lambda name, **kw: created.append(name) or model)
    catalog = load_text_catalog("cpu", hub={"Cached SST-2": "owner/cached", "Other": "owner/other"},
                                cached=lambda name: name == "owner/cached")
    assert created == ["owner/cached"] and catalog.labels == ["Cached SST-2", EMBEDDED_TEXT_LABEL]
    assert catalog.default_label == "Cached SST-2" and catalog.unavailable == {"Other": NOT_CACHED_REASON}
    for label in ("owner/other", "reviews-bert", "../weights.bin", None):
        with pytest.raises(ValueError, match="Unknown model"):
            catalog.get(label)


def test_the_app_has_the_text_tab_with_its_caps_and_endpoints(model):
    app = demo_app.build_app({TINY: tiny_vit(depth=2)}, text_models={REVIEWS: model})
    config = app.get_config_file()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c.get("props")}
    assert props["text-input"]["max_length"] == MAX_TEXT_CHARS
    assert [tuple(c) for c in props["text-model"]["choices"]] == [(REVIEWS, REVIEWS)]
    assert {d.get("api_name") for d in config["dependencies"]} >= {"explain_text", "compare_text", "explain"}


# ------------------------------------------------------------------------------------------------ browser
def normalised(page, fragment: str) -> str:
    """The fragment as the browser serialises it (the page's innerHTML of the same markup)."""
    return page.evaluate("f => { const t = document.createElement('template'); t.innerHTML = f; return t.innerHTML; }",
                         fragment)


def test_a_user_explains_texts_in_the_browser(model, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    app = demo_app.build_app({TINY: tiny_vit(depth=2)}, shapes_examples=[], photo_examples=[],
                             text_models={REVIEWS: model})
    with serving(app) as url, chromium_context() as context:
        page = context.new_page()
        page.set_default_timeout(60_000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.get_by_role("tab", name="Text classification").click()
        status, heatmap = page.locator("#text-status"), page.locator("#text-heatmap")

        # pick an example: its known rationale shows; explain it with the default method
        example = EXAMPLES[5]
        page.locator("#text-examples button.gallery-item").nth(5).click()
        expect(page.locator("#text-input textarea")).to_have_value(example.text)
        expect(page.locator("#text-hint")).to_contain_text(f"Known rationale (the words that decide the label "
                                                           f"{example.label}): {' '.join(example.rationale)}")
        page.click("#text-explain")
        expect(status).to_contain_text("Transformer attribution for class")
        expected = engine_fragment(model, example.text, "transformer_attribution")
        assert normalised(page, expected) in heatmap.inner_html()
        expect(page.locator("#text-top-k")).to_contain_text(example.label)

        # type a text, choose a signed method and a class, show whole words
        page.locator("#text-input textarea").fill(SPLIT_WORD)
        expect(heatmap.locator("span")).to_have_count(0)  # the old heatmap goes with the old text
        expect(page.locator("#text-hint")).to_have_text("")
        page.click("#text-method input")
        page.get_by_role("option", name=method_label("attnlrp"), exact=True).click()
        page.click("#text-class input")
        page.get_by_role("option", name="negative", exact=True).click()
        page.get_by_label(WORDS).check()
        page.click("#text-explain")
        expect(status).to_contain_text("for class negative")
        words = engine_fragment(model, SPLIT_WORD, "attnlrp", 0, words=True)
        assert normalised(page, words) in heatmap.inner_html()
        expect(heatmap).to_contain_text("wonderfully")
        expect(heatmap).to_contain_text("signed: blue negative, red positive")

        # download: the self-contained page of the heatmap shown
        with page.expect_download() as download_info:
            page.click("#text-download")
        saved = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(saved)
        page_html = saved.read_text(encoding="utf-8")
        assert saved.suffix == ".html" and words in page_html and page_html.startswith("<!DOCTYPE html>")
        assert "<script" not in page_html

        # compare: one heatmap per method, the engine's, for the same class
        page.click("#text-compare-button")
        expect(status).to_contain_text(f"Compared {len(relevance.list_methods())} methods for class negative")
        items = page.locator("#text-compare .text-compare-item")
        expect(items).to_have_count(len(relevance.list_methods()))
        for index, method in enumerate(relevance.list_methods()):
            item = items.nth(index)
            expect(item.locator(".text-compare-caption")).to_have_text(method_label(method))
            assert normalised(page, engine_fragment(model, SPLIT_WORD, method, 0, words=True)) in item.inner_html()
        page.screenshot(path=str(tmp_path / "text-tab.png"), full_page=True)

        # an over-long text: a readable message, no traceback
        page.locator("#text-input textarea").fill(" ".join(["the film was great ."] * 13))
        page.click("#text-explain")
        expect(page.get_by_text(f"takes at most 64").first).to_be_visible()
        assert "Traceback" not in page.locator("body").inner_text()
        assert problems == []
