"""``relevance views head|model|neuron|grid``: write attention views of images or a text.

``relevance views head IMAGE... --out DIR`` writes ``DIR/<image-stem>__head.html`` per image (``model`` also writes
the thumbnail grid as ``__model.png``, ``grid`` writes ``__grid.png``); ``--text TEXT`` explains a text with a
text model instead. HTML files are self-contained (inline script and style, a static drawing without
JavaScript): open them in any browser, offline. See :mod:`relevance.views`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KINDS = ("head", "model", "neuron", "grid")
#: The text model the commands use by default once a text family is installed (the BERT family's embedded model).
DEFAULT_TEXT_MODEL = "reviews-bert"


class UsageError(Exception):
    """A problem with the command line; reported as ``error: ...`` with exit status 2."""


def add_inputs(parser: argparse.ArgumentParser) -> None:
    """The options every attention command shares: the model, the inputs, the output folder."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (or give --text)")
    parser.add_argument("--text", default=None, help="a text to show instead of images (needs a text model)")
    parser.add_argument("--model", default=None,
                        help="a model name (see relevance.models.list_models()) or a folder written by "
                             "demos/train_shapes.py; default: shapes-vit for images, "
                             f"{DEFAULT_TEXT_MODEL} for --text")
    parser.add_argument("--out", default="relevance_views", help="output folder (default: relevance_views)")
    parser.add_argument("--stream", default=None, help="the token stream of a two-tower model (image or text)")
    parser.add_argument("--device", default="cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="head, model and neuron views (HTML, after BertViz) or the "
                                                    "layers x heads grid of heatmaps (PNG)")
    add_inputs(parser)
    parser.add_argument("--layer", type=int, default=None, help="the block shown first (default: the last)")
    parser.add_argument("--head", type=int, default=0, help="the head shown first (model and neuron views)")


def load_model(name: str | None, text: bool, device: str) -> Any:
    """The model of an attention command: a registry name, a train_shapes folder, or the default."""
    import relevance.models as models

    if name is not None and Path(name).is_dir():
        from relevance.models.embedded import load_embedded

        try:
            return load_embedded(device=device, directory=name)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot load the model folder {name}: {error}") from None
    if name is None:
        name = DEFAULT_TEXT_MODEL if text else "shapes-vit"
    try:
        return models.create(name, device=device)
    except models.UnknownModelError as error:
        raise UsageError(str(error)) from None
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        raise UsageError(f"cannot load model {name}: {error}") from None


def inputs_of(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The model inputs and one file stem per sample."""
    if args.text is not None and args.images:
        raise UsageError("give either --text or image files, not both")
    if args.text is not None:
        if not args.text.strip():
            raise UsageError("--text is empty")
        words = re.sub(r"[^A-Za-z0-9]+", "-", args.text).strip("-")[:40] or "text"
        return [args.text], [words]
    if not args.images:
        raise UsageError("give image files, or --text TEXT")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"image not found: {missing[0]}")
    stems = [Path(p).stem for p in args.images]
    return list(args.images), [s if stems.count(s) == 1 else f"{s}-{i}" for i, s in enumerate(stems)]


def capture_inputs(model: Any, inputs: Any, text: bool, **options: Any):
    from relevance.adapter import adapter_for
    from relevance.views import capture

    streams = adapter_for(model).depths()
    if text and "text" not in streams:
        name = adapter_for(model).info.name or type(model).__name__
        raise UsageError(f"{name} has no text stream (its streams: {', '.join(streams)}): --text needs a text model")

    try:
        return capture(model, inputs, **options)
    except (ValueError, TypeError) as error:
        kind = "a text" if text else "images"
        raise UsageError(f"this model cannot take {kind}: {error}") from None


def _write(kind: str, captured: Any, index: int, stem: str, out: Path, args: argparse.Namespace) -> list[Path]:
    from PIL import Image

    import relevance.views as V

    common = dict(sample=index, stream=args.stream)
    if kind == "grid":
        return [V.attention_grid(captured, **common).save(out / f"{stem}__grid.png")]
    if kind == "head":
        return [V.head_view(captured, layer=args.layer, **common).save(out / f"{stem}__head.html")]
    if kind == "neuron":
        return [V.neuron_view(captured, layer=args.layer, head=args.head, **common).save(out / f"{stem}__neuron.html")]
    picture = out / f"{stem}__model.png"
    Image.fromarray(V.model_view_image(captured, **common)).save(picture)
    return [V.model_view(captured, layer=args.layer, head=args.head, **common).save(out / f"{stem}__model.html"),
            picture]


def run(args: argparse.Namespace) -> int:
    try:
        if args.kind == "grid" and args.layer is not None:
            raise UsageError("--layer does not apply to the grid, which shows every block")
        inputs, stems = inputs_of(args)
        model = load_model(args.model, args.text is not None, args.device)
        captured = capture_inputs(model, inputs, args.text is not None, query_key=args.kind == "neuron")
        if args.stream is not None and args.stream not in captured.streams:
            raise UsageError(f"no stream {args.stream!r}; this model has {', '.join(captured.streams)}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for index, stem in enumerate(stems):
            written += _write(args.kind, captured, index, stem, out, args)
    except UsageError as error:
        print(f"relevance views: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # e.g. --layer out of range, a model without query/key recording
        print(f"relevance views: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as error:
        print(f"relevance views: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(path)
    return EXIT_OK
