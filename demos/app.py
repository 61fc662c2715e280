"""`relevance demo`: a Gradio app that explains what a vision or language transformer looks at.

The page has one tab per task: "Image classification" (:mod:`demos.app_image`), "Text
classification" (:mod:`demos.app_text`), "Image-text" (:mod:`demos.app_image_text`: CLIP's
image-caption similarity) and "Attention" (:mod:`demos.app_attention`). Later tasks add sibling
``*_tab`` functions called from :func:`build_app`. Models are loaded once, before the server starts
(:mod:`demos.app_models`, :func:`demos.app_text.load_text_catalog`,
:func:`demos.app_image_text.load_image_text_catalog`), and shared read-only by all requests.

Run it with ``relevance demo [--host 127.0.0.1] [--port 7860] [--share] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

# Keep Gradio and the hub client quiet and off the network unless the user says otherwise.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from demos.app_attention import attention_tab  # noqa: E402
from demos.app_image import IMAGE_TAB_CSS, image_classification_tab  # noqa: E402
from demos.app_image_text import IMAGE_TEXT_TAB_CSS, image_text_tab, load_image_text_catalog  # noqa: E402
from demos.app_models import EMBEDDED_LABEL, ModelCatalog, load_catalog  # noqa: E402
from demos.app_text import TEXT_TAB_CSS, TextExample, load_text_catalog, text_classification_tab  # noqa: E402

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_FILE_SIZE",
    "add_arguments",
    "build_app",
    "launch_app",
    "model_notice",
    "run",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Largest upload the server accepts (Gradio refuses bigger files before they reach a handler).
MAX_FILE_SIZE = "20mb"
#: Concurrent explanations per app (the models are shared read-only; each request has its own tape).
CONCURRENCY_LIMIT = 2

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHAPES_EXAMPLES_DIR = ASSETS / "examples"
PHOTO_EXAMPLES_DIR = ASSETS / "samples"

TITLE = "relevance: what does the transformer look at?"
INTRO = (
    "# relevance\n"
    "Explain what a vision transformer looks at: pick an image, a model, a method and a class, "
    "and see the relevance map laid over the image; the **Text classification** tab does the same "
    "for the words of a text, and the **Image-text** tab explains why a CLIP model matches an image "
    "with a caption. Methods: transformer attribution (Chefer et al., CVPR 2021), gradient "
    "rollout (ICCV 2021), AttnLRP, CP-LRP and baselines."
)


def _examples(folder: Path, patterns: tuple[str, ...]) -> list[str]:
    files = [p for pattern in patterns for p in folder.glob(pattern) if p.is_file()]
    return [str(p) for p in sorted(files)]


def model_notice(catalog: ModelCatalog) -> str:
    """The banner at the top of the page: which models are served, and why some are not."""
    if catalog.offline:
        return (
            "**No model hub reachable: using the embedded shapes model** "
            f"({EMBEDDED_LABEL}: a small ViT trained on synthetic shapes scenes; try the shapes examples). "
            "The ImageNet models are listed below with the reason they are unavailable."
        )
    return "Models: " + ", ".join(html.escape(label) for label in catalog.labels) + "."


def build_app(
    models: Mapping[str, torch.nn.Module] | ModelCatalog | None = None,
    *,
    device: str = "cpu",
    concurrency_limit: int = CONCURRENCY_LIMIT,
    shapes_examples: Sequence[str] | None = None,
    photo_examples: Sequence[str] | None = None,
    text_models: Mapping[str, torch.nn.Module] | ModelCatalog | None = None,
    text_examples: Sequence[TextExample] | None = None,
    image_text_models: Mapping[str, torch.nn.Module] | ModelCatalog | None = None,
    image_text_examples: Sequence[str] | None = None,
) -> gr.Blocks:
    """Build the demo's page.

    Parameters
    ----------
    models:
        The models to serve, label -> loaded model (tests inject small ones), or a
        :class:`ModelCatalog`; None loads the default catalog (hub models when available,
        the embedded shapes model always).
    device:
        Where the default catalog's models run (ignored when ``models`` is given).
    concurrency_limit:
        How many explanations may run at once.
    shapes_examples, photo_examples:
        Example image files; None: the bundled shapes scenes
        (``assets/examples``) when the embedded model is served, the bundled photos
        (``assets/samples``) when a hub model is.
    text_models:
        The text classifiers of the text tab, label -> loaded model, or a catalog;
        None loads the default text catalog (the embedded reviews-bert, hub models only when cached).
    text_examples:
        The text tab's examples (None: reviews of the reviews world).
    image_text_models:
        The image-text models of the image-text tab, label -> loaded model, or a catalog; None loads the
        default one (the embedded shapes-clip, hub CLIPs only when cached).
    image_text_examples:
        The image-text tab's shapes scenes (None: the bundled ones, ``assets/examples``).
    """
    if models is None:
        catalog = load_catalog(device)
    elif isinstance(models, ModelCatalog):
        catalog = models
    else:
        catalog = ModelCatalog.from_models(models)
    if shapes_examples is None:
        shapes_examples = _examples(SHAPES_EXAMPLES_DIR, ("*.png",)) if EMBEDDED_LABEL in catalog.models else []
    if photo_examples is None:
        photo_examples = _examples(PHOTO_EXAMPLES_DIR, ("*.jpg", "*.jpeg", "*.png")) if catalog.hub_labels else []
    if text_models is None:
        text_catalog = load_text_catalog(device)
    elif isinstance(text_models, ModelCatalog):
        text_catalog = text_models
    else:
        text_catalog = ModelCatalog.from_models(text_models)
    if image_text_models is None:
        image_text_catalog = load_image_text_catalog(device)
    elif isinstance(image_text_models, ModelCatalog):
        image_text_catalog = image_text_models
    else:
        image_text_catalog = ModelCatalog.from_models(image_text_models)
    if image_text_examples is None:
        image_text_examples = _examples(SHAPES_EXAMPLES_DIR, ("scene-*.png",))

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO)
        gr.Markdown(model_notice(catalog), elem_id="model-notice")
        with gr.Tabs():
            image_classification_tab(
                catalog,
                shapes_examples=shapes_examples,
                photo_examples=photo_examples,
                concurrency_limit=concurrency_limit,
            )
            text_classification_tab(text_catalog, concurrency_limit=concurrency_limit,
                                    **({} if text_examples is None else {"examples": text_examples}))
            image_text_tab(image_text_catalog, examples=image_text_examples, concurrency_limit=concurrency_limit)
            attention_tab(catalog, examples=[*shapes_examples, *photo_examples], concurrency_limit=concurrency_limit)
    app.queue(default_concurrency_limit=concurrency_limit, max_size=64)
    return app


def launch_app(
    app: gr.Blocks, *, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, share: bool = False
) -> str:
    """Start serving ``app`` in a background thread and return its local URL.

    Binds 127.0.0.1 unless told otherwise, caps uploads at :data:`MAX_FILE_SIZE`, and shows
    handler errors in the page (the handlers only ever raise readable messages).
    """
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        show_error=True,
        inbrowser=False,
        quiet=True,
        prevent_thread_lock=True,
        ssr_mode=False,
        footer_links=["api"],
        css=" ".join((IMAGE_TAB_CSS, TEXT_TAB_CSS, IMAGE_TEXT_TAB_CSS)),
    )
    return str(app.local_url or f"http://{host}:{port}/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``relevance demo``."""
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--device", default="cpu", help="torch device for the models: cpu (default), cuda, ...")


def run(args: argparse.Namespace) -> int:
    """``relevance demo``: load the models once, then serve the app until interrupted."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"relevance demo: device {args.device!r} requested but CUDA is not available", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        catalog = load_catalog(args.device)
    except RuntimeError as error:
        print(f"relevance demo: {error}", file=sys.stderr)
        return 1
    if catalog.offline:
        print("No model hub reachable: using the embedded shapes model.", flush=True)
    text_catalog = load_text_catalog(args.device)
    image_text_catalog = load_image_text_catalog(args.device)
    labels = [*catalog.labels, *text_catalog.labels, *image_text_catalog.labels]
    print(f"Loaded {', '.join(labels)} in {time.perf_counter() - started:.1f} s.", flush=True)
    app = build_app(catalog, text_models=text_catalog, image_text_models=image_text_catalog)
    with _stop_on_signals() as stop:
        try:
            url = launch_app(app, host=args.host, port=args.port, share=args.share)
            print(f"relevance demo running at {url}" + (f" (public: {app.share_url})" if app.share_url else ""))
            print("Press Ctrl+C to stop.", flush=True)
            _serve_until_stopped(app, stop)
        except OSError as error:
            print(f"relevance demo: cannot start the server: {error}", file=sys.stderr)
            return 1
        finally:
            app.close()
    return 0


def _serve_until_stopped(app: gr.Blocks, stop: threading.Event) -> None:
    """Keep the main thread waiting (the server runs in its own threads) until Ctrl+C or SIGTERM sets ``stop``."""
    while not stop.wait(0.2):
        pass


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """While the server runs, Ctrl+C (SIGINT) and SIGTERM set the event yielded instead of raising
    ``KeyboardInterrupt`` wherever the main thread happens to be (inside the server's start-up, say, where an
    exception can leave a lock held and the shutdown waiting on it); the previous handlers come back afterwards."""
    event = threading.Event()
    previous = {number: signal.signal(number, lambda *_: event.set()) for number in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(number) is not signal.SIG_IGN}  # ignored (nohup, background): left ignored
    try:
        yield event
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    """``python -m demos.app``: the same as ``relevance demo``."""
    parser = argparse.ArgumentParser(prog="relevance demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
