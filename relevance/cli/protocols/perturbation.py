"""``relevance evaluate --protocol perturbation --data IMAGENET_VAL_DIR``: CVPR 2021 Table 2 (spec §5.3).

Writes ``results.md`` (our Table 2 beside the paper's, and the accuracy per step), ``results.json`` (curves and AUCs),
the curves ``perturbation-predicted.png`` / ``.pdf`` and ``perturbation-target.png`` / ``.pdf`` (AUCs in the legends)
and the shards to ``--out``; sharded over ``torchrun`` processes, resumable (see :mod:`relevance.cli.protocols.images`).
"""

from __future__ import annotations

import argparse
import json
import time

from relevance.cli.protocols import run_on_runtime
from relevance.cli.protocols.images import (UsageError, describe_data, load_classifier, methods_and_start_layers,
                                            out_folder, run_sharded)

PROTOCOL = "perturbation"


def run(args: argparse.Namespace) -> int:
    """Run Table 2 on this process's shards; rank 0 merges and writes the outputs. Returns the exit status."""
    return run_on_runtime(args, _run)


def _run(args: argparse.Namespace, runtime) -> int:
    from relevance.adapter import adapter_for
    from relevance.evaluation import ImageNetVal
    from relevance.evaluation.perturbation_protocol import (EXPLAINED, perturbation_batch, perturbation_markdown,
                                                            perturbation_table)

    started = time.time()
    model, model_name, prep = load_classifier(args, runtime)
    methods, start_layers = methods_and_start_layers(args, model)
    explained = list(EXPLAINED) if args.explained == "both" else [args.explained]
    if prep.size[0] != prep.size[1]:
        raise UsageError(f"the protocol squash-resizes to a square; {model_name} expects {prep.size}")
    try:
        dataset = ImageNetVal(args.data, size=prep.size[0])
    except (FileNotFoundError, ValueError) as problem:
        raise UsageError(str(problem)) from problem
    classes = len(adapter_for(model).info.class_names or []) or None
    if classes is not None and len(dataset.wnids) != classes:
        raise UsageError(f"{args.data} has {len(dataset.wnids)} class folders but {model_name} has {classes} classes; "
                         "labels are the positions of the sorted folder names, so every class needs its folder")
    normalize = prep.normalize()

    def batch(images01, labels):
        return perturbation_batch(model, images01, labels, methods=methods, explained=explained,
                                  start_layers=start_layers, normalize=normalize)

    manifest = dict(protocol=PROTOCOL, model=model_name, checkpoint=args.checkpoint, data=describe_data(args.data),
                    size=list(prep.size), mean=list(prep.mean), std=list(prep.std), methods=methods,
                    explained=explained, start_layers=start_layers)
    out = out_folder(args, PROTOCOL)
    rows = run_sharded(args, runtime, dataset, batch, manifest, out)
    if rows is None:  # not rank 0
        return 0
    table = perturbation_table(rows, methods, explained)
    settings = (f"{table['images']} images of {describe_data(args.data)}, model `{model_name}`"
                + (f" (weights {args.checkpoint})" if args.checkpoint else "")
                + f"; squash-resize to {prep.size[0]} x {prep.size[1]}, mean {list(prep.mean)}, std {list(prep.std)}; "
                  "removed pixels set to 0 before normalisation; top-1 against the label.")
    markdown = perturbation_markdown(table, methods, explained, start_layers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join([
        f"# Perturbation tests (CVPR 2021 Table 2, spec §5.3): `{model_name}`", "", settings, "", markdown]))
    (out / "results.json").write_text(json.dumps(
        {"protocol": PROTOCOL, "model": model_name, "checkpoint": args.checkpoint, "data": describe_data(args.data),
         "size": list(prep.size), "mean": list(prep.mean), "std": list(prep.std), "methods": methods,
         "explained": explained, "start_layers": start_layers, **table}, indent=2) + "\n")
    written = [out / "results.md", out / "results.json"]
    written += _figures(table, methods, explained, start_layers, model_name, out)
    print(markdown.split("\n\n")[0])
    print(f"\n{table['images']} images, {runtime.world_size} process(es), {time.time() - started:.0f}s; wrote "
          + ", ".join(str(p) for p in written))
    return 0


def _figures(table, methods, explained, start_layers, model_name, out):
    from relevance.evaluation.perturbation_protocol import row_key
    from relevance.figures.perturbation import curves_figure
    from relevance.figures.style import save

    written = []
    for which in explained:
        curves = {m: {test: table["cells"][row_key(m, which, test)]["curve"] for test in ("positive", "negative")}
                  for m in methods if row_key(m, which, "positive") in table["cells"]}
        if not curves:
            continue
        title = (f"Perturbation on {table['images']} ImageNet val images ({model_name}), maps of the "
                 f"{'predicted' if which == 'predicted' else 'ground-truth'} class; hit = top-1 correct")
        written += save(curves_figure(curves, title=title, start_layers=start_layers), out / f"perturbation-{which}")
    return written
