"""Take the README's screenshots of the running demo (``docs/screenshot-demo.png``, ``docs/screenshot-image-text.png``).

Serves the demo with the default models (offline: the embedded shapes models), opens it in
Debian's headless Chromium, picks a bundled example, explains it, compares all methods and
saves a full-page screenshot, palette-compressed to stay small. ``--tab image-text`` does the
same on the Image-text tab (a shapes scene against its captions, every method for the first).
Run::

    HF_HUB_OFFLINE=1 .venv/bin/python -m demos.app_screenshot [--tab image-text]
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from PIL import Image  # noqa: E402

__all__ = ["DEFAULT_OUT", "MAX_BYTES", "TAB_OUTS", "take_image_text_screenshot", "take_screenshot"]

DOCS = Path(__file__).resolve().parent.parent / "docs"
DEFAULT_OUT = DOCS / "screenshot-demo.png"
#: The screenshot of each tab this script takes, by ``--tab``.
TAB_OUTS = {"image": DEFAULT_OUT, "image-text": DOCS / "screenshot-image-text.png"}
#: The screenshot must stay under this size (it ships in the repository).
MAX_BYTES = 300_000
TIMEOUT_MS = 120_000


def _compress(png: bytes, max_bytes: int) -> bytes:
    """Palette-quantise (and if needed downscale) a PNG until it is under ``max_bytes``."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        resized = image if scale == 1.0 else image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
        buffer = io.BytesIO()
        resized.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or scale < 0.3:
            return buffer.getvalue()
        scale *= 0.85


def take_screenshot(
    out: Path = DEFAULT_OUT, *, example: str = "scene-20000004", method_label: str | None = None
) -> Path:
    """Serve the demo, drive it to an explained example and the method comparison, save the page."""
    from demos.app import build_app
    from demos.app_models import load_catalog
    from demos.app_testing import chromium_context, serving

    app = build_app(load_catalog("cpu"))
    with serving(app) as url, chromium_context(viewport=(1280, 900)) as context:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.locator(f"#shapes-examples button.gallery-item:has(img[src*='{example}'])").first.click()
        page.locator("#status", has_text="Top prediction").wait_for()
        if method_label:
            page.click("#method-select input")
            page.get_by_role("option", name=method_label, exact=True).click()
        page.click("#explain-button")
        page.locator("#status", has_text="for class").wait_for()
        page.click("#compare-button")
        page.locator("#status", has_text="Compared").wait_for()
        page.locator("#compare-gallery img").nth(6).wait_for()
        page.wait_for_timeout(500)  # let the images finish painting
        png = page.screenshot(full_page=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_compress(png, MAX_BYTES))
    return out


def take_image_text_screenshot(
    out: Path = TAB_OUTS["image-text"], *, example: str = "scene-20000001", method: str | None = None
) -> Path:
    """Serve the demo, open the Image-text tab, explain a shapes scene against its captions and compare every
    method for the first caption, save the page."""
    from demos.app import build_app
    from demos.app_image_text import image_text_methods
    from demos.app_models import load_catalog
    from demos.app_testing import chromium_context, serving
    from demos.app_text import method_label

    app = build_app(load_catalog("cpu"))
    with serving(app) as url, chromium_context(viewport=(1280, 900)) as context:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Image-text").click()
        page.locator("#it-examples tr.tr-body", has=page.locator(f"img[src*='{example}']")).first.click()
        page.wait_for_function("() => document.querySelector('#it-captions textarea').value.startsWith('a photo')")
        if method:
            page.click("#it-method input")
            page.get_by_role("option", name=method_label(method), exact=True).click()
        page.click("#it-explain")
        page.locator("#it-status", has_text="caption(s)").wait_for()
        page.click("#it-compare-button")
        page.locator("#it-status", has_text="Compared").wait_for()
        page.locator("#it-compare-gallery img").nth(len(image_text_methods()) - 1).wait_for()
        page.wait_for_timeout(500)  # let the images finish painting
        png = page.screenshot(full_page=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_compress(png, MAX_BYTES))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tab", choices=sorted(TAB_OUTS), default="image", help="the tab to show (default image)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output PNG (default: " + ", ".join(f"{t}: {p}" for t, p in TAB_OUTS.items()) + ")")
    args = parser.parse_args(argv)
    take = take_image_text_screenshot if args.tab == "image-text" else take_screenshot
    path = take(args.out or TAB_OUTS[args.tab])
    print(f"{path} ({path.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
