"""Helpers to run the demo in-process and drive it with a headless browser.

Used by the demo's tests (``tests/test_demo_app.py``, ``tests/test_demo_browser.py``) and by the
screenshot script (:mod:`demos.app_screenshot`): a tiny random ViT that makes the app fast to
exercise, a context manager that serves an app on a free 127.0.0.1 port, and the launch settings
of Debian's Chromium (never ``playwright install``; see DEVELOPERS.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import gradio as gr
import torch

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "chromium_context",
    "free_port",
    "serving",
    "tiny_vit",
]

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def tiny_vit(
    *,
    depth: int = 3,
    class_names: Sequence[str] = ("apple", "banana", "cherry", "date", "elderberry"),
    image_size: int = 32,
    seed: int = 0,
) -> torch.nn.Module:
    """A small random LRP-aware ViT (patch 8, width 32) with class names, for fast tests."""
    import timm

    from relevance.models.vit import from_timm
    from relevance.images import DataConfig

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        module = timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=image_size,
            patch_size=8,
            embed_dim=32,
            depth=depth,
            num_heads=2,
            num_classes=len(class_names),
        )
    finally:
        torch.random.set_rng_state(generator_state)
    model = from_timm(module.eval())
    model.data_config = DataConfig(
        input_size=(image_size, image_size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="squash",
    )
    model.class_names = list(class_names)
    return model


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(app: gr.Blocks, *, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a background thread; yields its URL, closes it afterwards."""
    from demos.app import launch_app

    url = launch_app(app, host="127.0.0.1", port=port or free_port())
    try:
        yield url
    finally:
        app.close()


@contextlib.contextmanager
def chromium_context(*, viewport: tuple[int, int] = (1280, 1000)) -> Iterator[object]:
    """A Playwright browser context on Debian's headless Chromium with a fresh user-data folder."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM_PATH).is_file() or not os.access(CHROMIUM_PATH, os.X_OK):
        raise FileNotFoundError(f"{CHROMIUM_PATH} is missing: install Debian's chromium (make browser)")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="relevance-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM_PATH,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": viewport[0], "height": viewport[1]},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()
