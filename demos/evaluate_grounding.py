"""Grounding of captions by every explanation method on held-out shapes scenes, for the embedded shapes CLIP (or a
folder written by ``demos/train_shapes_clip.py``): a thin wrapper of ``relevance evaluate --model shapes-clip`` (the
``grounding`` protocol, :mod:`relevance.cli.protocols.grounding`) with the settings of the README's table. It writes
``results.md`` (the table, settings and timing), ``results.json`` and ``figure.png`` (captions x methods); see
:mod:`relevance.evaluation.grounding` for the protocol.

    python demos/evaluate_grounding.py --samples 200 --out assets/shapes_clip/evaluation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The methods of the README's table (the gradient and perturbation methods are left out: ``--methods`` adds them).
METHODS = ("attention,rollout,attention_gradcam,lrp,partial_lrp,transformer_attribution,gradient_rollout,attnlrp,"
           "cp_lrp,legrad")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-clip")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2_000_000)
    parser.add_argument("--methods", default=METHODS, help=f"comma-separated (default: {METHODS})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "shapes_clip" / "evaluation")
    args = parser.parse_args(argv)

    import torch

    from relevance.cli import main as relevance_main

    torch.set_num_threads(args.threads)
    return relevance_main(["evaluate", "--protocol", "grounding", "--model", args.model, "--samples",
                           str(args.samples), "--seed", str(args.seed), "--methods", args.methods, "--figure-rows", "8",
                           "--out", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
