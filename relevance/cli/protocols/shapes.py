"""``relevance evaluate --protocol shapes``: every method on held-out scenes of the shapes world.

Prints a Markdown table of methods x metrics (pointing game, mass in the object, class specificity, the §5.2
segmentation metrics, the §5.3 perturbation AUCs) and writes ``results.md``, ``results.json``, ``figure.png``
(scenes x methods with overlays) and the perturbation curves (``perturbation.png``, ``.pdf``) to ``--out``.
See :mod:`relevance.evaluation.shapes_benchmark` for the protocol. Like the dataset protocols it runs in shards of
``--shard-size`` scenes (one shard for up to 500 scenes, by default) over ``torchrun`` processes, resumably; the
shards live in ``--out``/shards.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from relevance.cli.evaluate import error
from relevance.cli.protocols import run_on_runtime

#: Held-out scenes when ``--samples`` is not given.
DEFAULT_SCENES = 200


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
    """Run the shapes benchmark on this process's shards; rank 0 merges and writes the outputs (exit status)."""
    return run_on_runtime(args, _run)


def _run(args: argparse.Namespace, runtime) -> int:
    import torch
    from PIL import Image

    import relevance
    from relevance.data import SHAPE_CLASSES
    from relevance.evaluation import shapes_benchmark as E
    from relevance.evaluation.sharding import ShardPlan, ShardStore, run_shards

    scenes = args.samples or DEFAULT_SCENES
    methods = None
    if args.methods:
        try:
            methods = [relevance.get_method(m.strip()).name for m in args.methods.split(",") if m.strip()]
        except ValueError as problem:
            return error(str(problem))
    if args.checkpoint is not None:
        return error("the shapes protocol takes the embedded model or a trained folder as --model, not --checkpoint")
    try:
        model, model_name = _load(args.model or "shapes-vit", str(runtime.device))
    except (ValueError, FileNotFoundError) as problem:
        return error(str(problem))
    if list(getattr(model, "class_names", None) or []) != list(SHAPE_CLASSES):
        return error(f"the model's classes are not the shapes world's {', '.join(SHAPE_CLASSES)}")
    if args.start_layer is not None and not 0 <= args.start_layer < len(model.blocks):
        return error(f"--start-layer must lie in 0..{len(model.blocks) - 1}")
    torch.manual_seed(0)
    started = time.time()
    names, start_layers = E.resolve_methods(model, methods, args.start_layer, not args.no_random)
    out = Path(args.out or "out/evaluate")
    manifest = dict(protocol="shapes", model=model_name, scenes=scenes, seed=args.seed, methods=names,
                    start_layers=start_layers, batch_size=args.batch_size, shard_size=args.shard_size,
                    device=runtime.device.type, format=1)

    def compute(indices, advance):
        return E.evaluate_scenes(model, indices, seed=args.seed, methods=names, start_layers=start_layers,
                                 batch_size=args.batch_size, advance=advance)

    rows = run_shards(ShardPlan(scenes, args.shard_size), ShardStore(out / "shards", manifest), runtime, compute,
                      progress=not args.no_progress, desc="evaluate")
    if rows is None:  # not rank 0
        return 0
    result = E.result_from_rows(rows, methods=names, scenes=scenes, seed=args.seed, start_layers=start_layers,
                                size=int(model.data_config.input_size[-1]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(E.markdown_report(result, model_name))
    (out / "results.json").write_text(json.dumps(E.result_dict(result), indent=2) + "\n")
    grid = Image.fromarray(E.figure(model, result, rows=args.figure_rows))
    # a 256-colour palette keeps the README figure small (~250 kB instead of ~700 kB)
    grid.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out / "figure.png", optimize=True)
    written = [out / "results.md", out / "results.json", out / "figure.png"]
    written += _curves_figure(result, model_name, out)
    print(result.table())
    print(f"\n{len(result.samples)} explained objects in {result.scenes} scenes, {runtime.world_size} process(es), "
          f"{time.time() - started:.0f}s; wrote {', '.join(str(p) for p in written)}")
    return 0


def _curves_figure(result, model_name: str, out: Path) -> list[Path]:
    """The perturbation curves of every method, AUCs in the legends (``relevance figures perturbation``)."""
    from relevance.figures.perturbation import curves_figure
    from relevance.figures.style import save

    curves = {m: result.scores[m].curves() for m in result.methods}
    figure = curves_figure(curves, title=f"Perturbation on {result.scenes} held-out shapes scenes ({model_name}); "
                                         "hit = the explained class is still predicted",
                           start_layers=result.start_layers)
    return save(figure, out / "perturbation")
