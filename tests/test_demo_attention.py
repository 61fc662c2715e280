"""The demo's "Attention" tab: its handler (each view, the comparison with an untrained copy, errors) and, in
Chromium, a user showing a head view and hovering a token inside it."""

from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

import relevance.views as V
from demos import app_engine
from demos.app import build_app
from demos.app_attention import UNTRAINED, VIEWS, AttentionHandlers, untrained_copy
from demos.app_models import ModelCatalog
from demos.app_testing import chromium_context, serving, tiny_vit

TINY = "tiny test ViT"
EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "scene-20000002_purple-star.png"
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


@pytest.fixture(scope="module")
def model():
    return tiny_vit(depth=2)


@pytest.fixture(scope="module")
def handlers(model, tmp_path_factory):
    return AttentionHandlers(ModelCatalog.from_models({TINY: model}), root=tmp_path_factory.mktemp("views"))


def framed_document(frame: str) -> str:
    match = re.fullmatch(r'<iframe class="rv-frame" [^>]*sandbox="allow-scripts"[^>]*srcdoc="([^"]*)"></iframe>', frame)
    assert match, frame[:200]
    return html.unescape(match.group(1))


def test_every_view_is_shown_framed_with_its_download(handlers, model):
    image = app_engine.read_image(EXAMPLE)
    captured = V.capture(model, [image])
    for label, kind in VIEWS.items():
        frame, picture, download, status = handlers.show(str(EXAMPLE), TINY, label)
        document = framed_document(frame)
        assert document == Path(download).read_text(encoding="utf-8") and download.endswith(f"_{kind}.html")
        assert "17 tokens, 2 blocks x 2 heads" in status and label in status
        if kind == "grid":
            np.testing.assert_array_equal(picture, V.attention_grid(captured).image)
        elif kind in ("head", "neuron"):
            assert picture is None and f"rv-{kind}" in document and "[CLS]" in document
        else:
            assert picture.dtype == np.uint8 and picture.ndim == 3 and "<svg" in document


def test_the_comparison_uses_an_untrained_copy_and_leaves_the_model_alone(handlers, model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin, again = untrained_copy(model), untrained_copy(model)
    assert all(torch.equal(twin.state_dict()[k], again.state_dict()[k]) for k in before)  # deterministic
    assert not torch.equal(twin.state_dict()["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    frame, picture, _, _ = handlers.show(str(EXAMPLE), TINY, "Flow comparison with a second model", UNTRAINED)
    document = framed_document(frame)
    assert f"{TINY} (untrained)" in document and document.count('class="rv-flow-svg"') == 3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_errors_are_readable(handlers):
    with pytest.raises(gr.Error, match="Upload an image"):
        handlers.show(None, TINY, next(iter(VIEWS)))
    with pytest.raises(gr.Error, match="Unknown view"):
        handlers.show(str(EXAMPLE), TINY, "X-ray")
    with pytest.raises(gr.Error, match="Unknown model"):
        handlers.show(str(EXAMPLE), "nope", next(iter(VIEWS)))


def test_a_user_shows_a_head_view_and_hovers_a_token(model):
    from playwright.sync_api import expect

    app = build_app({TINY: model}, shapes_examples=[str(EXAMPLE)], photo_examples=[])
    with serving(app) as url, chromium_context() as context:
        page = context.new_page()
        page.set_default_timeout(60_000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        page.get_by_role("tab", name="Attention").click()
        page.locator("#attention-image input[type=file]").set_input_files(str(EXAMPLE))
        page.click("#attention-show")
        expect(page.locator("#attention-status")).to_contain_text("17 tokens", timeout=60_000)
        view = page.frame_locator("#attention-view-output iframe").locator(".rv-view")
        expect(view).to_have_attribute("data-rv-ready", "1")
        assert view.locator(".rv-base path").count() > 0 and "[CLS]" in view.inner_text()
        view.locator('text.rv-token[data-side="q"][data-index="0"]').hover()
        expect(view.locator(".rv-highlight line").first).to_be_attached()
        assert {l.get_attribute("data-q") for l in view.locator(".rv-highlight line").all()} == {"0"}
        assert problems == []
