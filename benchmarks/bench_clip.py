"""Speed of explaining CLIP pairs: every method against open_clip's own forward of the same pairs, and LeGrad
against its authors' package (legrad-torch), side by side in one process.

A ViT-B/16 CLIP with random weights (``open_clip.create_model("ViT-B-16", pretrained=None)``), float32, one
224 x 224 image against 8 texts, i.e. 8 pairs. The reference time is open_clip's no-grad forward of those pairs
(the image repeated 8 times, as the pairs are explained; the forward of the image once against the 8 texts is
printed too). Each method runs ``relevance.explain(model, image, texts=texts, method=m)`` at its default start
layer. legrad-torch runs its documented use (``encode_text``, then ``compute_legrad_clip(image=...)``) on a copy of
the model whose attention modules are set sequence-first, the layout it was written for (open_clip <= 2.23; see
tests/test_clip_methods.py). Methods are timed in turns, ``--repeats`` rounds after a warm-up; the median is kept.
The load average of the machine is printed before and after: other processes share the cores.

    python benchmarks/bench_clip.py [--threads 2] [--repeats 5] [--methods gradient_rollout,legrad]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["a photo of a cat", "a photo of a dog", "an astronaut riding a horse", "a rocket on a launchpad",
         "a cup of coffee on a table", "a red circle and a blue star", "a man with eyeglasses", "the moon at night"]
TARGETS = {"gradient_rollout": 2.5, "legrad": 2.5, "transformer_attribution": 6.0}


def timed(function, clock: str) -> float:
    now = time.process_time if clock == "cpu" else time.perf_counter
    start = now()
    function()
    return now() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args(argv)

    import open_clip
    from legrad import LeWrapper

    import relevance
    from relevance.images import prepare
    from relevance.models import clip

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    source = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    model = clip.from_open_clip(source)
    image = prepare(str(ROOT / "assets" / "samples" / "astronaut.jpg"), model.data_config).pixels
    ids = open_clip.tokenize(TEXTS)
    pairs = image.expand(len(TEXTS), -1, -1, -1)
    reference = copy.deepcopy(source)
    for block in reference.visual.transformer.resblocks:
        block.attn.batch_first = False
    wrapped = LeWrapper(reference)

    def legrad_torch():
        embedding = wrapped.encode_text(ids, normalize=True)
        return wrapped.compute_legrad_clip(image=image, text_embedding=embedding)

    def forward(images):
        with torch.no_grad():
            return source(images, ids)

    methods = args.methods.split(",") if args.methods else relevance.list_methods()
    runs = {"open_clip forward (8 pairs)": lambda: forward(pairs),
            "open_clip forward (1 image, 8 texts)": lambda: forward(image),
            "legrad-torch": legrad_torch}
    runs.update({m: (lambda m=m: relevance.explain(model, image, texts=TEXTS, method=m)) for m in methods})

    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, {args.threads} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})", flush=True)
    for function in runs.values():  # warm-up
        function()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, function in runs.items():
            times[name].append(timed(function, args.clock))
    base = statistics.median(times["open_clip forward (8 pairs)"])
    print(f"\n{'run':40s} {'median s':>9s} {'x forward':>10s} {'target':>7s}")
    for name, values in times.items():
        ratio = statistics.median(values) / base
        target = f"<= {TARGETS[name]:g}" if name in TARGETS else ""
        print(f"{name:40s} {statistics.median(values):9.3f} {ratio:10.2f} {target:>7s}")
    ours = relevance.explain(model, image, texts=TEXTS, method="legrad").heatmaps()
    difference = float((ours - legrad_torch()[0].detach()).abs().max())
    print(f"\nlegrad vs legrad-torch (min-max maps): max |difference| {difference:.1e}; "
          f"legrad-torch / ours time: {statistics.median(times['legrad-torch']) / statistics.median(times.get('legrad', [float('nan')])):.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
