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
from typing import Any, Mapping, Sequence

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


def instance_prf(truth: set[int], predicted: set[int]) -> tuple[float, float, float]:
    """One instance's token precision ``|T & P| / |P|``, recall ``|T & P| / |T|`` (0 when empty) and F1 (their
    harmonic mean, 0 when either is 0)."""
    hit = len(set(truth) & set(predicted))
    precision = hit / len(predicted) if predicted else 0.0
    recall = hit / len(truth) if truth else 0.0
    f1 = 0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def token_prf(truth: Sequence[set[int]], predicted: Sequence[set[int]]) -> dict[str, float]:
    """ERASER's token-level scores of hard rationales (``score_hard_rationale_predictions`` on token-level spans):
    per instance :func:`instance_prf`, averaged over instances (``instance_macro``); and ``micro_*`` over all tokens
    pooled."""
    if len(truth) != len(predicted) or not truth:
        raise ValueError("token_prf needs one truth and one prediction per instance, and at least one instance")
    ps, rs, fs = zip(*(instance_prf(t, p) for t, p in zip(truth, predicted)))
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
    start_layers:
        The first block of the methods that chain blocks (shown in the table's method names).
    milliseconds:
        Per method, the mean wall-clock milliseconds of explaining one sample (where timed).
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
    start_layers: dict[str, int] = field(default_factory=dict)
    milliseconds: dict[str, float] = field(default_factory=dict)

    def row_name(self, method: str) -> str:
        """``"transformer_attribution (start 0)"``: the method's name, with its start block where it has one."""
        return f"{method} (start {self.start_layers[method]})" if method in self.start_layers else method

    def table(self) -> str:
        """A Markdown table, one row per method."""
        lines = [f"Rationales of {self.samples} samples (model accuracy {self.accuracy:.1f} %); token P/R/F1 with k = "
                 "each sample's rationale length; AOPC over bins 1/5/10/20/50 % of the words.", "",
                 "| method | Token F1 | Token P | Token R | Comprehensiveness ↑ | Sufficiency ↓ |",
                 "|---|---|---|---|---|---|"]
        for method in self.token_f1:
            lines.append(f"| {self.row_name(method)} | {self.token_f1[method]:.1f} | {self.precision[method]:.1f} | "
                         f"{self.recall[method]:.1f} | {self.comprehensiveness.get(method, float('nan')):.3f} | "
                         f"{self.sufficiency.get(method, float('nan')):.3f} |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values."""
        return {"samples": self.samples, "accuracy": self.accuracy, "ks": list(self.ks),
                "start_layers": dict(self.start_layers),
                "methods": {m: {"token_f1": self.token_f1[m], "token_p": self.precision[m],
                                "token_r": self.recall[m], "curve": list(self.curves[m]),
                                "comprehensiveness": self.comprehensiveness.get(m),
                                "sufficiency": self.sufficiency.get(m),
                                "milliseconds_per_explanation": self.milliseconds.get(m)} for m in self.token_f1}}

    def figure(self, path: str | Path | None = None, *, title: str | None = None) -> np.ndarray:
        """The paper's plot: token F1 against k, one curve per method (:func:`relevance.figures.rationales.
        token_f1_figure`), as a uint8 RGB image; saved as PNG to ``path`` when given."""
        from relevance.figures.rationales import figure_pixels, token_f1_figure

        figure = token_f1_figure(self.curves, self.ks, start_layers=self.start_layers,
                                 title=title or f"Token F1 of the top-k words ({self.samples} samples)")
        if path is not None:
            from relevance.figures.style import save

            save(figure, Path(path).with_suffix(""), formats=("png",))
        return figure_pixels(figure)


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


def random_word_scores(words: int, seed: int, index: int) -> np.ndarray:
    """The ``random`` reference map of sample ``index``: a uniform score per word, from ``(seed, index)`` alone, so
    that a sample gets the same map in any batch or shard."""
    return np.random.default_rng([seed, index]).random(words)


def explained_word_scores(model: Any, samples: Sequence[RationaleSample], methods: Sequence[str], *,
                          batch_size: int = 16, start_layers: Mapping[str, int] | None = None,
                          **options: Any) -> tuple[dict[str, list[np.ndarray]], np.ndarray, dict[str, np.ndarray]]:
    """Each sample's labelled class explained by every method, as one score per whitespace word.

    Parameters
    ----------
    model:
        A converted text classifier.
    samples:
        The documents; texts longer than the model's maximum are truncated (their cut words score ``-inf``).
    methods:
        Names of :func:`relevance.list_methods`.
    start_layers:
        ``start_layer`` per method (others get the engine's default, or ``options``).
    options:
        Passed to :func:`relevance.explain`.

    Returns
    -------
    tuple
        ``{method: [per sample (W_i,) word scores]}`` (:func:`word_scores`: clamped at 0, max over each word's pieces,
        special tokens skipped), (S,) the predicted class of each sample, and ``{method: (S,) seconds}``: the
        wall-clock time of the method's ``explain`` call for the sample's batch, divided by the batch's size.
    """
    import time

    import relevance
    from relevance.models.text_inputs import max_length

    tokenizer = model.info.tokenizer
    limit = max_length(model.config, tokenizer)
    special_ids = set(tokenizer.all_special_ids)
    texts = [s.text for s in samples]
    labels = [int(s.label) for s in samples]
    scores: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    predictions: list[int] = []
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for start in range(0, len(samples), batch_size):
        part = texts[start:start + batch_size]
        encoded = tokenizer(part, padding=True, truncation=True, max_length=limit, return_tensors="pt",
                            return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping").tolist()
        for method in methods:
            settings = dict(options)
            if start_layers and method in start_layers:
                settings["start_layer"] = start_layers[method]
            started = time.perf_counter()
            result = relevance.explain(model, encoded, method=method, target=labels[start:start + batch_size],
                                       **settings)
            seconds[method] += [(time.perf_counter() - started) / len(part)] * len(part)
            values = result.relevance.detach().double().cpu().numpy()
            for row, text in enumerate(part):
                ids = encoded["input_ids"][row].tolist()
                special = [(i in special_ids) or not m for i, m in zip(ids, encoded["attention_mask"][row].tolist())]
                scores[method].append(word_scores(text, offsets[row], values[row], special))
            if method == methods[0]:
                predictions.extend(result.logits.argmax(dim=-1).tolist())
    return scores, np.asarray(predictions, dtype=np.int64), {m: np.asarray(t) for m, t in seconds.items()}


def _instance_rows(truths: Sequence[set[int]], chosen: Sequence[set[int]]) -> np.ndarray:
    """(S, 3) precision, recall and F1 of each instance."""
    return np.array([instance_prf(t, p) for t, p in zip(truths, chosen)], dtype=np.float64).reshape(-1, 3)


def rationale_rows(model: Any, samples: Sequence[RationaleSample], methods: Sequence[str] | None = None, *,
                   ks: Sequence[int] = tuple(range(1, 11)), batch_size: int = 16, seed: int = 0,
                   aopc_bins: Sequence[float] = AOPC_BINS, indices: Sequence[int] | None = None,
                   start_layers: Mapping[str, int] | None = None, **options: Any) -> dict[str, np.ndarray]:
    """One row per sample (so that sharded runs merge exactly): every score :class:`RationaleEvaluation` averages.

    Parameters
    ----------
    indices:
        Each sample's index in the whole evaluation (default ``0 .. S-1``): it seeds the sample's ``random`` map.
    aopc_bins:
        Fractions of the words for comprehensiveness and sufficiency; empty: leave them out.
    Others:
        As :func:`evaluate_rationales`.

    Returns
    -------
    dict
        ``correct`` (S,) prediction == label; per method ``m`` (and ``random``): ``m.p``, ``m.r``, ``m.f1`` (S,) at
        k = the sample's rationale length, ``m.curve_p``, ``m.curve_r``, ``m.curve_f1`` (S, len(ks)), and with bins
        ``m.comprehensiveness``, ``m.sufficiency`` (S,), each the mean over the bins, and ``m.seconds`` (S,) the
        wall-clock time of explaining the sample (its batch's time over the batch size; not for ``random``).
        Fractions, not percent.
    """
    import relevance

    methods = [relevance.get_method(m).name for m in (relevance.list_methods() if methods is None else methods)]
    indices = list(range(len(samples))) if indices is None else list(indices)
    if len(indices) != len(samples):
        raise ValueError(f"got {len(indices)} indices for {len(samples)} samples")
    labels = [int(s.label) for s in samples]
    truths = [set(s.rationale) for s in samples]
    lengths = [len(s.rationale) for s in samples]
    scores, predictions, seconds = explained_word_scores(model, samples, methods, batch_size=batch_size,
                                                         start_layers=start_layers, **options)
    scores["random"] = [random_word_scores(len(s.words), seed, i) for s, i in zip(samples, indices)]
    rows: dict[str, np.ndarray] = {"correct": predictions == np.asarray(labels)}
    rows.update({f"{method}.seconds": times for method, times in seconds.items()})
    full = _class_probability(model, [s.text for s in samples], labels, batch_size) if aopc_bins else None
    for method, per_sample in scores.items():
        at_length = _instance_rows(truths, [top_k(s, n) for s, n in zip(per_sample, lengths)])
        rows[f"{method}.p"], rows[f"{method}.r"], rows[f"{method}.f1"] = at_length.T
        curve = np.stack([_instance_rows(truths, [top_k(s, k) for s in per_sample]) for k in ks], axis=1)
        rows[f"{method}.curve_p"], rows[f"{method}.curve_r"], rows[f"{method}.curve_f1"] = np.moveaxis(curve, 2, 0)
        if aopc_bins:
            without, only = _perturbed_probabilities(model, samples, per_sample, labels, aopc_bins, batch_size)
            rows[f"{method}.comprehensiveness"] = (full[:, None] - without).mean(axis=1)
            rows[f"{method}.sufficiency"] = (full[:, None] - only).mean(axis=1)
    return rows


def _perturbed_probabilities(model: Any, samples: Sequence[RationaleSample], per_sample: Sequence[np.ndarray],
                             labels: Sequence[int], bins: Sequence[float],
                             batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, bins) class probabilities with the top words of each bin removed, and with only them kept."""
    removed, kept = [], []
    for sample, word_score in zip(samples, per_sample):
        for fraction in bins:
            chosen = top_k(word_score, max(1, round(fraction * len(sample.words))))
            removed.append(" ".join(w for i, w in enumerate(sample.words) if i not in chosen) or "[UNK]")
            kept.append(" ".join(w for i, w in enumerate(sample.words) if i in chosen) or "[UNK]")
    repeated = [label for label in labels for _ in bins]
    without = _class_probability(model, removed, repeated, batch_size).reshape(-1, len(bins))
    only = _class_probability(model, kept, repeated, batch_size).reshape(-1, len(bins))
    return without, only


def evaluation_from_rows(rows: Mapping[str, np.ndarray], ks: Sequence[int],
                         start_layers: Mapping[str, int] | None = None) -> RationaleEvaluation:
    """The averages of :func:`rationale_rows` (one or several shards' rows concatenated), in percent."""
    methods = [key[:-len(".f1")] for key in rows if key.endswith(".f1") and not key.endswith(".curve_f1")]
    evaluation = RationaleEvaluation(ks=tuple(int(k) for k in ks), samples=len(rows["correct"]),
                                     accuracy=100 * float(np.mean(rows["correct"])),
                                     start_layers=dict(start_layers or {}))
    for method in methods:
        evaluation.token_f1[method] = 100 * float(np.mean(rows[f"{method}.f1"]))
        evaluation.precision[method] = 100 * float(np.mean(rows[f"{method}.p"]))
        evaluation.recall[method] = 100 * float(np.mean(rows[f"{method}.r"]))
        evaluation.curves[method] = (100 * np.mean(rows[f"{method}.curve_f1"], axis=0)).tolist()
        if f"{method}.comprehensiveness" in rows:
            evaluation.comprehensiveness[method] = float(np.mean(rows[f"{method}.comprehensiveness"]))
            evaluation.sufficiency[method] = float(np.mean(rows[f"{method}.sufficiency"]))
        if f"{method}.seconds" in rows:
            evaluation.milliseconds[method] = 1000 * float(np.mean(rows[f"{method}.seconds"]))
    return evaluation


def evaluate_rationales(model: Any, samples: Sequence[RationaleSample], methods: Sequence[str] | None = None, *,
                        ks: Sequence[int] = tuple(range(1, 11)), batch_size: int = 16, seed: int = 0,
                        aopc_bins: Sequence[float] = AOPC_BINS, start_layers: Mapping[str, int] | None = None,
                        **options: Any) -> RationaleEvaluation:
    """Explain each sample's labelled class with every method and score the maps against the rationales.

    Parameters
    ----------
    model:
        A converted text classifier (:func:`relevance.models.bert.from_hf`, ``create("reviews-bert")``).
    samples:
        :class:`RationaleSample` s (:func:`reviews_samples`, :func:`load_eraser`).
    methods:
        Names of :func:`relevance.list_methods` (default: all); ``random`` (a uniform random score per word, from
        ``seed`` and the sample's index: :func:`random_word_scores`) is always added as the floor.
    ks:
        The k of the token-F1 curve (the paper's 5..80 for ERASER Movie Reviews, :data:`ERASER_KS`).
    start_layers:
        ``start_layer`` per method (recorded in the result's table); others as ``options``.
    options:
        Passed to :func:`relevance.explain` (``start_layer``, ...).
    """
    rows = rationale_rows(model, samples, methods, ks=ks, batch_size=batch_size, seed=seed, aopc_bins=aopc_bins,
                          start_layers=start_layers, **options)
    return evaluation_from_rows(rows, ks, start_layers)


# --------------------------------------------------------------------------------------------------- data
def reviews_samples(count: int, seed: int = 0, start: int = 0) -> list[RationaleSample]:
    """Reviews ``start .. start + count - 1`` of the world with ``seed``
    (:func:`relevance.data.reviews.generate_reviews`)."""
    from relevance.data.reviews import generate_reviews

    return [RationaleSample(tuple(r.words), r.label, frozenset(r.rationale), f"review-{seed}-{r.index}")
            for r in generate_reviews(count, seed, start=start)]


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
