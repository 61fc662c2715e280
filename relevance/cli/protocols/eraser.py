"""``relevance evaluate --protocol eraser --data MOVIES_DIR``: the CVPR 2021 token-F1 curve (spec §5.4).

The protocol of the authors' ERASER pipeline (``bert_pipeline.py``) and ERASER's scorer (DeYoung et al., ACL 2020),
on the runner pattern of :mod:`relevance.cli.protocols.imagenet_seg` (one row per document, so that
:func:`~relevance.cli.protocols.images.run_sharded` shards, resumes and merges it exactly):

* the ERASER Movie Reviews **test** split from disk (199 documents: ``MOVIES_DIR/test.jsonl`` and
  ``MOVIES_DIR/docs/``; ``--samples N``: the first N); nothing is downloaded;
* each document's map for its **ground-truth** class (``NEG``/``POS`` matched to the model's classes by name,
  else 0/1), clamped at 0; documents longer than the model's maximum are cut there (the reference's
  ``max_length``), and their cut words are never chosen;
* transformer attribution from the **last** block, the default of the reference's BERT generator that its ERASER
  pipeline used (11 of 12, spec §6.1 #9; ``--start-layer`` changes it, and the output states it); the other
  methods with the family's conventions;
* word pieces mapped to ERASER's whitespace tokens by the **max** over the pieces that cover each token
  (:func:`relevance.evaluation.rationales.word_scores`, the word reduction of ``TextMap.words(i, reduce="max")``
  with ERASER's tokens as the words); [CLS], [SEP], [UNK], [PAD] skipped;
* for k = 5, 10, ..., 80 the top-k words form a hard rationale (ties: the earlier word); token-level precision,
  recall and F1 against the human rationales per document (ERASER's token-level ``instance_prf``), stored as rows
  and averaged over documents (instance macro, the number ERASER's scorer prints);
* ``random`` (a uniform random score per word, from ``--seed`` and the document's index) as the floor.

Writes ``results.md`` (F1 per k and method; the paper's plot has no numeric table, spec §5.4), ``results.json`` (F1,
precision and recall per k) and ``token_f1.png`` / ``.pdf`` (the curves) to ``--out`` (default
``out/evaluate-eraser``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from relevance.cli.evaluate import error
from relevance.cli.protocols import run_on_runtime
from relevance.cli.protocols.texts import UsageError, check_text_classifier, methods_of, start_layers_of

PROTOCOL = "eraser"
SPLIT = "test"
#: ERASER Movie Reviews' classes, in the order they are matched to the model's.
ERASER_CLASSES = ("NEG", "POS")


def run(args: argparse.Namespace) -> int:
    """Run the ERASER curve on this process's shards; rank 0 merges and writes the outputs. Returns the exit status."""
    try:
        import relevance.evaluation.rationales  # noqa: F401  (the BERT family's ERASER metrics)
        import relevance.models.bert  # noqa: F401
    except ModuleNotFoundError:
        return error("the 'eraser' protocol is not available in this installation: it needs the BERT family "
                     "(relevance.models.bert) and relevance.evaluation.rationales")
    return run_on_runtime(args, _run)


def load_text_classifier(args: argparse.Namespace, runtime) -> tuple[Any, str]:
    """``--model`` (default: the text default) with ``--checkpoint`` (a folder of Hugging Face files), and its name."""
    from relevance.models import create

    try:
        model = create(args.model, checkpoint=args.checkpoint, device=str(runtime.device), modality="text",
                       quiet=not runtime.is_main)
    except (ValueError, OSError, RuntimeError) as problem:
        raise UsageError(str(problem)) from problem
    name = args.model or model.info.name or "the default text model"
    check_text_classifier(model, name)
    return model, name


def class_order(model: Any) -> tuple[str, str]:
    """ERASER's class names in the order of the model's classes 0 and 1: by the model's class names when they
    start with "neg" / "pos", else ``NEG`` = 0, ``POS`` = 1."""
    names = [str(n).lower() for n in (model.info.class_names or [])]
    if len(names) == 2 and names[0].startswith("pos") and names[1].startswith("neg"):
        return ERASER_CLASSES[1], ERASER_CLASSES[0]
    return ERASER_CLASSES


class _Documents:
    """The documents as a dataset of ``(sample, label)`` pairs (what :func:`run_sharded` iterates)."""

    def __init__(self, samples: Sequence[Any]):
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, self.samples[index].label


def _run(args: argparse.Namespace, runtime) -> int:
    from relevance.adapter import adapter_for
    from relevance.cli.protocols.images import describe_data, out_folder, run_sharded
    from relevance.evaluation.rationales import (ERASER_KS, explained_word_scores, instance_prf, load_eraser,
                                                 random_word_scores, top_k)

    started = time.time()
    if not (Path(args.data) / f"{SPLIT}.jsonl").is_file():
        raise UsageError(f"{args.data}: no ERASER split {SPLIT}.jsonl (expected the movies folder: docs/ and "
                         "train/val/test.jsonl)")
    model, model_name = load_text_classifier(args, runtime)
    if len(model.info.class_names or [None, None]) != 2:
        raise UsageError(f"{model_name} has {len(model.info.class_names)} classes; ERASER Movie Reviews needs a "
                         "2-class (negative, positive) sentiment classifier")
    order = class_order(model)
    try:
        samples = load_eraser(args.data, SPLIT, classes=order, limit=args.samples)
    except (FileNotFoundError, ValueError, KeyError) as problem:
        raise UsageError(f"{args.data}: {problem}") from None
    if not samples:
        raise UsageError(f"{args.data}/{SPLIT}.jsonl holds no documents")
    methods = methods_of(args)
    depth = adapter_for(model).depths()["text"]
    start_layers = start_layers_of(model, methods, args.start_layer, {"transformer_attribution": depth - 1})

    def batch(indices: Any, labels: Any) -> dict[str, np.ndarray]:
        chosen = [samples[int(i)] for i in indices]
        scores, predictions, seconds = explained_word_scores(model, chosen, methods, batch_size=len(chosen),
                                                             start_layers=start_layers)
        # the floor draws among the words the model saw (words cut off by truncation stay unchosen, as for the maps)
        scores["random"] = [np.where(np.isfinite(seen), random_word_scores(len(s.words), args.seed, int(i)), -np.inf)
                            for s, i, seen in zip(chosen, indices, scores[methods[0]])]
        rows = {"correct": predictions == np.asarray([s.label for s in chosen]),
                "cut_words": np.array([int(np.isinf(w).sum()) for w in scores[methods[0]]], dtype=np.int64),
                **{f"{m}.seconds": times for m, times in seconds.items()}}
        for method, per_document in scores.items():
            prf = np.array([[instance_prf(set(s.rationale), top_k(w, k)) for k in ERASER_KS]
                            for s, w in zip(chosen, per_document)], dtype=np.float64)  # (documents, ks, 3)
            rows[f"{method}.p"], rows[f"{method}.r"], rows[f"{method}.f1"] = np.moveaxis(prf, 2, 0)
        return rows

    manifest = dict(protocol=PROTOCOL, model=model_name, checkpoint=args.checkpoint, data=describe_data(args.data),
                    split=SPLIT, classes=list(order), methods=methods, start_layers=start_layers, ks=list(ERASER_KS),
                    seed=args.seed)
    out = out_folder(args, PROTOCOL)
    rows = run_sharded(args, runtime, _Documents(samples), batch, manifest, out)
    if rows is None:  # not rank 0
        return 0
    curves = {m: {key: (100 * rows[f"{m}.{key}"].mean(axis=0)).tolist() for key in ("f1", "p", "r")}
              for m in [*methods, "random"]}
    milliseconds = {m: 1000 * float(rows[f"{m}.seconds"].mean()) for m in methods}
    documents = len(rows["index"])
    cut = int((rows["cut_words"] > 0).sum())
    accuracy = 100 * float(rows["correct"].mean())
    settings = (f"{documents} documents of the ERASER Movie Reviews {SPLIT} split ({describe_data(args.data)}), model "
                f"`{model_name}`" + (f" (weights {args.checkpoint})" if args.checkpoint else "")
                + f", accuracy {accuracy:.1f} % on them. Each document's ground-truth class is explained (ERASER "
                  f"{order[0]} = class 0, {order[1]} = class 1); maps clamped at 0, max over each word's pieces, "
                  "special tokens skipped; the top-k words against the human rationales, token F1 per document "
                  "averaged over documents (instance macro). Start blocks: "
                + (", ".join(f"{m} {s}" for m, s in start_layers.items()) or "none")
                + f" (transformer attribution from the last block of {depth}, the ERASER pipeline's default; "
                  f"--start-layer changes it). {cut} of {documents} documents were longer than the model's "
                  "maximum and cut there. Percent.")
    table = f1_table(curves, ERASER_KS, start_layers, milliseconds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join([f"# ERASER Movie Reviews token F1 (CVPR 2021 §5.4): `{model_name}`",
                                               "", settings, "", table, ""]))
    (out / "results.json").write_text(json.dumps(
        {"protocol": PROTOCOL, "model": model_name, "checkpoint": args.checkpoint, "data": describe_data(args.data),
         "split": SPLIT, "documents": documents, "accuracy": accuracy, "classes": list(order),
         "ks": list(ERASER_KS), "start_layers": start_layers, "documents_cut": cut, "seed": args.seed,
         "methods": curves, "milliseconds_per_explanation": milliseconds}, indent=2) + "\n")
    written = [out / "results.md", out / "results.json"] + _figure(curves, start_layers, model_name, documents, out)
    print(table)
    print(f"\n{documents} documents, {runtime.world_size} process(es), {time.time() - started:.0f}s; wrote "
          + ", ".join(str(p) for p in written))
    return 0


def f1_table(curves: dict[str, dict[str, list[float]]], ks: Sequence[int], start_layers: dict[str, int],
             milliseconds: dict[str, float] | None = None) -> str:
    """Markdown: one row per method, token F1 (%) at each k, and the wall-clock milliseconds per explained document
    when ``milliseconds`` is given (``–`` for ``random``)."""
    timed = milliseconds is not None
    lines = ["| Method | " + " | ".join(f"k={k}" for k in ks) + (" | ms / explanation |" if timed else " |"),
             "|---|" + "---|" * len(ks) + ("---:|" if timed else "")]
    for method, curve in curves.items():
        name = f"{method} (start {start_layers[method]})" if method in start_layers else method
        cost = (f" {milliseconds[method]:.1f} |" if method in milliseconds else " – |") if timed else ""
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in curve["f1"]) + " |" + cost)
    return "\n".join(lines)


def _figure(curves, start_layers, model_name: str, documents: int, out) -> list:
    from relevance.evaluation.rationales import ERASER_KS
    from relevance.figures.rationales import token_f1_figure
    from relevance.figures.style import save

    figure = token_f1_figure({m: c["f1"] for m, c in curves.items()}, ERASER_KS, start_layers=start_layers,
                             title=f"ERASER Movie Reviews: token F1 of the top-k words, {documents} test documents "
                                   f"({model_name}); ground-truth class explained")
    return save(figure, out / "token_f1")
