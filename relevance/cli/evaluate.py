"""``relevance evaluate``: score every explanation method on held-out scenes of the shapes world.

Prints a Markdown table of methods x metrics (pointing game, mass in the object, class specificity,
the §5.2 segmentation metrics, the §5.3 perturbation AUCs) with each method's time per explanation, and
writes ``results.md``, ``results.json`` and ``figure.png`` (scenes x methods with overlays) to ``--out``.
See :mod:`relevance.evaluation.shapes_benchmark` for the protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shapes-vit",
                        help="'shapes-vit' (the embedded model, default) or a folder with config.json and "
                             "model.safetensors written by demos/train_shapes.py")
    parser.add_argument("--scenes", "--samples", dest="scenes", type=int, default=200, metavar="N",
                        help="number of held-out scenes (default 200); --samples N is the same (the name the "
                             "text evaluations will share)")
    parser.add_argument("--seed", type=int, default=10_000_000,
                        help="first held-out scene seed (default 10000000, far from the training seeds)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: all of relevance.list_methods(), the gradient and "
                             "perturbation methods with their default options)")
    parser.add_argument("--start-layer", type=int, default=None,
                        help="start_layer for transformer_attribution, rollout and gradient_rollout "
                             "(default: the papers' scripts, 1 for TA and rollout, 0 for gradient rollout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-random", action="store_true", help="leave out the random-map reference row")
    parser.add_argument("--figure-rows", type=int, default=6, help="explained objects shown in figure.png")
    parser.add_argument("--out", default="out/evaluate", help="folder for results.md, results.json, figure.png")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load(name: str, device: str):
    from relevance.models.embedded import EMBEDDED_NAME, load_embedded

    if name == EMBEDDED_NAME:
        return load_embedded(device=device), name
    path = Path(name)
    if path.is_dir():
        return load_embedded(device=device, directory=path), str(path)
    raise ValueError(f"--model must be {EMBEDDED_NAME!r} or a folder written by demos/train_shapes.py "
                     f"(the shapes world needs a model trained on it); got {name!r}")


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    import relevance
    from relevance.evaluation import shapes_benchmark as E
    from relevance.data import SHAPE_CLASSES

    if args.scenes < 1 or args.batch_size < 1:
        print("relevance evaluate: error: --scenes (--samples) and --batch-size must be positive", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("relevance evaluate: error: --seed must be non-negative", file=sys.stderr)
        return 2
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        try:
            methods = [relevance.get_method(m).name for m in methods]
        except ValueError as error:
            print(f"relevance evaluate: error: {error}", file=sys.stderr)
            return 2
    try:
        model, model_name = _load(args.model, args.device)
    except (ValueError, FileNotFoundError) as error:
        print(f"relevance evaluate: error: {error}", file=sys.stderr)
        return 2
    if list(getattr(model, "class_names", None) or []) != list(SHAPE_CLASSES):
        print("relevance evaluate: error: the model's classes are not the shapes world's "
              f"{', '.join(SHAPE_CLASSES)}", file=sys.stderr)
        return 2
    if args.start_layer is not None and not 0 <= args.start_layer < len(model.blocks):
        print(f"relevance evaluate: error: --start-layer must lie in 0..{len(model.blocks) - 1}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    started = time.time()
    result = E.evaluate(model, scenes=args.scenes, seed=args.seed, methods=methods, batch_size=args.batch_size,
                        start_layer=args.start_layer, random_reference=not args.no_random,
                        progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = E.markdown_report(result, model_name)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(E.result_dict(result), indent=2) + "\n")
    grid = Image.fromarray(E.figure(model, result, rows=args.figure_rows))
    # a 256-colour palette keeps the README figure small (~250 kB instead of ~700 kB)
    grid.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out / "figure.png", optimize=True)
    print(result.table())
    print(f"\n{len(result.samples)} explained objects in {result.scenes} scenes, "
          f"{time.time() - started:.0f}s; wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'figure.png'}")
    return 0
