"""``relevance evaluate --protocol imagenet-seg --data gtsegs_ijcv.mat``: CVPR 2021 Table 1 (spec §5.2).

Writes ``results.md`` (our table beside the paper's), ``results.json``, ``examples.png`` / ``.pdf`` (the first images:
ground truth, each method's map and its mean-threshold mask) and the shards to ``--out``; sharded over
``torchrun`` processes, resumable (see :mod:`relevance.cli.protocols.images`).
"""

from __future__ import annotations

import argparse
import json
import time

from relevance.cli.protocols import run_on_runtime
from relevance.cli.protocols.images import (UsageError, describe_data, load_classifier, methods_and_start_layers,
                                            out_folder, run_sharded)

PROTOCOL = "imagenet-seg"


def run(args: argparse.Namespace) -> int:
    """Run Table 1 on this process's shards; rank 0 merges and writes the outputs. Returns the exit status."""
    return run_on_runtime(args, _run)


def _run(args: argparse.Namespace, runtime) -> int:
    from relevance.evaluation import ImageNetSegmentation
    from relevance.evaluation.segmentation_protocol import (segmentation_batch, segmentation_json,
                                                            segmentation_markdown, segmentation_table)

    started = time.time()
    model, model_name, prep = load_classifier(args, runtime)
    methods, start_layers = methods_and_start_layers(args, model)
    if prep.size[0] != prep.size[1]:
        raise UsageError(f"the protocol squash-resizes to a square; {model_name} expects {prep.size}")
    try:
        dataset = ImageNetSegmentation(args.data, size=prep.size[0])
    except (FileNotFoundError, ValueError, ImportError) as problem:
        raise UsageError(str(problem)) from problem
    normalize = prep.normalize()

    def batch(images01, masks):
        return segmentation_batch(model, images01, masks, methods=methods, start_layers=start_layers,
                                  normalize=normalize)

    manifest = dict(protocol=PROTOCOL, model=model_name, checkpoint=args.checkpoint, data=describe_data(args.data),
                    size=list(prep.size), mean=list(prep.mean), std=list(prep.std), methods=methods,
                    start_layers=start_layers)
    out = out_folder(args, PROTOCOL)
    rows = run_sharded(args, runtime, dataset, batch, manifest, out)
    if rows is None:  # not rank 0
        return 0
    table = segmentation_table(rows, methods)
    images = len(rows["index"])
    settings = (f"{images} images of {describe_data(args.data)}, model `{model_name}`"
                + (f" (weights {args.checkpoint})" if args.checkpoint else "")
                + f"; squash-resize to {prep.size[0]} x {prep.size[1]}, mean {list(prep.mean)}, std {list(prep.std)}; "
                  "each method explains the predicted class; maps upsampled bilinearly, min-max normalised per image "
                  "and thresholded at their mean. Percent; the paper's ViT-B/16 values in parentheses.")
    report = "\n".join([f"# ImageNet-Segmentation (CVPR 2021 Table 1, spec §5.2): `{model_name}`", "", settings, "",
                        segmentation_markdown(table, start_layers), ""])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(
        {"protocol": PROTOCOL, "model": model_name, "checkpoint": args.checkpoint, "data": describe_data(args.data),
         "images": images, "size": list(prep.size), "mean": list(prep.mean), "std": list(prep.std),
         "methods": segmentation_json(table, start_layers)}, indent=2) + "\n")
    written = [out / "results.md", out / "results.json"]
    written += _examples(model, dataset, methods, start_layers, normalize, args, out, runtime)
    print(segmentation_markdown(table, start_layers))
    print(f"\n{images} images, {runtime.world_size} process(es), {time.time() - started:.0f}s; wrote "
          + ", ".join(str(p) for p in written))
    return 0


def _examples(model, dataset, methods, start_layers, normalize, args, out, runtime):
    """The first images: input with the ground-truth outline, each method's map and its mean-threshold mask."""
    import torch

    from relevance.figures.segmentation import segmentation_examples
    from relevance.figures.style import save

    count = min(args.figure_rows, len(dataset))
    if count < 1:
        return []
    images01, masks = zip(*(dataset[i] for i in range(count)))
    figure = segmentation_examples(model, torch.stack(images01).to(runtime.device), torch.stack(masks), methods,
                                   start_layers, normalize)
    return save(figure, out / "examples")
