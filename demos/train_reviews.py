"""Train the embedded text model: a small BERT on the reviews world (``relevance.data.reviews``), on the CPU.

Writes ``config.json`` (a Hugging Face ``BertConfig`` plus ``relevance_*`` keys: class names, data seeds, metrics,
the command), ``model.safetensors``, ``vocab.txt`` and ``MODEL_CARD.md`` to ``--out``:

    python demos/train_reviews.py --out assets/reviews_bert

``--tensorboard DIR`` also logs, every ``--tensorboard-every`` steps, the token relevance (a Markdown table and a
heatmap) and the attention grid of fixed held-out reviews, each explained for its label
(:class:`relevance.tensorboard.RelevanceLogger`; training is the same with or without it).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from relevance.data.reviews import LABELS, generate_reviews, vocabulary
from relevance.models.reviews import CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE, build_vocabulary, load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=12_000, help="training reviews (indices 0..N-1 of --seed)")
    p.add_argument("--seed", type=int, default=1, help="the world's seed of the training reviews; also seeds torch")
    p.add_argument("--heldout", type=int, default=2_000, help="held-out reviews (of --heldout-seed)")
    p.add_argument("--heldout-seed", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest for this tiny model on a shared 2-core machine)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="log token relevance and attention grids of fixed held-out reviews to TensorBoard in DIR")
    p.add_argument("--tensorboard-every", type=int, default=200, metavar="N", help="log every N steps (default 200)")
    p.add_argument("--tensorboard-probes", type=int, default=4, metavar="K",
                   help="number of fixed held-out reviews logged (default 4)")
    return p


def encode(tokenizer, samples, max_length: int) -> dict[str, torch.Tensor]:
    encoded = tokenizer([s.text for s in samples], padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
            "labels": torch.tensor([s.label for s in samples])}


@torch.no_grad()
def evaluate(model, data: dict[str, torch.Tensor], samples, batch_size: int = 256) -> dict:
    model.eval()
    predictions, losses = [], []
    for start in range(0, len(samples), batch_size):
        part = {k: v[start:start + batch_size] for k, v in data.items()}
        out = model(**part)
        losses.append(float(out.loss) * len(part["labels"]))
        predictions.append(out.logits.argmax(-1))
    predicted = torch.cat(predictions)
    correct = predicted == data["labels"]
    by_kind = {}
    for kind in sorted({s.kind for s in samples}):
        rows = torch.tensor([s.kind == kind for s in samples])
        by_kind[kind] = {"count": int(rows.sum()), "accuracy": round(100 * float(correct[rows].float().mean()), 2)}
    return {"accuracy": round(100 * float(correct.float().mean()), 2), "loss": sum(losses) / len(samples),
            "by_kind": by_kind}


def train(args: argparse.Namespace) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / VOCAB_FILE).write_text("\n".join(build_vocabulary(vocabulary())) + "\n")
    tokenizer = load_tokenizer(args.out)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=args.intermediate,
                        max_position_embeddings=args.max_length, type_vocab_size=2, num_labels=len(LABELS),
                        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0)
    model = BertForSequenceClassification(config)
    train_samples = generate_reviews(args.train, seed=args.seed)
    heldout_samples = generate_reviews(args.heldout, seed=args.heldout_seed)
    train_data = encode(tokenizer, train_samples, args.max_length)
    heldout_data = encode(tokenizer, heldout_samples, args.max_length)
    initial = evaluate(model, heldout_data, heldout_samples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(args.train / args.batch_size)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (steps - step) / max(1, steps - warmup)))
    generator = torch.Generator().manual_seed(args.seed)
    logger = _tensorboard_logger(args, tokenizer, heldout_samples) if args.tensorboard else None
    step = 0
    start = time.monotonic()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.train, generator=generator)
        for first in range(0, args.train, args.batch_size):
            if logger is not None:
                logger(model, step)
            step += 1
            rows = order[first:first + args.batch_size]
            loss = model(**{k: v[rows] for k, v in train_data.items()}).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        metrics = evaluate(model, heldout_data, heldout_samples)
        print(f"epoch {epoch + 1}/{args.epochs}: held-out accuracy {metrics['accuracy']:.2f} %, loss "
              f"{metrics['loss']:.4f} ({time.monotonic() - start:.0f} s)", flush=True)
    if logger is not None:
        logger.log(model, step)
        logger.close()
        print(f"TensorBoard: token relevance and attention grids in {args.tensorboard} (tensorboard --logdir "
              f"{args.tensorboard})", flush=True)
    metrics["initial_loss"] = initial["loss"]
    metrics["minutes"] = round((time.monotonic() - start) / 60, 2)
    save(model.eval(), config, metrics, args)
    return metrics


def _tensorboard_logger(args: argparse.Namespace, tokenizer, heldout_samples):
    """Token relevance and attention grids of the first held-out reviews, each explained for its label, every
    --tensorboard-every steps."""
    from relevance.models.bert import from_hf
    from relevance.tensorboard import RelevanceLogger

    def explainable(model: torch.nn.Module) -> torch.nn.Module:  # an LRP-aware copy of the model as it is now
        copy = from_hf(model, tokenizer)
        copy.info.name = "reviews-bert (training)"
        return copy

    probes = heldout_samples[:max(1, args.tensorboard_probes)]
    return RelevanceLogger(args.tensorboard, [s.text for s in probes], every=args.tensorboard_every,
                           target=[s.label for s in probes], explainable=explainable)


def _command(argv: list[str] | None) -> str:
    """The command that reproduces the model (logging options left out: they do not change it)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument.startswith("--tensorboard"):
            skip = "=" not in argument
            continue
        kept.append(argument)
    return "python demos/train_reviews.py " + " ".join(shlex.quote(a) for a in kept)


def save(model, config, metrics: dict, args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not k.endswith(("position_ids", "token_type_ids"))}
    save_file(state, str(args.out / WEIGHTS_FILE))
    data = config.to_dict()
    data.update(relevance_class_names=list(LABELS), relevance_metrics=metrics,
                relevance_training={"command": args.command, "train_seed": args.seed, "train_reviews": args.train,
                                    "heldout_seed": args.heldout_seed, "heldout_reviews": args.heldout,
                                    "torch": torch.__version__})
    (args.out / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    parameters = sum(v.numel() for v in state.values())
    size = (args.out / WEIGHTS_FILE).stat().st_size / 2 ** 20
    kinds = "\n".join(f"| {kind} | {v['count']} | {v['accuracy']:.2f} |" for kind, v in metrics["by_kind"].items())
    (args.out / "MODEL_CARD.md").write_text(f"""# reviews-bert: the embedded text model

A small BERT (Hugging Face `BertForSequenceClassification`) trained from scratch by this project on the procedural
reviews world (`relevance.data.reviews`), so that `relevance` explains meaningful text predictions without
network access. Two classes: {', '.join(LABELS)}. Its reviews' labels depend on opinion phrases about the film
(with negation, "but" contrast, intensifiers), next to opinions about other things and neutral filler; every
review knows its rationale words, so explanations can be scored against the truth
(`relevance.evaluation.rationales.evaluate_reviews`).

## Configuration
- Architecture: hidden {args.hidden}, {args.layers} layers, {args.heads} heads, intermediate {args.intermediate},
  GELU, absolute positions (max {args.max_length} tokens), BERT pooler; {parameters / 1e6:.2f} M parameters,
  `model.safetensors` {size:.2f} MB (float32).
- Tokenizer: WordPiece, lower-casing, `vocab.txt` of {config.vocab_size} tokens: the world's words, punctuation,
  single characters and their `##` continuations (any text tokenizes; words outside the world fall apart into
  characters). Load it with `BertTokenizer(vocab="vocab.txt")` (transformers 5 ignores `vocab_file=`).
- Data: training reviews 0..{args.train - 1} of seed {args.seed}; held-out reviews 0..{args.heldout - 1} of seed
  {args.heldout_seed} (`relevance.data.reviews.generate_reviews(count, seed)`).
- Optimisation: AdamW, lr {args.lr} (linear warm-up over 5 %, linear decay), weight decay {args.weight_decay},
  batch {args.batch_size}, {args.epochs} epochs, dropout 0.1, cross-entropy.

## Measured on {args.heldout} held-out reviews
- Accuracy: **{metrics['accuracy']:.2f} %** (held-out loss {metrics['loss']:.4f}; before training
  {metrics['initial_loss']:.4f})

| kind | reviews | accuracy % |
|---|---|---|
{kinds}

Training took **{metrics['minutes']:.1f} minutes** wall-clock on a 2-core CPU with {args.threads} threads.

## Reproduce
```
{args.command}
```
Results are deterministic up to floating-point differences between machines and library versions.
""")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command = _command(argv)
    metrics = train(args)
    print(f"held-out ({args.heldout} reviews): accuracy {metrics['accuracy']:.2f} % "
          f"{json.dumps(metrics['by_kind'])}; {metrics['minutes']:.1f} min; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
