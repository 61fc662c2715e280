"""``relevance flows``: attention flows of images or a text, one model or two compared (DeRose et al. 2020).

``relevance flows IMAGE... --out DIR`` writes ``DIR/<stem>__flow.html`` and ``__flow.png`` per image: how the
readout (the [CLS] decision) draws on the input tokens block by block. ``--compare MODEL`` adds a second model
on the same inputs (e.g. a fine-tuned checkpoint folder written by ``demos/train_shapes.py``) and writes
``__flow-comparison.html`` / ``.png``: both flows side by side and their difference. See :mod:`relevance.flows`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relevance.cli.views import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, add_inputs, capture_inputs, \
    inputs_of, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs(parser)
    parser.add_argument("--compare", default=None, metavar="MODEL",
                        help="a second model (name or train_shapes folder) to compare on the same inputs")
    parser.add_argument("--output", default="readout",
                        help="the traced output: 'readout' (the [CLS] decision, default) or a token index")
    parser.add_argument("--heads", default=None, help="comma-separated heads averaged in every block (default: all)")
    parser.add_argument("--weights", choices=("attention", "gradient"), default="attention",
                        help="edge weights: attention (rollout, default) or gradient x attention")
    parser.add_argument("--names", default=None, help="captions of the two models, 'FIRST,SECOND'")


def _options(args: argparse.Namespace) -> dict:
    output = args.output if args.output == "readout" else _int(args.output, "--output")
    heads = None if args.heads is None else [_int(h, "--heads") for h in args.heads.split(",") if h.strip()]
    return dict(output=output, heads=heads, weights=args.weights, stream=args.stream)


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{option} takes integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import relevance.views as V

    try:
        inputs, stems = inputs_of(args)
        options = _options(args)
        text = args.text is not None
        first = capture_inputs(load_model(args.model, text, args.device), inputs, text, gradients=True)
        second = None
        if args.compare is not None:
            second = capture_inputs(load_model(args.compare, text, args.device), inputs, text, gradients=True)
        names = tuple(args.names.split(",", 1)) if args.names else None
        if names is not None and len(names) != 2:
            raise UsageError("--names takes two captions, 'FIRST,SECOND'")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for index, stem in enumerate(stems):
            if second is None:
                view = V.flow_view(first, sample=index, name=names[0] if names else None, **options)
                flow = view.extras["flows"][0]
                written.append(view.save(out / f"{stem}__flow.html"))
                path = out / f"{stem}__flow.png"
                _save_png(V.flow_image(flow, title=names[0] if names else None), path)
            else:
                view = V.flow_comparison_view(first, second, sample=index, names=names, **options)
                written.append(view.save(out / f"{stem}__flow-comparison.html"))
                path = out / f"{stem}__flow-comparison.png"
                _save_png(V.flow_comparison_image(view.extras["comparison"]), path)
            written.append(path)
    except (UsageError, ValueError) as error:
        print(f"relevance flows: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as error:
        print(f"relevance flows: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(path)
    return EXIT_OK


def _save_png(image, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)
