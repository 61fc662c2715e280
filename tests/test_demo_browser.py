"""The demo in a real browser: Playwright drives Debian's headless Chromium against a live app.

One user session, step by step: upload an image, explain it, download the overlay, switch the
method, compare all methods, upload another image (the old results must go), then upload a file
that is no image. Every overlay the page shows is fetched back and compared pixel for pixel with
:meth:`relevance.Explanation.overlay` computed directly (full LRP: drawn signed, centred on 0),
so the test proves the page shows the right picture at the image's own size; the overlay must
also be displayed large. A tiny random ViT keeps it fast. Chromium comes from ``make browser``
(never ``playwright install``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import relevance  # noqa: E402
from demos import app_engine  # noqa: E402
from demos.app import build_app  # noqa: E402
from demos.app_image import DEFAULT_METHOD, METHOD_LABELS, method_caption  # noqa: E402
from demos.app_testing import chromium_context, serving, tiny_vit  # noqa: E402
from relevance.render import COLORMAPS, colorbar, overlay  # noqa: E402

TINY = "tiny test ViT"
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "assets" / "examples" / "scene-20000004_green-square_magenta-triangle_red-circle.png"
TIMEOUT_MS = 60_000
pytestmark = [  # gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


@pytest.fixture(scope="module")
def demo_model():
    return tiny_vit(depth=3)


@pytest.fixture(scope="module")
def demo_browser(demo_model):
    """The demo app served once for the module, and a browser page on it."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    app = build_app({TINY: demo_model}, shapes_examples=[str(EXAMPLE)], photo_examples=[])
    with serving(app) as url, chromium_context() as context:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page, url


@pytest.fixture
def demo_page(demo_browser):
    """The page freshly loaded for each test: no state, pending event or stream carries over from the last one."""
    page, url = demo_browser
    page.goto(url)
    page.locator("#status").wait_for()
    return page


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser-images")
    height, width = 72, 120  # not square, not the model's input size
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 2, yy * 3, (xx * yy) % 256], axis=-1).astype(np.uint8)
    rgb[20:50, 70:110] = (250, 200, 20)
    photo = folder / "street.png"
    Image.fromarray(rgb).save(photo)
    bad = folder / "holiday.png"
    bad.write_bytes(b"just text pretending to be a picture\n" * 20)
    return {"photo": photo, "bad": bad}


def shown_image(page, elem_id: str = "overlay-output") -> np.ndarray:
    """The image a component shows, fetched from its URL and decoded (PNG, lossless)."""
    source = page.locator(f"#{elem_id} img").get_attribute("src")
    response = page.request.get(source)
    assert response.ok
    with Image.open(io.BytesIO(response.body())) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def shown_overlay(page) -> np.ndarray:
    return shown_image(page, "overlay-output")


def displayed_size(page, elem_id: str) -> tuple[float, float]:
    """(width, height) in CSS pixels at which a component's image is painted (its content, not its box)."""
    return tuple(
        page.locator(f"#{elem_id} img").evaluate(
            """img => {
                const fit = getComputedStyle(img).objectFit;
                const [w, h, boxW, boxH] = [img.naturalWidth, img.naturalHeight, img.clientWidth, img.clientHeight];
                if (fit === "fill") return [boxW, boxH];
                let scale = fit === "none" ? 1 : Math.min(boxW / w, boxH / h);
                if (fit === "scale-down") scale = Math.min(scale, 1);
                return [w * scale, h * scale];
            }"""
        )
    )


def expected_overlay(model, path: Path, method: str, target: int | None = None) -> np.ndarray:
    # the demo's start-layer slider starts at 0 (methods with their own default, e.g. legrad, would differ)
    explanation = relevance.explain(model, str(path), method=method, target=target, start_layer=0)
    if method == "lrp":  # signed: centred on 0 with the diverging map
        return overlay(
            explanation.originals[0], explanation.relevance[0], explanation.geometries[0],
            colormap="bwr", alpha=0.5, signed=True,
        )
    return explanation.overlay(0, alpha=0.5)


def choose(page, dropdown_id: str, option: str) -> None:
    page.click(f"#{dropdown_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_a_user_explains_an_image_in_the_browser(demo_page, demo_model, demo_images, tmp_path):
    from playwright.sync_api import expect

    page = demo_page
    photo = demo_images["photo"]
    original = np.asarray(Image.open(photo).convert("RGB"))
    reference = relevance.explain(demo_model, str(photo), method="attention")
    top_class = int(reference.target[0])
    top_probability = float(reference.probabilities[0, top_class])
    status = page.locator("#status")

    # Upload: the class list fills with the top-k predictions, the top one selected.
    page.locator("#image-input input[type=file]").set_input_files(str(photo))
    expect(status).to_contain_text("Top prediction")
    expect(status).to_contain_text(demo_model.class_names[top_class])
    expect(page.locator("#class-select input")).to_have_value(
        f"{demo_model.class_names[top_class]} ({top_probability:.1%})"
    )

    # Run: the overlay has the input's size, differs from it, and is the engine's overlay.
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS[DEFAULT_METHOD]} for class")
    first = shown_overlay(page)
    assert first.shape == original.shape == (72, 120, 3)
    assert np.abs(first.astype(int) - original).mean() > 5
    np.testing.assert_array_equal(first, expected_overlay(demo_model, photo, DEFAULT_METHOD, top_class))

    # Download: the PNG file is the overlay shown.
    with page.expect_download() as download_info:
        page.click("#download-button")
    downloaded = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(downloaded)
    assert downloaded.suffix == ".png"
    np.testing.assert_array_equal(np.asarray(Image.open(downloaded).convert("RGB")), first)

    # Switch the method: a different overlay, again the engine's.
    choose(page, "method-select", METHOD_LABELS["gradient_rollout"])
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS['gradient_rollout']} for class")
    second = shown_overlay(page)
    np.testing.assert_array_equal(second, expected_overlay(demo_model, photo, "gradient_rollout", top_class))
    assert not np.array_equal(first, second)

    # Compare: one captioned image per method, each the engine's overlay for the same class.
    page.click("#compare-button")
    expect(status).to_contain_text(f"Compared {len(app_engine.method_names())} methods")
    gallery_images = page.locator("#compare-gallery img")
    expect(gallery_images).to_have_count(len(app_engine.method_names()))
    for method in app_engine.method_names():
        expect(page.locator("#compare-gallery")).to_contain_text(method_caption(method))
    for index, method in enumerate(app_engine.method_names()):
        response = page.request.get(gallery_images.nth(index).get_attribute("src"))
        shown = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
        np.testing.assert_array_equal(shown, expected_overlay(demo_model, photo, method, top_class))


def test_clicking_an_example_predicts_and_explains_it(demo_page, demo_model):
    from playwright.sync_api import expect

    page = demo_page
    top_class = int(relevance.explain(demo_model, str(EXAMPLE), method="attention").target[0])
    page.locator("#shapes-examples button.gallery-item").first.click()
    status = page.locator("#status")
    expect(status).to_contain_text(f"Top prediction of {TINY}: {demo_model.class_names[top_class]}")
    choose(page, "method-select", METHOD_LABELS["lrp"])
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS['lrp']} for class")
    expect(status).to_contain_text("128x128 px")
    np.testing.assert_array_equal(shown_overlay(page), expected_overlay(demo_model, EXAMPLE, "lrp", top_class))


def test_the_overlay_is_large_signed_maps_are_centred_and_a_new_upload_clears_old_results(
    demo_page, demo_model, demo_images, tmp_path
):
    from playwright.sync_api import expect

    page = demo_page
    status = page.locator("#status")
    top_class = int(relevance.explain(demo_model, str(EXAMPLE), method="attention").target[0])
    page.locator("#shapes-examples button.gallery-item").first.click()
    expect(status).to_contain_text(f"Top prediction of {TINY}")

    # A 128x128 example is drawn large (scaled up to its box), with a matching colour bar.
    choose(page, "method-select", METHOD_LABELS["rollout"])
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS['rollout']} for class")
    np.testing.assert_array_equal(shown_overlay(page), expected_overlay(demo_model, EXAMPLE, "rollout", top_class))
    width, height = displayed_size(page, "overlay-output")
    assert height >= 400 and width >= 400, f"overlay drawn at {width:.0f}x{height:.0f} px"
    np.testing.assert_array_equal(shown_image(page, "overlay-colorbar"), colorbar("jet", 480, 88))
    expect(page.locator("#overlay-colorbar img")).to_be_visible()

    # Full LRP is signed: the diverging map, centred on 0, in the overlay, colour bar and gallery.
    choose(page, "method-select", METHOD_LABELS["lrp"])
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS['lrp']} for class")
    np.testing.assert_array_equal(shown_overlay(page), expected_overlay(demo_model, EXAMPLE, "lrp", top_class))
    bar = shown_image(page, "overlay-colorbar")
    np.testing.assert_array_equal(bar, colorbar("bwr", 480, 88, signed=True))
    assert tuple(bar[240, 0]) == (255, 255, 255) and tuple(bar[0, 0]) == tuple(COLORMAPS["bwr"][255])
    page.click("#compare-button")
    expect(status).to_contain_text(f"Compared {len(app_engine.method_names())} methods")
    gallery_images = page.locator("#compare-gallery img")
    expect(gallery_images).to_have_count(len(app_engine.method_names()))
    lrp_index = app_engine.method_names().index("lrp")
    lrp_tile = page.request.get(gallery_images.nth(lrp_index).get_attribute("src")).body()
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(lrp_tile)).convert("RGB")),
        expected_overlay(demo_model, EXAMPLE, "lrp", top_class),
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(tmp_path / "demo-explained.png"), full_page=True)

    # A new upload: the old overlay, colour bar, gallery and download go; the new prediction shows.
    page.locator("#image-input input[type=file]").set_input_files(str(demo_images["photo"]))
    expect(status).to_contain_text("Top prediction")
    expect(page.locator("#overlay-output img")).to_have_count(0)
    expect(page.locator("#overlay-colorbar img")).to_have_count(0)
    expect(page.locator("#compare-gallery img")).to_have_count(0)
    expect(status).not_to_contain_text("Compared")
    page.screenshot(path=str(tmp_path / "demo-after-new-upload.png"), full_page=True)

    # Explaining the new image shows its overlay, at its own size.
    page.click("#explain-button")
    expect(status).to_contain_text(f"{METHOD_LABELS['lrp']} for class")
    assert shown_overlay(page).shape == (72, 120, 3)


def test_a_bad_file_shows_a_clear_message_not_a_traceback(demo_page, demo_images):
    from playwright.sync_api import expect

    page = demo_page
    page.locator("#image-input input[type=file]").set_input_files(str(demo_images["bad"]))
    message = "holiday.png: not a readable image file (unknown or unsupported format)"
    expect(page.get_by_text(message).first).to_be_visible()
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and 'File "' not in body
    assert "/tmp/" not in body, "server paths must not be shown"


def test_the_shapes_model_warns_about_a_photo_and_the_class_hint_follows_the_model(demo_page, demo_model):
    """A photo given to the embedded shapes model: a visible notice next to the result; the class box suggests
    the selected model's own class names. (A second app, in a new tab of the same browser.)"""
    from playwright.sync_api import expect

    from relevance.models.embedded import load_embedded

    shapes_label = "Shapes (test)"
    app = build_app({shapes_label: load_embedded(), TINY: demo_model}, shapes_examples=[], photo_examples=[])
    with serving(app) as url:
        page = demo_page.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        notice = page.locator("#domain-notice")
        class_box = page.locator("#class-name textarea, #class-name input").first
        expect(class_box).to_have_attribute("placeholder", "e.g. cross or 4")
        page.locator("#image-input input[type=file]").set_input_files(str(REPO / "assets" / "samples" / "chelsea.jpg"))
        expect(page.locator("#status")).to_contain_text("Top prediction")
        expect(notice).to_contain_text("Outside the model's domain")
        expect(notice).to_be_visible()
        choose(page, "model-select", TINY)  # a model of no particular domain: the notice goes
        expect(class_box).to_have_attribute("placeholder", "e.g. cherry or 3")
        expect(notice).not_to_contain_text("Outside the model's domain")
        choose(page, "model-select", shapes_label)
        expect(notice).to_contain_text("Outside the model's domain")
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLE))  # a scene: no notice
        expect(notice).not_to_contain_text("Outside the model's domain")
        page.close()
