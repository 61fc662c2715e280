"""``relevance figures NAME``: draw one of the papers' figures as PNG and PDF (see :mod:`relevance.figures`).

``relevance figures --list`` lists them; ``relevance figures all`` draws every figure this installation can.
"""

from __future__ import annotations

import argparse
import sys
import time


def _names(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (methods and classes may be given either way)."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``relevance figures`` (the figure registry's names are listed in ``--help``)."""
    from relevance.figures import FIGURES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "figures:\n" + "\n".join(f"  {spec.name:<15}{spec.summary}" for spec in FIGURES.values())
    parser.add_argument("name", nargs="?", metavar="NAME", help="a figure (see --list), or 'all'")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--model", default=None,
                        help="model name (default: the embedded shapes-vit; a timm name with --checkpoint for the "
                             "papers' ViT-B/16)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE", help="local weights for --model")
    parser.add_argument("--inputs", nargs="+", default=None, metavar="PATH", help="image files or folders")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="methods (space- or comma-separated; default: every method that applies)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                        help="class-specific: the two classes to explain (names or indices; default: the two "
                             "most probable)")
    parser.add_argument("--texts", nargs="+", default=None, metavar="TEXT",
                        help="text: sentences (the last is the mixed one); image-text: captions")
    parser.add_argument("--start-layer", type=int, default=None,
                        help="start_layer of the methods that chain blocks (default: the engine's, 0; the "
                             "perturbation figure uses the papers' scripts' 1 for TA and rollout)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="perturbation: held-out scenes, or the first N images of --data (default 48); "
                             "segmentation: scenes (default 3)")
    parser.add_argument("--seed", type=int, default=10_000_000, help="first held-out scene seed")
    parser.add_argument("--data", default=None, metavar="IMAGENET_VAL_DIR",
                        help="perturbation: an ImageNet validation folder (with an ImageNet --model)")
    parser.add_argument("--out", default="out/figures", help="output folder (default out/figures)")
    parser.add_argument("--formats", nargs="+", choices=["png", "pdf"], default=["png", "pdf"],
                        help="picture formats (default: png pdf); a .json of what the figure shows is always written")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    """Draw the named figure(s) into ``--out``; 0 on success, 2 for usage errors and unavailable figures."""
    from relevance.figures import FIGURES, FigureRequest, FigureUnavailableError, make_figure, write_figure

    if args.list:
        for spec in FIGURES.values():
            needs = f"  (needs {spec.needs})" if spec.needs else ""
            print(f"{spec.name:<15}{spec.summary}{needs}")
        return 0
    if args.name is None:
        print("relevance figures: error: name a figure (relevance figures --list shows them)", file=sys.stderr)
        return 2
    names = list(FIGURES) if args.name == "all" else [args.name]
    if args.name != "all" and args.name not in FIGURES:
        print(f"relevance figures: error: unknown figure {args.name!r}; choose one of {', '.join(FIGURES)} or all",
              file=sys.stderr)
        return 2
    if args.samples is not None and args.samples < 1:
        print("relevance figures: error: --samples must be positive", file=sys.stderr)
        return 2
    request = FigureRequest(model=args.model, checkpoint=args.checkpoint, inputs=args.inputs,
                            methods=_names(args.methods), classes=_names(args.classes), start_layer=args.start_layer,
                            samples=args.samples, seed=args.seed, data=args.data, texts=args.texts,
                            device=args.device)
    status = 0
    for name in names:
        started = time.time()
        try:
            result = make_figure(name, request)
        except FigureUnavailableError as problem:
            print(f"relevance figures: {'skipped' if args.name == 'all' else 'error'}: {name}: {problem}",
                  file=sys.stderr)
            status = status if args.name == "all" else 2
            continue
        except (ValueError, FileNotFoundError) as problem:
            print(f"relevance figures: error: {name}: {problem}", file=sys.stderr)
            status = 2
            continue
        paths = write_figure(result, args.out, name, formats=tuple(args.formats))
        print(f"{name}: {time.time() - started:.1f}s, wrote {', '.join(str(p) for p in paths)}")
    return status
