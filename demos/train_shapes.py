"""Train the embedded shapes ViT (``assets/shapes_vit``) on the procedural shapes world, on a CPU.

Multi-label: one sigmoid per shape class (binary cross-entropy), so that on a scene with several
objects each class can be explained on its own. Training scenes are seeds ``seed .. seed+scenes-1``
(rendered once, kept in memory); held-out scenes are seeds from ``--heldout-seed`` (default
1_000_000, far from the training seeds). Augmentation: random flips and 90-degree rotations (every
shape class is closed under them). Reports mAP (macro over classes), exact-match accuracy
and per-class accuracy at probability 0.5 on the held-out scenes.

Reproduce the shipped weights (the exact command is also in ``assets/shapes_vit/MODEL_CARD.md``)::

    python demos/train_shapes.py --out assets/shapes_vit
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python demos/train_shapes.py` from a checkout
    sys.path.insert(0, str(ROOT))

from relevance.models.embedded import CONFIG_FILE, WEIGHTS_FILE, build_timm_model  # noqa: E402
from relevance.data.shapes import SHAPE_CLASSES, multi_hot, render_scene  # noqa: E402
from relevance.evaluation.segmentation import average_precision  # noqa: E402

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def model_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        img_size=args.size,
        patch_size=args.patch,
        num_classes=len(SHAPE_CLASSES),
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )


def _render_chunk(job: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    start, stop, size = job
    images = np.empty((stop - start, 3, size, size), dtype=np.uint8)
    targets = np.empty((stop - start, len(SHAPE_CLASSES)), dtype=np.float32)
    for i, seed in enumerate(range(start, stop)):
        scene = render_scene(seed, size)
        images[i] = scene.image.transpose(2, 0, 1)
        targets[i] = multi_hot(scene.labels)
    return images, targets


def render_batch(seeds: range, size: int, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, S, S) and multi-hot targets (N, C) of the scenes with these consecutive seeds,
    rendered by ``workers`` processes (the result does not depend on their number)."""
    step = max(1, -(-len(seeds) // (4 * workers)))
    jobs = [(a, min(a + step, seeds.stop), size) for a in range(seeds.start, seeds.stop, step)]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(job) for job in jobs]
    return torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts]))


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    x = images_u8.float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and rotation by a multiple of 90 degrees, per batch (cheap)."""
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(3)
    k = int(torch.randint(0, 4, (), generator=gen))
    return torch.rot90(x, k, (2, 3)) if k else x


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, batch: int = 256) -> dict:
    model.eval()
    logits = torch.cat([model(normalise(images[i : i + batch])) for i in range(0, len(images), batch)])
    loss = float(F.binary_cross_entropy_with_logits(logits, targets))
    probs = torch.sigmoid(logits)
    pred = probs > 0.5
    truth = targets > 0.5
    aps = [average_precision(truth[:, c], probs[:, c]) for c in range(targets.shape[1])]
    per_class = (pred == truth).float().mean(0)
    return {
        "scenes": len(images),
        "loss": loss,
        "mAP": 100.0 * float(np.mean(aps)),
        "AP_per_class": {SHAPE_CLASSES[c]: round(100.0 * ap, 2) for c, ap in enumerate(aps)},
        "exact_match_accuracy": 100.0 * float((pred == truth).all(1).float().mean()),
        "per_class_accuracy": {SHAPE_CLASSES[c]: round(100.0 * float(a), 2) for c, a in enumerate(per_class)},
        "mean_per_class_accuracy": 100.0 * float(per_class.mean()),
    }


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    start_cpu = time.process_time()

    t0 = time.time()
    train_x, train_y = render_batch(range(args.seed, args.seed + args.scenes), args.size, args.threads)
    held_x, held_y = render_batch(range(args.heldout_seed, args.heldout_seed + args.heldout), args.size, args.threads)
    print(f"rendered {args.scenes} training + {args.heldout} held-out scenes in {time.time() - t0:.1f}s", flush=True)

    kwargs = model_kwargs(args)
    model = build_timm_model({**kwargs, "drop_path_rate": args.drop_path})
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, {kwargs}", flush=True)

    initial = evaluate(model, held_x[:1000], held_y[:1000])
    print(f"held-out before training: loss {initial['loss']:.4f}, mAP {initial['mAP']:.2f}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    steps_per_epoch = math.ceil(args.scenes / args.batch_size)
    total = args.epochs * steps_per_epoch
    warmup = min(max(1, total // 20), 500)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    logger = _tensorboard_logger(args, held_x) if args.tensorboard else None
    step = 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(args.scenes, generator=gen)
        running, seen, t_epoch = 0.0, 0, time.time()
        for i in range(0, args.scenes, args.batch_size):
            idx = perm[i : i + args.batch_size]
            x = augment(normalise(train_x[idx]), gen)
            y = train_y[idx]
            if logger is not None:
                logger(model, step)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
        msg = f"epoch {epoch + 1}/{args.epochs}: loss {running / seen:.4f} ({time.time() - t_epoch:.0f}s)"
        if args.eval_every and ((epoch + 1) % args.eval_every == 0) and epoch + 1 < args.epochs:
            m = evaluate(model, held_x[:1000], held_y[:1000])
            msg += f", held-out mAP {m['mAP']:.2f} exact {m['exact_match_accuracy']:.1f}%"
        print(msg, flush=True)

    if logger is not None:
        logger.log(model, step)
        logger.close()
        print(f"TensorBoard: relevance maps and attention grids in {args.tensorboard} (tensorboard --logdir "
              f"{args.tensorboard})", flush=True)
    metrics = evaluate(model, held_x, held_y)
    elapsed = time.time() - start
    metrics["training_seconds"] = round(elapsed, 1)
    metrics["cpu_seconds"] = round(time.process_time() - start_cpu, 1)
    metrics["initial_loss"] = initial["loss"]
    print(
        f"held-out ({args.heldout} scenes, seeds {args.heldout_seed}..): mAP {metrics['mAP']:.2f}, "
        f"exact-match {metrics['exact_match_accuracy']:.2f}%, mean per-class acc {metrics['mean_per_class_accuracy']:.2f}%",
        flush=True,
    )
    print(f"total time {elapsed:.0f}s wall, {metrics['cpu_seconds']:.0f}s CPU on {args.threads} threads", flush=True)

    if args.out:
        save(model, kwargs, metrics, args, n_params)
    return metrics


def _tensorboard_logger(args: argparse.Namespace, held_x: torch.Tensor):
    """Relevance maps and attention grids of the first held-out scenes, every --tensorboard-every steps."""
    from relevance.adapter import ModelInfo
    from relevance.images import DataConfig
    from relevance.models.vit import from_timm
    from relevance.tensorboard import RelevanceLogger

    config = DataConfig(input_size=(args.size, args.size), mean=MEAN, std=STD, interpolation="bilinear",
                        crop_pct=1.0, crop_mode="squash")

    def explainable(model: torch.nn.Module) -> torch.nn.Module:  # an LRP-aware copy of the timm model as it is now
        copy = from_timm(model)
        copy.info = ModelInfo(name="shapes-vit (training)", class_names=list(SHAPE_CLASSES), multi_label=True,
                              data_config=config)
        return copy

    probes = [held_x[i].permute(1, 2, 0).numpy() for i in range(min(args.tensorboard_probes, len(held_x)))]
    return RelevanceLogger(args.tensorboard, probes, every=args.tensorboard_every, explainable=explainable)


def save(model: torch.nn.Module, kwargs: dict, metrics: dict, args: argparse.Namespace, n_params: int) -> None:
    from safetensors.torch import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    command = "python demos/train_shapes.py " + " ".join(_cli_args(args))
    config = {
        "name": "shapes-vit",
        "architecture": "timm.models.vision_transformer.VisionTransformer",
        "model": kwargs,
        "class_names": list(SHAPE_CLASSES),
        "multi_label": True,
        "data_config": {
            "input_size": [args.size, args.size],
            "mean": list(MEAN),
            "std": list(STD),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "squash",
        },
        "training": {
            "train_seeds": [args.seed, args.seed + args.scenes - 1],
            "heldout_seeds": [args.heldout_seed, args.heldout_seed + args.heldout - 1],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "drop_path_rate": args.drop_path,
            "threads": args.threads,
            "command": command,
        },
        "metrics": metrics,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    size_mb = (out / WEIGHTS_FILE).stat().st_size / 1e6
    (out / "MODEL_CARD.md").write_text(_model_card(config, metrics, n_params, size_mb))
    print(f"saved {out / WEIGHTS_FILE} ({size_mb:.2f} MB), {out / CONFIG_FILE}, {out / 'MODEL_CARD.md'}", flush=True)


def _cli_args(args: argparse.Namespace) -> list[str]:
    defaults = vars(build_parser().parse_args([]))
    parts = []
    for key, value in vars(args).items():
        if key == "out" or key.startswith("tensorboard") or value == defaults.get(key):
            continue
        parts.append(f"--{key.replace('_', '-')} {value}")
    parts.append(f"--out {args.out}")
    return parts


def _model_card(config: dict, metrics: dict, n_params: int, size_mb: float) -> str:
    k, t, d = config["model"], config["training"], config["data_config"]
    per_class = "\n".join(
        f"| {name} | {metrics['AP_per_class'][name]:.2f} | {metrics['per_class_accuracy'][name]:.2f} |"
        for name in config["class_names"]
    )
    return f"""# shapes-vit: the embedded default model

A small Vision Transformer (timm `VisionTransformer`) trained from scratch by this project on the
procedural shapes world (`relevance.data.shapes`), so that `relevance` explains meaningful
predictions without network access. Multi-label: one sigmoid per class
({", ".join(config["class_names"])}); a class counts as present when its probability exceeds 0.5.

## Configuration
- Architecture: img_size {k["img_size"]}, patch_size {k["patch_size"]} ({k["img_size"] // k["patch_size"]}x{k["img_size"] // k["patch_size"]} patches), embed_dim {k["embed_dim"]},
  depth {k["depth"]}, heads {k["num_heads"]}, mlp_ratio {k["mlp_ratio"]}, class token, `global_pool="token"`;
  {n_params / 1e6:.2f} M parameters, `model.safetensors` {size_mb:.2f} MB (float32).
- Input: {d["input_size"][0]}x{d["input_size"][1]} RGB, squash resize (crop_pct 1.0), mean = std = {tuple(d["mean"])}.
- Data: scenes of 1-3 objects rendered with `relevance.data.shapes.render_scene(seed, {k["img_size"]})`;
  training seeds {t["train_seeds"][0]}..{t["train_seeds"][1]}, held-out seeds {t["heldout_seeds"][0]}..{t["heldout_seeds"][1]};
  random flips and 90-degree rotations.
- Optimisation: AdamW, lr {t["lr"]} (linear warm-up, cosine decay), weight decay {t["weight_decay"]},
  batch {t["batch_size"]}, {t["epochs"]} epochs, drop-path {t["drop_path_rate"]}, binary cross-entropy.

## Measured on {metrics["scenes"]} held-out scenes
- mAP (macro over classes): **{metrics["mAP"]:.2f}**
- Exact-match accuracy (all six presence decisions right): **{metrics["exact_match_accuracy"]:.2f} %**
- Mean per-class accuracy: {metrics["mean_per_class_accuracy"]:.2f} %

| class | AP % | accuracy % |
|---|---|---|
{per_class}

Training took **{metrics["training_seconds"] / 60:.1f} minutes** wall-clock on a 2-core machine with {t["threads"]} threads
(`torch.set_num_threads({t["threads"]})`; the scenes are rendered by {t["threads"]} processes), everything included.

## Reproduce
```
{t["command"]}
```
Results are deterministic up to floating-point differences between machines and library versions.

## Explanations
How well the explanation methods localise the objects this model detects, and the perturbation tests:
`evaluation/results.md` and `evaluation/figure.png`, written by
`relevance evaluate --scenes 500 --no-progress --out assets/shapes_vit/evaluation`.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--scenes", type=int, default=50_000, help="number of training scenes (seeds seed..seed+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first training seed; also seeds torch")
    p.add_argument("--heldout", type=int, default=2_000, help="number of held-out scenes")
    p.add_argument("--heldout-seed", type=int, default=1_000_000, help="first held-out seed")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--drop-path", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=1, help="held-out mAP every N epochs (0: only at the end)")
    p.add_argument("--out", default=None, help="directory for model.safetensors, config.json, MODEL_CARD.md")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="log relevance maps and attention grids of fixed held-out scenes to TensorBoard in DIR")
    p.add_argument("--tensorboard-every", type=int, default=200, metavar="N", help="log every N steps (default 200)")
    p.add_argument("--tensorboard-probes", type=int, default=4, metavar="K",
                   help="number of fixed held-out scenes logged (default 4)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scenes < 1 or args.epochs < 1 or args.heldout < 1:
        raise SystemExit("--scenes, --epochs and --heldout must be positive")
    if args.heldout_seed < args.seed + args.scenes:
        raise SystemExit("--heldout-seed must lie beyond the training seeds")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
