"""Train the embedded shapes CLIP (``assets/shapes_clip``) on scenes of the shapes world and their captions, on a
CPU.

Images: scenes of 1-3 coloured objects (``relevance.data.shapes.render_scene``), training seeds ``seed ..
seed + scenes - 1`` rendered once. Texts: a caption per scene and step
naming all or some of its objects with their colours, in one of a few templates
(``relevance.data.shapes_captions``), and a hard negative that swaps one named object's colour or shape for one the
scene lacks. Loss: the symmetric contrastive loss of CLIP (Radford et al. 2021) over the batch, the hard negatives
added to each image's candidate texts; candidates that also describe an image (another scene with the same red
circle) are not counted as its negatives. The image tower starts from the embedded shapes ViT
(``assets/shapes_vit``), whose patch embedding and first ``--freeze-blocks`` blocks stay frozen (their outputs are
computed once per scene, which halves the image tower's cost on a CPU); the text tower and the projections start
from scratch.

Held-out evaluation (seeds from ``--heldout-seed``): caption retrieval among the held-out scenes (image->text and
text->image top-1), object naming (each object's "a photo of a <colour> <shape>" against the 47 other colour-shape
prompts, those of the scene's other objects left out) and zero-shot classification of single-object scenes among
all 48 prompts.

Reproduce the shipped weights (the exact command is in ``assets/shapes_clip/MODEL_CARD.md``)::

    python demos/train_shapes_clip.py --out assets/shapes_clip
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
if str(ROOT) not in sys.path:  # allow `python demos/train_shapes_clip.py` from a checkout
    sys.path.insert(0, str(ROOT))

from relevance.data.shapes import COLOURS, SHAPE_CLASSES, render_scene  # noqa: E402
from relevance.data.shapes_captions import (VOCABULARY, caption, hard_negative, object_caption,  # noqa: E402
                                            sample_caption)
from relevance.models.clip import CLIP, CLIPConfig, TextConfig, VisionConfig  # noqa: E402
from relevance.models.clip_text import WordTokenizer  # noqa: E402

MEAN = STD = (0.5, 0.5, 0.5)
PAIRS = [(c, s) for s in range(len(SHAPE_CLASSES)) for c in COLOURS]  # the 48 (colour, shape) objects
BIT = {pair: 1 << i for i, pair in enumerate(PAIRS)}


class SceneRecord:
    """What training needs of a scene: its (colour, shape) objects (a stand-in for ``Scene`` in captions)."""

    def __init__(self, colours: list[str], labels: list[int]):
        self.colours, self.labels = colours, labels


def _render_chunk(job: tuple[int, int, int]) -> tuple[np.ndarray, list[tuple[list[str], list[int]]]]:
    start, stop, size = job
    images = np.empty((stop - start, 3, size, size), dtype=np.uint8)
    objects = []
    for i, seed in enumerate(range(start, stop)):
        scene = render_scene(seed, size)
        images[i] = scene.image.transpose(2, 0, 1)
        objects.append((list(scene.colours), list(scene.labels)))
    return images, objects


def render(seeds: range, size: int, workers: int) -> tuple[torch.Tensor, list[SceneRecord]]:
    """uint8 images (N, 3, S, S) and the objects of the scenes with these seeds (independent of ``workers``)."""
    step = max(1, -(-len(seeds) // (4 * workers)))
    jobs = [(a, min(a + step, seeds.stop), size) for a in range(seeds.start, seeds.stop, step)]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(job) for job in jobs]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    return images, [SceneRecord(c, l) for p in parts for c, l in p[1]]


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - 0.5) / 0.5


def bits(named) -> int:
    value = 0
    for pair in named:
        value |= BIT[pair]
    return value


def build_model(args: argparse.Namespace, tokenizer: WordTokenizer) -> CLIP:
    config = CLIPConfig(
        embed_dim=args.embed_dim,
        vision=VisionConfig(image_size=(64, 64), patch_size=(8, 8), width=64, layers=4, heads=4, mlp_width=256,
                            activation="gelu", norm_eps=1e-6, ln_pre=False),
        text=TextConfig(context_length=args.context, vocab_size=tokenizer.vocab_size, width=args.text_width,
                        layers=args.text_layers, heads=4, mlp_width=4 * args.text_width, activation="gelu",
                        pool="argmax", eos_id=tokenizer.eot_id))
    model = CLIP(config)
    if args.init_vit:
        load_vit_into(model, Path(args.init_vit))
    return model


def load_vit_into(model: CLIP, directory: Path) -> None:
    """The embedded shapes ViT's blocks, patch embedding, positions and final norm as the image tower (its patch
    bias folded into the patch tokens' positions, since CLIP's patch convolution has no bias)."""
    from relevance.models.embedded import load_timm_embedded

    vit = load_timm_embedded(directory)
    state = vit.state_dict()
    visual = {"conv1.weight": state["patch_embed.proj.weight"], "class_embedding": state["cls_token"][0, 0],
              "ln_post.weight": state["norm.weight"], "ln_post.bias": state["norm.bias"]}
    positions = state["pos_embed"][0].clone()
    positions[1:] += state["patch_embed.proj.bias"]
    visual["positional_embedding"] = positions
    for i in range(len(vit.blocks)):
        s, t = f"blocks.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            visual.update({f"{t}attn.in_proj_{part}": state[f"{s}attn.qkv.{part}"],
                           f"{t}attn.out_proj.{part}": state[f"{s}attn.proj.{part}"],
                           f"{t}ln_1.{part}": state[f"{s}norm1.{part}"], f"{t}ln_2.{part}": state[f"{s}norm2.{part}"],
                           f"{t}mlp.c_fc.{part}": state[f"{s}mlp.fc1.{part}"],
                           f"{t}mlp.c_proj.{part}": state[f"{s}mlp.fc2.{part}"]})
    missing, unexpected = model.visual.load_state_dict(visual, strict=False)
    assert not unexpected and set(missing) == {"proj"}, (missing, unexpected)


def frozen_tokens(model: CLIP, images: torch.Tensor, blocks: int, batch: int = 256) -> torch.Tensor:
    """The tokens (N, 1 + h*w, D) leaving the first ``blocks`` image blocks, which stay frozen: computed once."""
    visual, out = model.visual, []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = normalise(images[start:start + batch])
            patches = visual.conv1(pixels).flatten(2).transpose(1, 2)
            x = torch.cat([visual.class_embedding.expand(len(pixels), 1, -1), patches], 1) + visual.positional_embedding
            x = visual.ln_pre(x)
            for block in visual.transformer.resblocks[:blocks]:
                x = block(x)
            out.append(x)
    return torch.cat(out)


def image_embeddings(model: CLIP, tokens: torch.Tensor, blocks: int) -> torch.Tensor:
    """Unit-length image embeddings (B, E) from the frozen blocks' output tokens, through the trained blocks."""
    for block in model.visual.transformer.resblocks[blocks:]:
        tokens = block(tokens)
    return F.normalize(model.visual.pool(tokens) @ model.visual.proj, dim=-1)


def contrastive_loss(model: CLIP, image: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                     match_image_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of unit-length image embeddings (B, E) and captions; ``match_image_text`` (B, 2B) marks
    (image, text) pairs where the text describes the image (the diagonal is the positive; the others are left out
    of the negatives)."""
    ids = torch.cat([positives, negatives])
    ids = ids[:, :int(model.pool_index(ids).max()) + 1]  # no output depends on the padding after the last end
    texts = model.encode_text(ids, normalize=True)
    scale = model.logit_scale.exp()
    logits = scale * image @ texts.t()  # (B, 2B)
    batch = image.shape[0]
    diagonal = torch.eye(batch, 2 * batch, dtype=torch.bool)
    masked = logits.masked_fill(match_image_text & ~diagonal, float("-inf"))
    labels = torch.arange(batch)
    text_logits = logits[:, :batch].t().masked_fill((match_image_text[:, :batch] & ~diagonal[:, :batch]).t(),
                                                    float("-inf"))
    return 0.5 * (F.cross_entropy(masked, labels) + F.cross_entropy(text_logits, labels))


@torch.no_grad()
def evaluate(model: CLIP, tokenizer: WordTokenizer, images: torch.Tensor, scenes: list[SceneRecord],
             context: int) -> dict:
    model.eval()
    embeddings = torch.cat([model.encode_image(normalise(images[i:i + 256]), normalize=True)
                            for i in range(0, len(images), 256)])
    # caption retrieval among the held-out scenes (their full captions)
    captions = [caption(list(zip(s.colours, s.labels))) for s in scenes]
    texts = torch.cat([model.encode_text(tokenizer(captions[i:i + 256], context), normalize=True)
                       for i in range(0, len(captions), 256)])
    similarity = embeddings @ texts.t()
    same = torch.tensor([[captions[i] == captions[j] for j in range(len(scenes))] for i in range(len(scenes))])
    image_to_text = float(same[torch.arange(len(scenes)), similarity.argmax(1)].float().mean())
    text_to_image = float(same[similarity.argmax(0), torch.arange(len(scenes))].float().mean())
    # object naming among the 48 colour-shape prompts (the scene's other objects left out)
    prompts = model.encode_text(tokenizer([object_caption(c, s) for c, s in PAIRS], context), normalize=True)
    scores = embeddings @ prompts.t()  # (N, 48)
    named, single, single_hits = [], 0, 0
    for i, scene in enumerate(scenes):
        objects = list(zip(scene.colours, scene.labels))
        for obj in objects:
            row = scores[i].clone()
            for other in objects:
                if other != obj:
                    row[PAIRS.index(other)] = -math.inf
            named.append(int(row.argmax()) == PAIRS.index(obj))
        if len(objects) == 1:
            single += 1
            single_hits += int(scores[i].argmax()) == PAIRS.index(objects[0])
    return {"scenes": len(scenes), "image_to_text_top1": 100 * image_to_text, "text_to_image_top1": 100 * text_to_image,
            "object_naming_accuracy": 100 * float(np.mean(named)), "objects": len(named),
            "single_object_zero_shot_accuracy": 100 * single_hits / max(single, 1), "single_object_scenes": single}


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start, start_cpu, load = time.time(), time.process_time(), os.getloadavg()[0]
    peak_load = load
    tokenizer = WordTokenizer(VOCABULARY)

    train_x, train_scenes = render(range(args.seed, args.seed + args.scenes), 64, args.threads)
    held_x, held_scenes = render(range(args.heldout_seed, args.heldout_seed + args.heldout), 64, args.threads)
    print(f"rendered {args.scenes} + {args.heldout} scenes in {time.time() - start:.1f}s", flush=True)

    model = build_model(args, tokenizer)
    initial = evaluate(model, tokenizer, held_x, held_scenes, args.context)
    print(f"held-out before training: {initial}", flush=True)
    frozen = [f"visual.transformer.resblocks.{i}." for i in range(args.freeze_blocks)]
    frozen += ["visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre"]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not (args.freeze_blocks and name.startswith(tuple(frozen))))
    cached = frozen_tokens(model, train_x, args.freeze_blocks)
    print(f"image blocks 0..{args.freeze_blocks - 1} frozen, their outputs cached {tuple(cached.shape)} "
          f"({time.time() - start:.0f}s)", flush=True)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.ndim > 1 and "embedding" not in n]
    no_decay = [p for n, p in trained if not (p.ndim > 1 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = args.scenes // args.batch_size
    total = args.epochs * steps_per_epoch
    warmup = max(1, total // 20)
    scene_bits = np.array([bits(zip(s.colours, s.labels)) for s in train_scenes], dtype=np.int64)

    step = 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.scenes, generator=generator)
        running = 0.0
        for batch_start in range(0, steps_per_epoch * args.batch_size, args.batch_size):
            index = order[batch_start:batch_start + args.batch_size]
            positives, negatives, positive_bits, negative_bits = [], [], [], []
            for i in index.tolist():
                named, template = sample_caption(train_scenes[i], rng)
                negative = hard_negative(named, train_scenes[i], rng)
                positives.append(caption(named, template))
                negatives.append(caption(negative, template))
                positive_bits.append(bits(named))
                negative_bits.append(bits(negative))
            text_bits = positive_bits + negative_bits
            image_bits = scene_bits[index.numpy()]
            match = torch.from_numpy((np.array(text_bits)[None, :] & ~image_bits[:, None]) == 0)
            image = image_embeddings(model, cached[index], args.freeze_blocks)
            lr = args.lr * (step + 1) / warmup if step < warmup else \
                0.5 * args.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = contrastive_loss(model, image, tokenizer(positives, args.context),
                                    tokenizer(negatives, args.context), match)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            running += float(loss.detach())
            step += 1
            if step % args.log_every == 0:
                peak_load = max(peak_load, os.getloadavg()[0])
                print(f"epoch {epoch} step {step}/{total} loss {running / args.log_every:.4f} lr {lr:.2e} "
                      f"scale {model.logit_scale.exp().item():.1f} {time.time() - start:.0f}s", flush=True)
                running = 0.0
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            print(f"epoch {epoch}: {evaluate(model, tokenizer, held_x, held_scenes, args.context)}", flush=True)

    metrics = evaluate(model, tokenizer, held_x, held_scenes, args.context)
    metrics.update(training_seconds=round(time.time() - start, 1), cpu_seconds=round(time.process_time() - start_cpu, 1),
                   load_average=[round(load, 2), round(max(peak_load, os.getloadavg()[0]), 2),
                                 round(os.getloadavg()[0], 2)], initial=initial)
    if args.out:
        save(model, tokenizer, args, metrics)
    return metrics


def save(model: CLIP, tokenizer: WordTokenizer, args: argparse.Namespace, metrics: dict) -> None:
    from safetensors.torch import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    command = command_line(args)
    config = {
        "name": "shapes-clip",
        "architecture": "relevance.models.clip.CLIP (open_clip parameter names)",
        "model": model.config.to_dict(),
        "tokenizer": tokenizer.to_config(),
        "data_config": {"input_size": [64, 64], "mean": list(MEAN), "std": list(STD), "interpolation": "bilinear",
                        "crop_pct": 1.0, "crop_mode": "squash"},
        "training": {"train_seeds": [args.seed, args.seed + args.scenes - 1],
                     "heldout_seeds": [args.heldout_seed, args.heldout_seed + args.heldout - 1],
                     "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "weight_decay": args.weight_decay, "threads": args.threads, "init_vit": args.init_vit,
                     "freeze_blocks": args.freeze_blocks,
                     "command": command},
        "metrics": metrics,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    size = (out / "model.safetensors").stat().st_size / 2**20
    parameters = sum(p.numel() for p in model.parameters())
    (out / "MODEL_CARD.md").write_text(model_card(config, metrics, parameters, size))
    print(f"wrote {out}", flush=True)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (non-default options only)."""
    defaults = vars(parse_args([]))
    parts = ["python demos/train_shapes_clip.py"]
    for key, value in vars(args).items():
        if key not in ("out", "log_every", "eval_every") and value != defaults.get(key):
            parts.append(f"--{key.replace('_', '-')} {value}")
    parts.append(f"--out {args.out}")
    return " ".join(parts)


def model_card(config: dict, metrics: dict, parameters: int, size_mb: float) -> str:
    vision, text, training = config["model"]["vision"], config["model"]["text"], config["training"]
    initial = metrics["initial"]
    rows = [("Caption retrieval, image -> text (top-1 among the held-out captions)", "image_to_text_top1"),
            ("Caption retrieval, text -> image (top-1)", "text_to_image_top1"),
            ("Object naming: each object's colour and shape among 48 prompts", "object_naming_accuracy"),
            ("Zero-shot classification of single-object scenes among 48 prompts", "single_object_zero_shot_accuracy")]
    table = "\n".join(f"| {title} | {metrics[key]:.1f} | {initial[key]:.1f} |" for title, key in rows)
    load = metrics.get("load_average", [float("nan")] * 3)
    return f"""# shapes-clip: the embedded image-text model

A small CLIP (`relevance.models.clip.CLIP`, open_clip parameter names) trained by this project on scenes of the
procedural shapes world (`relevance.data.shapes`) and captions naming their objects with their colours
(`relevance.data.shapes_captions`), so that image-text explanations work without network access and can be
checked against known object masks (`relevance.evaluation.grounding`). It knows only the captions' words:
{" ".join(config["tokenizer"]["words"])}.

## Configuration
- Image tower: {vision["image_size"][0]}x{vision["image_size"][1]} RGB, patch {vision["patch_size"][0]} ({vision["image_size"][0] // vision["patch_size"][0]}x{vision["image_size"][1] // vision["patch_size"][1]} patches + class token), width {vision["width"]}, {vision["layers"]} blocks, {vision["heads"]} heads,
  GELU, no pre-norm, class-token pooling; initialised from the embedded shapes ViT (`assets/shapes_vit`), whose
  patch embedding and first {training["freeze_blocks"]} blocks stay frozen.
- Text tower: causal, {text["context_length"]}-token context, {text["vocab_size"]} tokens (the words above, padding, start, end), width {text["width"]},
  {text["layers"]} blocks, {text["heads"]} heads, pooled at the end-of-text token (the largest id).
- Embeddings: {config["model"]["embed_dim"]} dimensions; {parameters / 1e6:.2f} M parameters, `model.safetensors` {size_mb:.2f} MB (float32).
- Input: squash-resize to 64x64, mean = std = (0.5, 0.5, 0.5).
- Data: training scenes of seeds {training["train_seeds"][0]}..{training["train_seeds"][1]} (1-3 objects each); per scene and step a caption naming all
  (half of the time) or some of its objects in one of six templates, and a hard negative swapping one named
  object's colour or shape for one the scene lacks. Held-out scenes: seeds {training["heldout_seeds"][0]}..{training["heldout_seeds"][1]}.
- Optimisation: CLIP's symmetric contrastive loss with the hard negatives as extra texts (texts that also
  describe an image are not its negatives), AdamW, lr {training["lr"]} (linear warm-up, cosine decay), weight
  decay {training["weight_decay"]}, batch {training["batch_size"]}, {training["epochs"]} epochs.

## Measured on {metrics["scenes"]} held-out scenes ({metrics["objects"]} objects, {metrics["single_object_scenes"]} single-object scenes)

| Task | trained % | before training % |
|---|---|---|
{table}

Chance: object naming about 2 % (1 in 48, fewer when the scene's other objects are left out).

Training took **{metrics["training_seconds"] / 60:.1f} minutes** wall-clock ({metrics["cpu_seconds"] / 60:.1f} CPU-minutes in the training process,
the rendering processes not counted) on a 2-core machine
with {training["threads"]} threads, rendering included, while other jobs shared the cores (load average
{load[0]:.1f} at the start, up to {load[1]:.1f} while logging, {load[2]:.1f} at the end).

## Reproduce
```
{training["command"]}
```
Results are deterministic up to floating-point differences between machines and library versions.

## Grounding
How the explanation methods ground single-object captions ("a photo of a red circle") on held-out scenes:
`evaluation/results.md`, `results.json` and `figure.png`, written by `python demos/evaluate_grounding.py` (that is,
`relevance evaluate --model shapes-clip --samples 200 --seed 2000000` with the methods of its table).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=24000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--text-width", type=int, default=64)
    parser.add_argument("--text-layers", type=int, default=3)
    parser.add_argument("--context", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-seed", type=int, default=1_000_000)
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init-vit", default=str(ROOT / "assets" / "shapes_vit"),
                        help="start the image tower from this shapes ViT ('' for random)")
    parser.add_argument("--freeze-blocks", type=int, default=2,
                        help="keep the first image blocks (and the patch embedding) as initialised; their outputs are "
                             "computed once per scene")
    parser.add_argument("--eval-every", type=int, default=0, help="held-out evaluation every N epochs (0: at the end)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", default=None, help="write config.json and model.safetensors here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(train(parse_args()), indent=2))
