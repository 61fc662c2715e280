"""`relevance evaluate` on text: the reviews world (`--model reviews-bert`) and ERASER Movie Reviews (`--protocol
eraser`) end to end, against the protocols computed by hand here from `relevance.explain` alone (spec §5.4); a tiny
ERASER folder in the real format (document-level token spans, one sentence per line) is written by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import relevance
from relevance.cli import main
from relevance.data.reviews import generate_reviews
from relevance.models.bert import explain_texts
from relevance.models.reviews import load_embedded

ERASER_KS = list(range(5, 85, 5))
AOPC_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)


@pytest.fixture(scope="module")
def model():
    return load_embedded()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def _f1(truth: set[int], chosen: set[int]) -> float:
    hit = len(truth & chosen)
    if not hit:
        return 0.0
    precision, recall = hit / len(chosen), hit / len(truth)
    return 2 * precision * recall / (precision + recall)


def _top(scores: np.ndarray, k: int) -> set[int]:
    order = np.argsort(-scores, kind="stable")  # ties: the earlier word
    return {int(i) for i in order[:k] if np.isfinite(scores[i])}


def _word_maxima(model, words: list[str], token_scores: np.ndarray) -> np.ndarray:
    """Per whitespace word: the max of its clamped pieces ([CLS] first; pieces past the end were cut: -inf)."""
    tokenizer = model.info.tokenizer
    values = np.clip(token_scores, 0, None)[:-1]  # [SEP] last
    result, position = np.full(len(words), -np.inf), 1
    for index, word in enumerate(words):
        count = len(tokenizer.tokenize(word))
        kept = values[position:position + count]
        if len(kept):
            result[index] = kept.max()
        position += count
    return result


# -------------------------------------------------------------------------------------------- the reviews world
def _probability(model, text: str, label: int) -> float:
    with torch.no_grad():
        return float(relevance.explain(model, text, method="attention").probabilities[0, label])


def test_reviews_protocol_against_the_hand_computation(tmp_path, model, capsys):
    methods = ["transformer_attribution", "attention"]
    args = ["evaluate", "--model", "reviews-bert", "--samples", "5", "--seed", "11", "--methods", ",".join(methods),
            "--batch-size", "1", "--no-progress"]
    assert main([*args, "--shard-size", "2", "--out", str(tmp_path / "a")]) == 0  # the model chooses the protocol
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert result["protocol"] == "reviews" and result["reviews"] == 5 and result["seed"] == 11
    reviews = generate_reviews(5, seed=11)
    for method in methods:
        f1s, curves, comprehensive, sufficient = [], [], [], []
        for review in reviews:
            words = review.words
            assert all(len(model.info.tokenizer.tokenize(w)) == 1 for w in words)  # one piece per word here
            scores = np.clip(relevance.explain(model, review.text, method=method, target=review.label)
                             .relevance[0].double().numpy(), 0, None)[1:-1]
            truth = set(review.rationale)
            f1s.append(_f1(truth, _top(scores, len(truth))))
            curves.append([_f1(truth, _top(scores, k)) for k in range(1, 11)])
            full = _probability(model, review.text, review.label)
            drops_without, drops_only = [], []
            for fraction in AOPC_BINS:
                chosen = _top(scores, max(1, round(fraction * len(words))))
                without = " ".join(w for i, w in enumerate(words) if i not in chosen)
                only = " ".join(w for i, w in enumerate(words) if i in chosen)
                drops_without.append(full - _probability(model, without, review.label))
                drops_only.append(full - _probability(model, only, review.label))
            comprehensive.append(np.mean(drops_without))
            sufficient.append(np.mean(drops_only))
        got = result["methods"][method]
        assert got["token_f1"] == pytest.approx(100 * np.mean(f1s), abs=1e-9), method
        assert got["curve"] == pytest.approx((100 * np.mean(curves, axis=0)).tolist(), abs=1e-9), method
        assert got["comprehensiveness"] == pytest.approx(np.mean(comprehensive), abs=1e-6), method
        assert got["sufficiency"] == pytest.approx(np.mean(sufficient), abs=1e-6), method
    # the random floor: a uniform score per word from (seed, review index) alone
    random_f1 = [_f1(set(r.rationale), _top(np.random.default_rng([11, i]).random(len(r.words)), len(r.rationale)))
                 for i, r in enumerate(reviews)]
    assert result["methods"]["random"]["token_f1"] == pytest.approx(100 * np.mean(random_f1), abs=1e-9)
    assert result["start_layers"] == {"transformer_attribution": 0}
    report = (tmp_path / "a" / "results.md").read_text()
    ta = result["methods"]["transformer_attribution"]["token_f1"]
    assert f"| transformer_attribution (start 0) | {ta:.1f}" in report or \
        f"| transformer_attribution (start 0) | **{ta:.1f}**" in report
    assert "| random |" in report and "## Token F1 by kind of review" in report
    assert "| Method | Token F1 ↑ |" in printed and "5 reviews, 1 process(es)" in printed
    assert (tmp_path / "a" / "token_f1.png").stat().st_size > 10_000
    # other shards, the same rows and table
    assert main([*args, "--shard-size", "5", "--out", str(tmp_path / "b")]) == 0
    other = json.loads((tmp_path / "b" / "results.json").read_text())
    for scores in (result, other):  # wall-clock time is measured, not reproduced; every score must be
        for method, values in scores["methods"].items():
            cost = values.pop("milliseconds_per_explanation")
            assert (cost is None) == (method == "random") and (cost is None or cost > 0), method
            if scores is result and cost is not None:  # the table's cost column shows results.json's value
                row = next(line for line in report.splitlines() if line.startswith(f"| {method}"))
                assert row.endswith(f"| {cost:.1f} |"), row
    assert other == result


# ------------------------------------------------------------------------------------ ERASER Movie Reviews
#: (docid, class, sentences, evidence phrases as (first word index, word count) in the whole document)
DOCUMENTS = [
    ("negR_900.txt", "NEG", ["we went on a sunday .",
                             "the acting felt wonderfully brilliant , but the plot was not really gripping .",
                             "the popcorn was great .", "i saw it with my brother .",
                             "the script seemed tedious and the ending was dull .", "it runs about two hours .",
                             "my friend picked the film .", "we sat near the back .", "the music was boring ."],
     [(16, 3), (35, 1), (40, 1), (63, 1)]),  # "not really gripping", "tedious", "dull", "boring" (cut off)
    ("posR_901.txt", "POS", ["the story was superb .", "the seats felt awful .", "the cast seemed truly delightful ."],
     [(3, 1), (13, 2)]),
    ("negR_902.txt", "NEG", ["the dialogue was clumsy .", "it opened in march ."], [(3, 1)]),
    # an annotation the model disagrees with: the ground-truth class is explained, not the prediction
    ("posR_903.txt", "POS", ["the ending was tedious and the music was dull ."], [(3, 1), (9, 1)]),
]


def write_movies(root) -> list[tuple[list[str], int, set[int]]]:
    """ERASER's files: ``docs/<docid>`` (one sentence per line) and ``test.jsonl`` with document-level token spans.
    Returns (words, label, rationale) per document."""
    (root / "docs").mkdir(parents=True)
    lines, expected = [], []
    for docid, label, sentences, phrases in DOCUMENTS:
        (root / "docs" / docid).write_text("\n".join(sentences) + "\n")
        words = " ".join(sentences).split()
        evidences = [[{"docid": docid, "start_token": start, "end_token": start + length, "start_sentence": -1,
                       "end_sentence": -1, "text": " ".join(words[start:start + length])}]
                     for start, length in phrases]
        lines.append({"annotation_id": docid, "classification": label, "docids": None, "evidences": evidences,
                      "query": "What is the sentiment of this review?", "query_type": None})
        expected.append((words, ("NEG", "POS").index(label), {s + j for s, n in phrases for j in range(n)}))
    (root / "test.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (root / "val.jsonl").write_text("")
    return expected


def test_eraser_protocol_against_the_hand_computation(tmp_path, model, capsys):
    documents = write_movies(tmp_path / "movies")
    assert [documents[0][0][i] for i in sorted(documents[0][2])] == ["not", "really", "gripping", "tedious", "dull",
                                                                      "boring"]
    methods = ["transformer_attribution", "attention", "attnlrp"]
    out = tmp_path / "out"
    rc = main(["evaluate", "--protocol", "eraser", "--data", str(tmp_path / "movies"), "--model", "reviews-bert",
               "--methods", ",".join(methods), "--batch-size", "1", "--shard-size", "2", "--seed", "4",
               "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads((out / "results.json").read_text())
    assert result["documents"] == 4 and result["ks"] == ERASER_KS and result["classes"] == ["NEG", "POS"]
    assert result["accuracy"] == 75.0  # reviews-bert calls the last document negative
    assert result["start_layers"] == {"transformer_attribution": 3}  # the last of 4 blocks, the pipeline's default
    assert result["documents_cut"] == 1  # the first document is longer than reviews-bert's 64 tokens
    finite = []
    for method in methods:
        f1, precision = [], []
        for words, label, truth in documents:
            explanation = explain_texts(" ".join(words), model, method=method, target=label, truncation=True,
                                        start_layer=3 if method == "transformer_attribution" else None)
            assert int(explanation.target[0]) == label  # the ground-truth class, whatever the prediction
            scores = _word_maxima(model, words, explanation.relevance[0].double().numpy())
            f1.append([_f1(truth, _top(scores, k)) for k in ERASER_KS])
            precision.append([len(truth & _top(scores, k)) / len(_top(scores, k)) for k in ERASER_KS])
            finite.append(np.isfinite(scores))
        got = result["methods"][method]
        assert got["f1"] == pytest.approx((100 * np.mean(f1, axis=0)).tolist(), abs=1e-9), method
        assert got["p"] == pytest.approx((100 * np.mean(precision, axis=0)).tolist(), abs=1e-9), method
    # the first document's last words, "boring" among them, were cut off: never chosen (its recall stays below 1)
    assert finite[0][:60].all() and not finite[0][60:].any()
    random_f1 = [[_f1(truth, _top(np.where(seen, np.random.default_rng([4, i]).random(len(words)), -np.inf), k))
                  for k in ERASER_KS] for i, ((words, _, truth), seen) in enumerate(zip(documents, finite))]
    assert result["methods"]["random"]["f1"] == pytest.approx((100 * np.mean(random_f1, axis=0)).tolist(), abs=1e-9)
    report = (out / "results.md").read_text()
    assert "| transformer_attribution (start 3) |" in report and "| k=5 | k=10 |" in report
    assert "transformer attribution from the last block of 4" in report and "1 of 4 documents" in report
    assert (out / "token_f1.png").is_file() and (out / "token_f1.pdf").is_file()
    assert "4 samples in 2 shards of 2" in captured.out and "| attnlrp |" in captured.out


def test_text_protocol_usage_errors(tmp_path, capsys):
    write_movies(tmp_path / "movies")
    assert main(["evaluate", "--protocol", "eraser", "--data", str(tmp_path / "movies"), "--model", "shapes-vit",
                 "--out", str(tmp_path / "o")]) == 2
    assert "'shapes-vit' is not a text classifier" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "eraser", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "no ERASER split test.jsonl" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "reviews", "--model", "shapes-vit", "--out", str(tmp_path)]) == 2
    assert "must be 'reviews-bert' or a folder written by demos/train_reviews.py" in capsys.readouterr().err
    assert main(["evaluate", "--model", "reviews-bert", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["evaluate", "--model", "reviews-bert", "--start-layer", "4", "--out", str(tmp_path)]) == 2
    assert "--start-layer must lie in 0..3" in capsys.readouterr().err


def test_eraser_classes_follow_the_models_class_names():
    from types import SimpleNamespace

    from relevance.cli.protocols.eraser import class_order

    def model(names):
        return SimpleNamespace(info=SimpleNamespace(class_names=names))

    assert class_order(model(["negative", "positive"])) == ("NEG", "POS")
    assert class_order(model(["POSITIVE", "NEGATIVE"])) == ("POS", "NEG")  # class 0 is positive: POS = 0
    assert class_order(model(None)) == ("NEG", "POS")  # LABEL_0 / LABEL_1, as SST-2 models: 0 is negative
