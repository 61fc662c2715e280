"""``relevance evaluate --model reviews-bert``: every method against the known rationales of the reviews world.

Held-out reviews ``0 .. N-1`` of ``--seed`` (:mod:`relevance.data.reviews`; the model was trained on seed 1), each
review's **labelled** class explained by every method; a map's words (max over each word's pieces, clamped at 0,
[CLS]/[SEP] skipped) are scored against the review's rationale, the opinion phrase(s) that decide its label:

* **Token F1** with k = each review's rationale length (then precision = recall = F1; a perfect map scores 100);
* the token-F1 curve over fixed k = 1..10 (the paper's plot, drawn in ``token_f1.png``);
* comprehensiveness and sufficiency (AOPC over 1/5/10/20/50 % of the words, DeYoung et al. 2020);
* Token F1 by kind of review (plain, negation, contrast with "but", both).

``random`` (a uniform random score per word) is the floor. Writes ``results.md``, ``results.json`` and
``token_f1.png`` / ``.pdf`` to ``--out`` (default ``out/evaluate-reviews``); sharded over ``torchrun`` processes and
resumable like every protocol (:mod:`relevance.evaluation.sharding`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from relevance.cli.protocols import run_on_runtime
from relevance.cli.protocols.texts import (UsageError, check_text_classifier, confidence, methods_of,
                                           rows_in_batches, start_layers_of)

PROTOCOL = "reviews"
#: Held-out reviews when ``--samples`` is not given.
DEFAULT_REVIEWS = 300
#: The k of the token-F1 curve (reviews have 1 to 6 rationale words).
CURVE_KS = tuple(range(1, 11))
KINDS = ("plain", "negation", "contrast", "negation+contrast")
#: The seed of the embedded model's training reviews.
TRAINING_SEED = 1


def run(args: argparse.Namespace) -> int:
    """Run the reviews benchmark on this process's shards; rank 0 merges and writes the outputs (exit status)."""
    return run_on_runtime(args, _run)


def load_reviews_model(name: str, device: str) -> Any:
    """``reviews-bert``, or a folder written by ``demos/train_reviews.py`` (the world needs a model trained on it)."""
    from relevance.data.reviews import LABELS
    from relevance.models.reviews import EMBEDDED_NAME, load_embedded

    if name != EMBEDDED_NAME and not Path(name).is_dir():
        raise UsageError(f"--model must be {EMBEDDED_NAME!r} or a folder written by demos/train_reviews.py (the "
                         f"reviews world needs a model trained on it); got {name!r}")
    try:
        model = load_embedded(device=device) if name == EMBEDDED_NAME else load_embedded(device=device, directory=name)
    except (OSError, ValueError) as problem:
        raise UsageError(f"cannot load {name}: {problem}") from None
    check_text_classifier(model, name)
    if list(model.class_names or []) != list(LABELS):
        raise UsageError(f"the model's classes are not the reviews world's {', '.join(LABELS)}")
    return model


def _run(args: argparse.Namespace, runtime) -> int:
    from relevance.data.reviews import generate_reviews
    from relevance.evaluation.rationales import RationaleSample, evaluation_from_rows, rationale_rows
    from relevance.evaluation.sharding import ShardPlan, ShardStore, run_shards

    if args.checkpoint is not None:
        raise UsageError("the reviews protocol takes reviews-bert or a trained folder as --model, not --checkpoint")
    started = time.time()
    model_name = args.model or "reviews-bert"
    model = load_reviews_model(model_name, str(runtime.device))
    methods = methods_of(args)
    start_layers = start_layers_of(model, methods, args.start_layer)
    count = args.samples or DEFAULT_REVIEWS
    out = Path(args.out or f"out/evaluate-{PROTOCOL}")
    manifest = dict(protocol=PROTOCOL, model=model_name, reviews=count, seed=args.seed, methods=methods,
                    start_layers=start_layers, ks=list(CURVE_KS), batch_size=args.batch_size,
                    shard_size=args.shard_size, device=runtime.device.type, format=1)

    def batch(indices: range) -> dict[str, np.ndarray]:
        reviews = generate_reviews(len(indices), args.seed, start=indices.start)
        samples = [RationaleSample(tuple(r.words), r.label, frozenset(r.rationale), f"review-{args.seed}-{r.index}")
                   for r in reviews]
        rows = rationale_rows(model, samples, methods, ks=CURVE_KS, batch_size=len(samples), seed=args.seed,
                              indices=list(indices), start_layers=start_layers)
        rows["kind"] = np.array([KINDS.index(r.kind) for r in reviews], dtype=np.int64)
        return rows

    def compute(indices: range, advance) -> dict[str, np.ndarray]:
        return rows_in_batches(indices, args.batch_size, advance, batch)

    rows = run_shards(ShardPlan(count, args.shard_size), ShardStore(out / "shards", manifest), runtime, compute,
                      progress=not args.no_progress, desc=PROTOCOL)
    if rows is None:  # not rank 0
        return 0
    evaluation = evaluation_from_rows(rows, CURVE_KS, start_layers)
    summary = (f"{count} held-out reviews of the reviews world (seed {args.seed}, indices 0..{count - 1}; "
               f"`{model_name}` was trained on seed {TRAINING_SEED}), model `{model_name}` (accuracy "
               f"{evaluation.accuracy:.1f} %). Each review's labelled class is explained; word scores are the max "
               "over the word's pieces, clamped at 0, special tokens skipped.")
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(evaluation, rows)
    (out / "results.md").write_text("\n".join([f"# Rationales of the reviews world ({model_name})", "", summary, "",
                                               table, "", "## Token F1 by kind of review", "",
                                               kinds_table(evaluation, rows), "",
                                               "## Token F1 at fixed k (the curve of `token_f1.png`)", "",
                                               curve_table(evaluation), ""]))
    result = dict(protocol=PROTOCOL, model=model_name, seed=args.seed, reviews=count, **evaluation.as_dict(),
                  confidence={m: 100 * confidence(rows[f"{m}.f1"]) for m in evaluation.token_f1},
                  by_kind={m: kind_scores(rows, m) for m in evaluation.token_f1})
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    written = [out / "results.md", out / "results.json"] + _figure(evaluation, model_name, count, out)
    print(table)
    print(f"\n{count} reviews, {runtime.world_size} process(es), {time.time() - started:.0f}s; wrote "
          + ", ".join(str(p) for p in written))
    return 0


def markdown_table(evaluation, rows: dict[str, np.ndarray]) -> str:
    """One row per method (and ``random``): Token F1 with its 95 % confidence interval, comprehensiveness,
    sufficiency and the wall-clock milliseconds per explained review; the best non-random score of each column in
    bold."""
    methods = list(evaluation.token_f1)
    columns = {"f1": evaluation.token_f1, "comprehensiveness": evaluation.comprehensiveness,
               "sufficiency": evaluation.sufficiency}
    best = {key: (min if key == "sufficiency" else max)((v for m, v in values.items() if m != "random"), default=None)
            for key, values in columns.items()}

    def cell(key: str, method: str, text: str) -> str:
        return f"**{text}**" if method != "random" and columns[key][method] == best[key] else text

    lines = ["| Method | Token F1 ↑ | ± 95 % CI | Comprehensiveness ↑ | Sufficiency ↓ | ms / explanation |",
             "|---|---|---|---|---|---:|"]
    for method in methods:
        cost = evaluation.milliseconds.get(method)
        lines.append(f"| {evaluation.row_name(method)} | {cell('f1', method, f'{evaluation.token_f1[method]:.1f}')} "
                     f"| {100 * confidence(rows[f'{method}.f1']):.1f} "
                     f"| {cell('comprehensiveness', method, f'{evaluation.comprehensiveness[method]:.3f}')} "
                     f"| {cell('sufficiency', method, f'{evaluation.sufficiency[method]:.3f}')} "
                     f"| {'–' if cost is None else f'{cost:.1f}'} |")
    return "\n".join(lines)


def kind_scores(rows: dict[str, np.ndarray], method: str) -> dict[str, float | None]:
    """Token F1 (%) of ``method`` on each kind of review (``None`` for a kind without reviews)."""
    return {kind: (100 * float(rows[f"{method}.f1"][rows["kind"] == k].mean()) if (rows["kind"] == k).any()
                   else None) for k, kind in enumerate(KINDS)}


def kinds_table(evaluation, rows: dict[str, np.ndarray]) -> str:
    counts = [int((rows["kind"] == k).sum()) for k in range(len(KINDS))]
    lines = ["| Method | " + " | ".join(f"{kind} ({n})" for kind, n in zip(KINDS, counts)) + " |",
             "|---|" + "---|" * len(KINDS)]
    for method in evaluation.token_f1:
        scores = kind_scores(rows, method)
        lines.append(f"| {evaluation.row_name(method)} | "
                     + " | ".join("—" if scores[k] is None else f"{scores[k]:.1f}" for k in KINDS) + " |")
    return "\n".join(lines)


def curve_table(evaluation) -> str:
    lines = ["| Method | " + " | ".join(f"k={k}" for k in evaluation.ks) + " |", "|---|" + "---|" * len(evaluation.ks)]
    for method, curve in evaluation.curves.items():
        lines.append(f"| {evaluation.row_name(method)} | " + " | ".join(f"{v:.1f}" for v in curve) + " |")
    return "\n".join(lines)


def _figure(evaluation, model_name: str, count: int, out: Path) -> list[Path]:
    from relevance.figures.rationales import token_f1_figure
    from relevance.figures.style import save

    figure = token_f1_figure(evaluation.curves, evaluation.ks, start_layers=evaluation.start_layers,
                             title=f"Token F1 of the top-k words on {count} held-out reviews ({model_name}); "
                                   "labelled class explained")
    return save(figure, out / "token_f1")
