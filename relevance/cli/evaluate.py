"""``relevance evaluate``: the papers' evaluation protocols, from the shapes world to ImageNet at scale.

``--protocol NAME`` picks a runner from :data:`PROTOCOLS`; without it the model picks (:data:`MODEL_PROTOCOLS`: the
embedded ``shapes-vit``, or a folder written by ``demos/train_shapes.py``, runs the shapes-world benchmark;
``reviews-bert`` the reviews world's; ``shapes-clip`` the grounding of captions).

* ``shapes``: every method on held-out scenes of the shapes world (``--samples N --seed S``).
* ``reviews``: every method against the known rationales of held-out reviews (``--model reviews-bert``).
* ``grounding``: every method's grounding of captions in held-out shapes scenes (``--model shapes-clip``).
* ``imagenet-seg --data gtsegs_ijcv.mat``: CVPR 2021 Table 1 (spec §5.2).
* ``perturbation --data IMAGENET_VAL_DIR``: CVPR 2021 Table 2 (spec §5.3).
* ``eraser --data MOVIES_DIR``: the CVPR 2021 token-F1 curve on ERASER Movie Reviews (spec §5.4).

The dataset protocols run batched on a GPU (``--device cuda``) and sharded over processes and machines with
``torchrun --nproc-per-node N -m relevance evaluate ...``; a run that dies resumes where it stopped (see
:mod:`relevance.evaluation.sharding`).

Adding a protocol: write ``relevance/cli/protocols/<name>.py`` with ``run(args) -> int`` (the options are those of
:func:`add_arguments`), and register it here with one :class:`Protocol` entry in :data:`PROTOCOLS` and, for an
embedded model with its own synthetic world, one line in :data:`MODEL_PROTOCOLS` (as ``"reviews-bert": "reviews"``
and ``"shapes-clip": "grounding"``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: its runner module (``run(args) -> int``), one line of help, what ``--data`` names."""

    name: str
    module: str
    summary: str
    data: str | None = None
    needs: str | None = None  # what must be installed, said when the runner module is missing


#: Every protocol ``--protocol`` accepts.
PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol("shapes", "relevance.cli.protocols.shapes",
                 "every method on held-out scenes of the shapes world (localisation, §5.2, §5.3)"),
        Protocol("reviews", "relevance.cli.protocols.reviews",
                 "every method against the known rationales of held-out reviews (token F1, AOPC)",
                 needs="the BERT family (relevance.models.bert, embedded reviews-bert)"),
        Protocol("grounding", "relevance.cli.protocols.grounding",
                 "every method's grounding of captions in held-out shapes scenes (pointing, mass, word share)",
                 needs="the CLIP family (relevance.models.clip, embedded shapes-clip)"),
        Protocol("imagenet-seg", "relevance.cli.protocols.imagenet_seg",
                 "CVPR 2021 Table 1: ImageNet-Segmentation pixel accuracy, mAP, mIoU (spec §5.2)",
                 data="gtsegs_ijcv.mat"),
        Protocol("perturbation", "relevance.cli.protocols.perturbation",
                 "CVPR 2021 Table 2: positive / negative perturbation AUC on ImageNet val (spec §5.3)",
                 data="IMAGENET_VAL_DIR"),
        Protocol("eraser", "relevance.cli.protocols.eraser",
                 "CVPR 2021 ERASER Movie Reviews token-F1 over k (spec §5.4)", data="MOVIES_DIR",
                 needs="the BERT family (relevance.models.bert) and relevance.evaluation.rationales"),
    )
}

#: Models that run their own protocol when ``--protocol`` is not given.
MODEL_PROTOCOLS: dict[str, str] = {"shapes-vit": "shapes", "reviews-bert": "reviews", "shapes-clip": "grounding"}


def register_protocol(protocol: Protocol, models: tuple[str, ...] = ()) -> None:
    """Add a protocol (and the models whose default it is) to the registry."""
    PROTOCOLS[protocol.name] = protocol
    for model in models:
        MODEL_PROTOCOLS[model] = protocol.name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every protocol (each runner uses those that apply to it); ``--help`` lists the protocols."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "protocols:\n" + "\n".join(f"  {p.name:<14}{p.summary}" for p in PROTOCOLS.values())
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=None,
                        help="the protocol to run (default: the model's own, e.g. 'shapes' for shapes-vit)")
    parser.add_argument("--model", default=None,
                        help="a model name (relevance.models.list_models(): 'shapes-vit', 'reviews-bert', "
                             "'shapes-clip', a timm ViT/DeiT name, a Hugging Face text classifier for 'eraser') or a "
                             "folder written by demos/train_shapes.py ('shapes'), demos/train_reviews.py (--protocol "
                             "reviews) or demos/train_shapes_clip.py (--protocol grounding). Default: "
                             "shapes-vit; for the ImageNet protocols the paper's ViT-B/16 "
                             "(vit_base_patch16_224.orig_in21k_ft_in1k); for 'eraser' the text default (the hub "
                             "sentiment BERT when cached or reachable, else reviews-bert)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="local weights for --model (.safetensors, or .pth/.pt/.bin loaded with weights_only; "
                             "for a text model, a folder with its Hugging Face files)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the dataset on disk: gtsegs_ijcv.mat (imagenet-seg), the ImageNet val folder "
                             "(perturbation), the ERASER movies folder (eraser)")
    parser.add_argument("--scenes", "--samples", dest="samples", type=int, default=None, metavar="N",
                        help="samples to evaluate: held-out scenes for 'shapes' (default 200), held-out reviews for "
                             "'reviews' (default 300), captions for 'grounding' (default 200); the first N of the "
                             "dataset for the dataset protocols (default: all)")
    parser.add_argument("--seed", type=int, default=10_000_000,
                        help="synthetic worlds: the first held-out scene seed (shapes, grounding), the reviews' seed "
                             "(reviews; the model trained on seed 1) (default 10000000, far from training)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: all of relevance.list_methods(), the gradient and "
                             "perturbation methods with their default options)")
    parser.add_argument("--start-layer", type=int, default=None,
                        help="start_layer for transformer_attribution, rollout and gradient_rollout (default: the "
                             "papers' scripts: 1 for TA and rollout, 0 for gradient rollout on images; the BERT "
                             "family's 0 for 'reviews'; the ERASER pipeline's last block for TA on 'eraser'; each "
                             "method's own for 'grounding', the CLIP notebook's last block for gradient rollout)")
    parser.add_argument("--explained", choices=["predicted", "target", "both"], default="both",
                        help="perturbation: explain the predicted class, the ground-truth (target) class, or both "
                             "(Table 2 has both; default)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    parser.add_argument("--shard-size", type=int, default=500,
                        help="samples (scenes for 'shapes') per shard: the unit of resumption and of the work split "
                             "between processes (default 500)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading worker processes (default: 4 on CUDA, 0 on CPU)")
    parser.add_argument("--no-random", action="store_true",
                        help="shapes, grounding: leave out the random-map reference row")
    parser.add_argument("--figure-rows", type=int, default=6, help="rows of the example figures")
    parser.add_argument("--out", default=None,
                        help="output folder (default out/evaluate for shapes, out/evaluate-<protocol> otherwise)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda (under torchrun each process takes cuda:LOCAL_RANK) or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def error(message: str) -> int:
    """Print a usage error of ``relevance evaluate`` and return its exit status (2)."""
    print(f"relevance evaluate: error: {message}", file=sys.stderr)
    return 2


def choose_protocol(args: argparse.Namespace) -> str:
    """The protocol to run: ``--protocol``, else the model's own, else ``shapes`` for a trained shapes folder."""
    if args.protocol is not None:
        return args.protocol
    model = args.model or "shapes-vit"
    if model in MODEL_PROTOCOLS:
        return MODEL_PROTOCOLS[model]
    if Path(model).is_dir():
        return "shapes"
    raise ValueError(f"choose a protocol for {model!r} with --protocol ({', '.join(PROTOCOLS)})")


def run(args: argparse.Namespace) -> int:
    """Check the common options and hand over to the chosen protocol's runner; returns the exit status."""
    try:
        name = choose_protocol(args)
    except ValueError as problem:
        return error(str(problem))
    protocol = PROTOCOLS[name]
    if protocol.data is not None and args.data is None:
        return error(f"--protocol {name} needs --data {protocol.data}")
    for option in ("samples", "batch_size", "shard_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            return error(f"--{option.replace('_', '-')} must be positive")
    if args.seed < 0:
        return error("--seed must be non-negative")
    try:
        module = importlib.import_module(protocol.module)
    except ModuleNotFoundError as missing:
        if missing.name and (protocol.module.startswith(missing.name) or missing.name.startswith("relevance")):
            needs = f": it needs {protocol.needs}" if protocol.needs else ""
            return error(f"the '{name}' protocol is not available in this installation{needs}")
        raise
    return int(module.run(args))
