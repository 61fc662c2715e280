"""``relevance evaluate --model shapes-clip``: how every method grounds captions on held-out scenes of the shapes world.

One caption "a photo of a <colour> <shape>" per object of the held-out scenes ``--seed``, ``--seed`` + 1, ...
(:func:`relevance.evaluation.grounding.grounding_samples`, ``--samples N`` captions); each method explains the pair
(image, caption) and is scored against the scene's known object masks and words
(:mod:`relevance.evaluation.grounding`): the pointing game (strict and within half a patch), the share of the positive
image relevance on the named object, its specificity against the scene's other objects, and the share of the
caption's positive relevance on its colour and shape words. ``random`` is the floor (``--no-random``: left out).

Writes ``results.md`` (the table, mean ± 95 % confidence interval in percent, and the settings), ``results.json`` and
``figure.png`` (captions x methods) to ``--out`` (default ``out/evaluate-grounding``); sharded over ``torchrun``
processes and resumable like every protocol (:mod:`relevance.evaluation.sharding`, one row per caption).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from relevance.cli.protocols import run_on_runtime
from relevance.cli.protocols.images import UsageError

PROTOCOL = "grounding"
#: Captions when ``--samples`` is not given.
DEFAULT_SAMPLES = 200
#: The caption template (the shapes CLIP's training captions).
TEMPLATE = "a photo of {}"


def run(args: argparse.Namespace) -> int:
    """Run the grounding benchmark on this process's shards; rank 0 merges and writes the outputs (exit status)."""
    return run_on_runtime(args, _run)


def load_grounding_model(name: str, device: str) -> Any:
    """``shapes-clip``, or a folder written by ``demos/train_shapes_clip.py`` (the world needs a model trained on
    it)."""
    from relevance.models.shapes_clip import EMBEDDED_NAME, load_shapes_clip

    if name != EMBEDDED_NAME and not Path(name).is_dir():
        raise UsageError(f"--model must be {EMBEDDED_NAME!r} or a folder written by demos/train_shapes_clip.py (the "
                         f"shapes world's captions need a model trained on them); got {name!r}")
    try:
        return load_shapes_clip(device=device) if name == EMBEDDED_NAME else load_shapes_clip(device, directory=name)
    except (OSError, ValueError) as problem:
        raise UsageError(f"cannot load {name}: {problem}") from None


def _run(args: argparse.Namespace, runtime) -> int:
    from PIL import Image

    from relevance.evaluation import grounding as G
    from relevance.evaluation.sharding import ShardPlan, ShardStore, run_shards

    if args.checkpoint is not None:
        raise UsageError("the grounding protocol takes shapes-clip or a trained folder as --model, not --checkpoint")
    started, load = time.time(), os.getloadavg()[0]
    model_name = args.model or "shapes-clip"
    model = load_grounding_model(model_name, str(runtime.device))
    try:
        names = G.method_names(args.methods.split(",") if args.methods else None, not args.no_random)
    except ValueError as problem:
        raise UsageError(str(problem)) from None
    depth = min(model.config.vision.layers, model.config.text.layers)
    if args.start_layer is not None and not -depth <= args.start_layer < depth:
        raise UsageError(f"--start-layer must lie in 0..{depth - 1} (or -{depth}..-1), got {args.start_layer}")
    count = args.samples or DEFAULT_SAMPLES
    samples = G.grounding_samples(count, args.seed, int(model.data_config.input_size[0]), TEMPLATE)
    out = Path(args.out or f"out/evaluate-{PROTOCOL}")
    manifest = dict(protocol=PROTOCOL, model=model_name, samples=count, seed=args.seed, methods=names,
                    start_layer=args.start_layer, template=TEMPLATE, batch_size=args.batch_size,
                    shard_size=args.shard_size, device=runtime.device.type, format=1)

    def compute(indices: range, advance) -> dict:
        return G.grounding_rows(model, indices, args.seed, names, template=TEMPLATE, start_layer=args.start_layer,
                                batch_size=args.batch_size, advance=advance, samples=samples)

    rows = run_shards(ShardPlan(count, args.shard_size), ShardStore(out / "shards", manifest), runtime, compute,
                      progress=not args.no_progress, desc=PROTOCOL)
    if rows is None:  # not rank 0
        return 0
    result = G.result_from_rows(model, rows, names, samples, args.seed, start_layer=args.start_layer,
                                figure_rows=args.figure_rows)
    seconds = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown_report(result, model_name, count, args, seconds, load))
    (out / "results.json").write_text(json.dumps(result_dict(result, model_name), indent=2) + "\n")
    Image.fromarray(result.figure(rows=args.figure_rows)).quantize(
        colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out / "figure.png", optimize=True)
    written = [out / "results.md", out / "results.json", out / "figure.png"]
    print(result.table())
    print(f"\n{count} captions, {runtime.world_size} process(es), {seconds:.0f}s; wrote "
          + ", ".join(str(p) for p in written))
    return 0


def _scenes(result) -> tuple[int, int]:
    """(scenes, captions that name one object of a scene with several)."""
    return (len({s.scene.seed for s in result.samples}),
            sum(len(s.scene.labels) > 1 for s in result.samples))


def markdown_report(result, model_name: str, count: int, args: argparse.Namespace, seconds: float,
                    load: float) -> str:
    """``results.md``: what was evaluated, how to read the metrics, the table, and the command with its time."""
    import relevance

    scenes, several = _scenes(result)
    starts = ", ".join(f"{m} {v['image']}/{v['text']}" for m, v in result.start_layers.items()
                       if relevance.get_method(m).uses_start_layer)
    where = "its default start layer" if args.start_layer is None else f"start layer {args.start_layer}"
    command = f"relevance evaluate --model {model_name} --samples {count} --seed {args.seed}"
    if args.methods:
        command += f" --methods {args.methods}"
    return f"""# Grounding captions on the shapes world ({model_name})

{count} captions "a photo of a <colour> <shape>", one per object of {scenes} held-out scenes (seeds
{args.seed}..{args.seed + scenes - 1}; {several} captions name one object of a scene with several). Each method
explains the pair (image, caption) at {where} (image/text block: {starts or 'none'}).
Mean ± 95% confidence interval, in percent; best non-random value in bold.

* Pointing: the map's maximum lies on the named object (± half a patch: within half a patch of it).
* Mass in object: share of the positive image relevance on the named object.
* Specificity: its share against the scene's other objects (captions of scenes with several objects only).
* Colour+shape words: share of the positive text relevance on the colour and shape words among the caption's
  six words (chance: 1/3).

{result.table()}

`{command}` took {seconds / 60:.1f} minutes (load average {load:.1f} on {os.cpu_count()} cores).
"""


def result_dict(result, model_name: str) -> dict:
    """``results.json``: the settings and, per method and metric, the mean and 95 % half-width (percent) and the
    number of samples where the metric is defined."""
    scenes, several = _scenes(result)
    return dict(protocol=PROTOCOL, model=model_name, seed=result.seed, samples=len(result.samples), scenes=scenes,
                several_objects=several, methods=result.methods, start_layers=result.start_layers,
                metrics={m: {key: dict(mean=_finite(mean), ci95=_finite(half), n=n)
                             for key, (mean, half, n) in result.summary(m).items()} for m in result.methods})


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: an undefined mean (no sample where the metric is defined) is ``null``."""
    return None if value is None or value != value else float(value)
