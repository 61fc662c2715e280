"""Explanations of text classifiers against rationales: ERASER-style token precision / recall / F1 of the top-k words
(the protocol of Chefer et al., CVPR 2021, §5.4 of the spec) and comprehensiveness / sufficiency (AOPC), after
DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL 2020.

Protocol (spec §5.4, as the authors' ``bert_pipeline.py`` and ERASER's ``metrics.py`` compute it):

* the map is clamped at 0; word pieces map to whitespace words by the **max** over the characters each piece
  covers; special tokens ([CLS], [SEP], [PAD], [UNK]) are skipped;
* the top-k words form a hard rationale, one token span per word;
* token-level precision/recall/F1 per instance (``|truth & predicted| / |predicted|``, ``/ |truth|``), averaged over
  instances ("instance macro", the number the ERASER scorer prints).

Comprehensiveness (how much the prediction drops when the top words are removed) and sufficiency (how much it drops
when only they are kept) are averaged over the bins ``q`` = 1, 5, 10, 20, 50 % of the words (AOPC, DeYoung et al.
2020, §4.2); the probability is the explained class's softmax probability.

Data: the reviews world (:mod:`relevance.data.reviews`, :func:`evaluate_reviews`) or ERASER-format datasets on disk
(:func:`load_eraser`: ``docs/``, ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl`` with ``evidences``; nothing is
downloaded).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

#: Fractions of the words removed or kept for comprehensiveness and sufficiency (DeYoung et al. 2020).
AOPC_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
#: The paper's k for the token-F1 curve on ERASER Movie Reviews (spec §5.4).
ERASER_KS = tuple(range(5, 85, 5))
SKIPPED_TOKENS = ("[CLS]", "[SEP]", "[UNK]", "[PAD]")


@dataclass(frozen=True)
class RationaleSample:
    """A document with its label and rationale: ``words`` (whitespace words), ``label`` (class index),
    ``rationale`` (indices into ``words``), ``name`` (annotation id)."""

    words: tuple[str, ...]
    label: int
    rationale: frozenset[int]
    name: str = ""

    @property
    def text(self) -> str:
        return " ".join(self.words)


# ------------------------------------------------------------------------------------------------ metrics
def word_scores(text: str, offsets: Sequence[tuple[int, int]], scores: Sequence[float],
                special: Sequence[bool]) -> np.ndarray:
    """Per whitespace word of ``text``: the max of the clamped scores of the word pieces that cover its characters
    (spec §5.4). ``offsets`` are the pieces' character spans in ``text``; special pieces are skipped. Words no
    piece covers (cut by truncation) get ``-inf``, so they are never selected."""
    starts, position = [], 0
    words = text.split(" ")
    for word in words:
        starts.append(position)
        position += len(word) + 1
    result = np.full(len(words), -np.inf)
    clamped = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    for (begin, end), score, is_special in zip(offsets, clamped, special):
        if is_special or end <= begin:
            continue
        for index, start in enumerate(starts):
            if start < end and begin < start + len(words[index]):
                result[index] = max(result[index], score)
    return result


def top_k(scores: np.ndarray, k: int) -> set[int]:
    """The indices of the ``k`` highest finite scores (ties: the earlier word first)."""
    order = np.argsort(-scores, kind="stable")
    return {int(i) for i in order[:k] if np.isfinite(scores[i])}


def token_prf(truth: Sequence[set[int]], predicted: Sequence[set[int]]) -> dict[str, float]:
    """ERASER's token-level scores of hard rationales (``score_hard_rationale_predictions`` on token-level spans):
    per instance ``p = |T & P| / |P|``, ``r = |T & P| / |T|`` (0 when empty), ``f1`` their harmonic mean (0 when
    either is 0), averaged over instances (``instance_macro``); and ``micro_*`` over all tokens pooled."""
    if len(truth) != len(predicted) or not truth:
        raise ValueError("token_prf needs one truth and one prediction per instance, and at least one instance")
    ps, rs, fs = [], [], []
    for t, p in zip(truth, predicted):
        hit = len(set(t) & set(p))
        precision = hit / len(p) if p else 0.0
        recall = hit / len(t) if t else 0.0
        ps.append(precision)
        rs.append(recall)
        fs.append(0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall))
    hits = sum(len(set(t) & set(p)) for t, p in zip(truth, predicted))
    total_p, total_t = sum(len(p) for p in predicted), sum(len(t) for t in truth)
    micro_p = hits / total_p if total_p else 0.0
    micro_r = hits / total_t if total_t else 0.0
    micro_f = 0.0 if micro_p == 0 or micro_r == 0 else 2 * micro_p * micro_r / (micro_p + micro_r)
    return {"p": float(np.mean(ps)), "r": float(np.mean(rs)), "f1": float(np.mean(fs)), "micro_p": micro_p,
            "micro_r": micro_r, "micro_f1": micro_f}


def aopc(full: np.ndarray, perturbed: np.ndarray) -> float:
    """Mean over samples and bins of ``p(full) - p(perturbed)``: full (S,), perturbed (S, bins)."""
    return float(np.mean(full[:, None] - perturbed))


# ------------------------------------------------------------------------------------------------ runner
@dataclass
class RationaleEvaluation:
    """Scores per method (names as :func:`relevance.list_methods`, plus ``random``).

    Attributes
    ----------
    token_f1:
        Token F1 (instance macro, %) with k = each sample's rationale length (a perfect map scores 100).
    curves:
        Per method, token F1 (%) at each of :attr:`ks` (the paper's curve).
    comprehensiveness, sufficiency:
        AOPC over :data:`AOPC_BINS` (probability drop; higher comprehensiveness and lower sufficiency are better).
    accuracy:
        The model's accuracy (%) on the samples.
    """

    ks: tuple[int, ...]
    samples: int
    accuracy: float
    token_f1: dict[str, float] = field(default_factory=dict)
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    comprehensiveness: dict[str, float] = field(default_factory=dict)
    sufficiency: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table, one row per method."""
        lines = [f"Rationales of {self.samples} samples (model accuracy {self.accuracy:.1f} %); token P/R/F1 with k = "
                 "each sample's rationale length; AOPC over bins 1/5/10/20/50 % of the words.", "",
                 "| method | Token F1 | Token P | Token R | Comprehensiveness ↑ | Sufficiency ↓ |",
                 "|---|---|---|---|---|---|"]
        for method in self.token_f1:
            lines.append(f"| {method} | {self.token_f1[method]:.1f} | {self.precision[method]:.1f} | "
                         f"{self.recall[method]:.1f} | {self.comprehensiveness.get(method, float('nan')):.3f} | "
                         f"{self.sufficiency.get(method, float('nan')):.3f} |")
        return "\n".join(lines)

    def figure(self, path: str | Path | None = None) -> np.ndarray:
        """The paper's plot: token F1 against k, one curve per method, as a uint8 RGB image (saved as PNG to
        ``path`` when given)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for method, curve in self.curves.items():
            axis.plot(self.ks, curve, marker="o", markersize=3, label=method,
                      linestyle="--" if method == "random" else "-")
        axis.set_xlabel("k (top words)")
        axis.set_ylabel("token F1 (%)")
        axis.set_title(f"Token F1 of the top-k words ({self.samples} samples)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
        figure.tight_layout()
        figure.canvas.draw()
        image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
        if path is not None:
            figure.savefig(str(path))
        plt.close(figure)
        return image


def _class_probability(model: Any, texts: list[str], classes: list[int], batch_size: int) -> np.ndarray:
    """Softmax probability of each text's class, texts that tokenize to nothing get the empty input."""
    tokenizer = model.info.tokenizer
    device = next(model.parameters()).device
    from relevance.models.text_inputs import max_length

    probabilities = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            part = texts[start:start + batch_size]
            encoded = tokenizer(part, padding=True, truncation=True, max_length=max_length(model.config, tokenizer),
                                return_tensors="pt")
            inputs = {k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask",
                                                                             "token_type_ids")}
            logits = model(**inputs).float().softmax(dim=-1).cpu().numpy()
            probabilities.extend(logits[np.arange(len(part)), classes[start:start + batch_size]])
    return np.asarray(probabilities)


def evaluate_rationales(model: Any, samples: Sequence[RationaleSample], methods: Sequence[str] | None = None, *,
                        ks: Sequence[int] = tuple(range(1, 11)), batch_size: int = 16, seed: int = 0,
                        aopc_bins: Sequence[float] = AOPC_BINS, **options: Any) -> RationaleEvaluation:
    """Explain each sample's labelled class with every method and score the maps against the rationales.

    Parameters
    ----------
    model:
        A converted text classifier (:func:`relevance.models.bert.from_hf`, ``create("reviews-bert")``).
    samples:
        :class:`RationaleSample` s (:func:`reviews_samples`, :func:`load_eraser`).
    methods:
        Names of :func:`relevance.list_methods` (default: all); ``random`` (a uniform random score per word, with
        ``seed``) is always added as the floor.
    ks:
        The k of the token-F1 curve (the paper's 10..80 for ERASER Movie Reviews, :data:`ERASER_KS`).
    options:
        Passed to :func:`relevance.explain` (``start_layer``, ...).
    """
    import relevance

    methods = list(relevance.list_methods() if methods is None else methods)
    tokenizer = model.info.tokenizer
    from relevance.models.text_inputs import max_length

    texts = [s.text for s in samples]
    labels = [int(s.label) for s in samples]
    truths = [set(s.rationale) for s in samples]
    lengths = [len(s.rationale) for s in samples]
    full = _class_probability(model, texts, labels, batch_size)
    predictions = []
    scores: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    limit = max_length(model.config, tokenizer)
    for start in range(0, len(samples), batch_size):
        part = texts[start:start + batch_size]
        encoded = tokenizer(part, padding=True, truncation=True, max_length=limit, return_tensors="pt",
                            return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping").tolist()
        special_ids = set(tokenizer.all_special_ids)
        for method in methods:
            result = relevance.explain(model, encoded, method=method, target=labels[start:start + batch_size],
                                       **options)
            values = result.relevance.detach().double().cpu().numpy()
            for row, text in enumerate(part):
                ids = encoded["input_ids"][row].tolist()
                special = [(i in special_ids) or not m for i, m in zip(ids, encoded["attention_mask"][row].tolist())]
                scores[method].append(word_scores(text, offsets[row], values[row], special))
            if method == methods[0]:
                predictions.extend(result.logits.argmax(dim=-1).tolist())
    rng = np.random.default_rng(seed)
    scores["random"] = [rng.random(len(s.words)) for s in samples]
    evaluation = RationaleEvaluation(ks=tuple(ks), samples=len(samples),
                                     accuracy=100 * float(np.mean(np.asarray(predictions) == np.asarray(labels))))
    for method, per_sample in scores.items():
        prf = token_prf(truths, [top_k(s, n) for s, n in zip(per_sample, lengths)])
        evaluation.token_f1[method] = 100 * prf["f1"]
        evaluation.precision[method] = 100 * prf["p"]
        evaluation.recall[method] = 100 * prf["r"]
        evaluation.curves[method] = [100 * token_prf(truths, [top_k(s, k) for s in per_sample])["f1"] for k in ks]
        removed, kept = [], []
        for sample, word_score in zip(samples, per_sample):
            row_removed, row_kept = [], []
            for fraction in aopc_bins:
                chosen = top_k(word_score, max(1, round(fraction * len(sample.words))))
                row_removed.append(" ".join(w for i, w in enumerate(sample.words) if i not in chosen) or "[UNK]")
                row_kept.append(" ".join(w for i, w in enumerate(sample.words) if i in chosen) or "[UNK]")
            removed.append(row_removed)
            kept.append(row_kept)
        bins = len(aopc_bins)
        repeated = [label for label in labels for _ in range(bins)]
        without = _class_probability(model, [t for row in removed for t in row], repeated, batch_size)
        only = _class_probability(model, [t for row in kept for t in row], repeated, batch_size)
        evaluation.comprehensiveness[method] = aopc(full, without.reshape(-1, bins))
        evaluation.sufficiency[method] = aopc(full, only.reshape(-1, bins))
    return evaluation


# --------------------------------------------------------------------------------------------------- data
def reviews_samples(count: int, seed: int = 0) -> list[RationaleSample]:
    """Samples of the reviews world (:func:`relevance.data.reviews.generate_reviews`)."""
    from relevance.data.reviews import generate_reviews

    return [RationaleSample(tuple(r.words), r.label, frozenset(r.rationale), f"review-{seed}-{r.index}")
            for r in generate_reviews(count, seed)]


def evaluate_reviews(model: Any = None, samples: int = 300, seed: int = 2, methods: Sequence[str] | None = None,
                     **options: Any) -> RationaleEvaluation:
    """:func:`evaluate_rationales` on ``samples`` reviews of the world with ``seed`` (default: the embedded model's
    held-out seed), k = 1..10 for the curve. ``model``: a converted classifier or a name (default
    ``"reviews-bert"``)."""
    if model is None or isinstance(model, str):
        from relevance.models import create

        model = create(model or "reviews-bert", modality="text")
    return evaluate_rationales(model, reviews_samples(samples, seed), methods, **options)


def load_eraser(directory: str | Path, split: str = "test", classes: Sequence[str] = ("NEG", "POS"),
                limit: int | None = None) -> list[RationaleSample]:
    """ERASER-format samples from disk: ``{directory}/{split}.jsonl`` (one annotation per line: ``annotation_id``,
    ``classification``, ``evidences`` = groups of ``{docid, start_token, end_token}``, end exclusive) and the
    documents ``{directory}/docs/{docid}`` (whitespace tokens, one sentence per line). Movie Reviews' classes are
    ``NEG``/``POS``; the label is the class's index in ``classes``."""
    directory = Path(directory)
    path = directory / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no ERASER split {path} (expected docs/ and train/val/test.jsonl)")
    samples = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        annotation = json.loads(line)
        evidences = [e for group in annotation.get("evidences", []) for e in group]
        docids = {e["docid"] for e in evidences} or set(annotation.get("docids") or [annotation["annotation_id"]])
        if len(docids) != 1:
            raise ValueError(f"{annotation['annotation_id']}: rationales over several documents are not supported")
        docid = docids.pop()
        words = tuple((directory / "docs" / docid).read_text().split())
        rationale = frozenset(t for e in evidences for t in range(e["start_token"], e["end_token"]))
        if rationale and max(rationale) >= len(words):
            raise ValueError(f"{annotation['annotation_id']}: evidence beyond the document's {len(words)} tokens")
        if annotation["classification"] not in classes:
            raise ValueError(f"unknown class {annotation['classification']!r}; classes are {list(classes)}")
        samples.append(RationaleSample(words, list(classes).index(annotation["classification"]), rationale,
                                       annotation["annotation_id"]))
        if limit is not None and len(samples) >= limit:
            break
    return samples
