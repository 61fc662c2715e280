"""relevance.evaluation.rationales: ERASER-style metrics against hand-computed values, the ERASER file format (tiny
fixtures written here), and the runner on the embedded reviews model."""

import json

import numpy as np
import pytest

from relevance.evaluation import rationales as R


def test_word_scores_clamp_then_take_the_max_over_the_pieces_of_each_word():
    text = "an unwatchable film ."
    # pieces: [CLS] an un ##watch ##able film . [SEP]  (character spans in the text)
    offsets = [(0, 0), (0, 2), (3, 5), (5, 10), (10, 14), (15, 19), (20, 21), (0, 0)]
    scores = [9.0, -1.0, 0.2, 0.7, 0.1, -0.3, 0.4, 5.0]
    special = [True, False, False, False, False, False, False, True]
    np.testing.assert_array_equal(R.word_scores(text, offsets, scores, special), [0.0, 0.7, 0.0, 0.4])
    truncated = R.word_scores(text, offsets[:4], scores[:4], special[:4])  # "film" and "." were cut off
    assert truncated[2] == -np.inf and truncated[3] == -np.inf and truncated[1] == 0.7
    assert R.top_k(truncated, 3) == {0, 1}  # cut words are never chosen
    assert R.top_k(np.array([0.5, 0.9, 0.5, 0.1]), 2) == {1, 0}  # ties: the earlier word


def test_token_prf_is_erasers_instance_macro_and_micro():
    truth = [{0, 1, 2}, {5}]
    predicted = [{0, 1, 7}, set()]
    scores = R.token_prf(truth, predicted)
    assert scores["p"] == pytest.approx((2 / 3 + 0) / 2) and scores["r"] == pytest.approx((2 / 3 + 0) / 2)
    assert scores["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert scores["micro_p"] == pytest.approx(2 / 3) and scores["micro_r"] == pytest.approx(2 / 4)
    assert scores["micro_f1"] == pytest.approx(4 / 7)
    assert R.token_prf([{1, 2}], [{1, 2}])["f1"] == 1.0
    with pytest.raises(ValueError):
        R.token_prf([{1}], [])


def test_aopc_averages_the_probability_drop_over_samples_and_bins():
    full = np.array([0.9, 0.8])
    perturbed = np.array([[0.5, 0.1], [0.8, 0.6]])
    assert R.aopc(full, perturbed) == pytest.approx((0.4 + 0.8 + 0.0 + 0.2) / 4)


def write_eraser(root):
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "negR_001.txt").write_text("this film is dull .\nthe acting was weak .\n")
    (root / "docs" / "posR_002.txt").write_text("a great film .\n")
    lines = [
        {"annotation_id": "negR_001.txt", "classification": "NEG", "query": "What is the sentiment?",
         "evidences": [[{"docid": "negR_001.txt", "start_token": 3, "end_token": 4, "text": "dull"}],
                       [{"docid": "negR_001.txt", "start_token": 7, "end_token": 9, "text": "was weak"}]]},
        {"annotation_id": "posR_002.txt", "classification": "POS", "query": "What is the sentiment?",
         "evidences": [[{"docid": "posR_002.txt", "start_token": 1, "end_token": 2, "text": "great"}]]},
    ]
    (root / "test.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def test_eraser_files_load_with_their_token_rationales(tmp_path):
    write_eraser(tmp_path)
    samples = R.load_eraser(tmp_path, "test")
    assert [s.name for s in samples] == ["negR_001.txt", "posR_002.txt"]
    first = samples[0]
    assert first.words == ("this", "film", "is", "dull", ".", "the", "acting", "was", "weak", ".")
    assert first.label == 0 and first.rationale == {3, 7, 8}
    assert [first.words[i] for i in sorted(first.rationale)] == ["dull", "was", "weak"]
    assert samples[1].label == 1 and samples[1].rationale == {1}
    with pytest.raises(FileNotFoundError, match="val.jsonl"):
        R.load_eraser(tmp_path, "val")


@pytest.fixture(scope="module")
def reviews_model():
    from relevance.models import create

    return create("reviews-bert")


def test_the_runner_scores_maps_against_the_rationales(reviews_model, tmp_path):
    result = R.evaluate_reviews(reviews_model, samples=16, seed=7, methods=["attention", "attnlrp"], batch_size=8)
    assert list(result.token_f1) == ["attention", "attnlrp", "random"]
    assert result.samples == 16 and result.accuracy >= 75
    for method in result.token_f1:
        assert 0 <= result.token_f1[method] <= 100 and len(result.curves[method]) == 10
        assert np.isfinite(result.comprehensiveness[method]) and np.isfinite(result.sufficiency[method])
    table = result.table()
    assert "| attnlrp |" in table and "| random |" in table and "Token F1" in table
    image = result.figure(tmp_path / "curve.png")
    assert image.ndim == 3 and (tmp_path / "curve.png").stat().st_size > 1000
    # an ERASER-format directory goes through the same runner
    write_eraser(tmp_path / "eraser")
    eraser = R.evaluate_rationales(reviews_model, R.load_eraser(tmp_path / "eraser"), ["rollout"], ks=(1, 2))
    assert list(eraser.curves["rollout"]) and eraser.samples == 2


def test_a_perfect_map_scores_100_and_the_token_f1_uses_each_rationale_length():
    samples = R.reviews_samples(30, seed=3)
    truths = [set(s.rationale) for s in samples]
    oracle = [np.array([1.0 if i in s.rationale else 0.0 for i in range(len(s.words))]) for s in samples]
    predicted = [R.top_k(scores, len(s.rationale)) for scores, s in zip(oracle, samples)]
    assert R.token_prf(truths, predicted)["f1"] == 1.0
    shifted = [R.top_k(scores, len(s.rationale) + 1) for scores, s in zip(oracle, samples)]
    assert R.token_prf(truths, shifted)["f1"] < 1.0
