"""`relevance evaluate` end to end on a handful of scenes, with the embedded model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import relevance
from relevance.evaluation import shapes_benchmark as E
from relevance.cli import main
from relevance.models.embedded import load_embedded


@pytest.fixture(scope="module")
def model():
    return load_embedded()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: the tiny models run fastest on one thread


def test_samples_is_the_same_option_as_scenes():
    import argparse

    from relevance.cli import evaluate

    from relevance.cli.protocols import shapes

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    assert parser.parse_args(["--samples", "7"]).samples == parser.parse_args(["--scenes", "7"]).samples == 7
    assert parser.parse_args([]).samples is None and shapes.DEFAULT_SCENES == 200  # each protocol's own default
    assert evaluate.choose_protocol(parser.parse_args([])) == "shapes"  # the embedded model runs its own world


def _table_cell(row: str, header: str, column: str) -> str:
    """The text of ``column`` in a Markdown table ``row`` (bold marks removed)."""
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    return cells[titles.index(column)].replace("**", "")


#: The methods of the end-to-end run: all but the gradient and perturbation methods that evaluate the model tens
#: to hundreds of times per explanation (test_attribution_methods_are_evaluated_with_their_time runs those).
CHEAP = [m for m in relevance.list_methods()
         if relevance.get_method(m).attribution is None or m in ("saliency", "input_x_gradient")]


def test_evaluate_end_to_end(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--samples", "3", "--seed", "10000000", "--out", str(out), "--figure-rows", "2",
               "--methods", ",".join(CHEAP)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "evaluate" in captured.err  # the progress bar
    lines = [line for line in captured.out.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip().split(" ")[0] for line in lines[1:]]
    assert names == CHEAP + ["random"]
    assert "Pointing game" in lines[0] and "Pos. AUC" in lines[0] and "mIoU" in lines[0]
    assert lines[0].rstrip(" |").endswith("ms / explanation")
    assert (out / "results.md").read_text().count("| transformer_attribution") >= 1
    data = json.loads((out / "results.json").read_text())
    assert data["scenes"] == 3 and data["seed"] == 10_000_000 and set(data["methods"]) == set(names)
    rows = dict(zip(names, lines[1:]))
    for name, method in data["methods"].items():
        metrics, curves = method["metrics"], method["curves"]
        assert len(curves["positive"]) == len(curves["negative"]) == 10
        # each curve starts at the unperturbed accuracy, and each AUC is 100 x trapz of its own curve (percent)
        assert curves["positive"][0] == curves["negative"][0] == pytest.approx(data["unperturbed_accuracy"])
        assert metrics["auc_positive"]["mean"] == pytest.approx(relevance.evaluation.perturbation_auc(
            curves["positive"]))
        assert metrics["auc_negative"]["mean"] == pytest.approx(relevance.evaluation.perturbation_auc(
            curves["negative"]))
        # the printed table shows the values of results.json, in the right columns
        for key, column in [("mass", "Mass in object ↑"), ("auc_positive", "Pos. AUC ↓"),
                            ("auc_negative", "Neg. AUC ↑"), ("pointing", "Pointing game ↑")]:
            assert _table_cell(rows[name], lines[0], column).startswith(f"{metrics[key]['mean']:.1f}"), (name, key)
        milliseconds = data["milliseconds_per_explanation"][name]
        assert milliseconds > 0 and _table_cell(rows[name], lines[0], "ms / explanation") == f"{milliseconds:.1f}"
    # The trained model's class-specific maps beat random maps: removing their most relevant pixels first
    # (positive test) loses the class much sooner than removing their least relevant ones (negative test),
    # and more of their relevance lies on the explained object.
    methods = data["methods"]
    for name in ("transformer_attribution", "gradient_rollout"):
        metrics = methods[name]["metrics"]
        assert metrics["auc_negative"]["mean"] > metrics["auc_positive"]["mean"] + 40, name
        assert metrics["mass"]["mean"] > 3 * methods["random"]["metrics"]["mass"]["mean"], name
    assert (out / "perturbation.png").is_file() and (out / "perturbation.pdf").is_file()  # the curves, AUCs in legends
    with Image.open(out / "figure.png") as figure:
        assert figure.width > 8 * 128 and figure.height >= 2 * 128  # 2 rows x (input + 8 columns)
        assert figure.mode == "P"  # palette PNG


def test_evaluate_rejects_bad_arguments(tmp_path, capsys):
    assert main(["evaluate", "--methods", "nonsense", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--scenes", "0", "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--start-layer", "99", "--scenes", "1", "--out", str(tmp_path)]) == 2


def test_scores_follow_the_protocol(model):
    """Per-sample values agree with the library functions, and class-agnostic maps do not depend on the target."""
    result = E.evaluate(model, scenes=4, seed=10_000_000, methods=["rollout", "transformer_attribution"],
                        random_reference=False, progress=False)
    assert result.methods == ["rollout", "transformer_attribution"]
    assert result.start_layers == {"rollout": 1, "transformer_attribution": 1}
    n = len(result.samples)
    for m in result.methods:
        values = result.scores[m].values
        assert all(len(values[k]) == n for k in ("pointing", "mass", "specificity", "map", "auc_positive"))
        curves = result.scores[m].curves()
        # both tests start from the same unperturbed accuracy
        assert curves["positive"][0] == pytest.approx(result.unperturbed_accuracy)
        assert curves["negative"][0] == pytest.approx(result.unperturbed_accuracy)
        # the mean per-sample AUC equals the AUC of the mean curve (the AUC is linear)
        summary = result.scores[m].summary()
        auc = relevance.evaluation.perturbation_auc(curves["positive"])
        assert summary["auc_positive"][0] == pytest.approx(auc)
    scene = next(s.scene for s in result.samples if len(s.scene.labels) > 1)
    x = (torch.from_numpy(scene.image.transpose(2, 0, 1).copy()).float()[None] / 255 - 0.5) / 0.5
    a = E.relevance_maps(model, x, torch.tensor([scene.labels[0]]), "rollout", 1)
    b = E.relevance_maps(model, x, torch.tensor([scene.labels[1]]), "rollout", 1)
    assert torch.allclose(a, b)
    c = E.relevance_maps(model, x, torch.tensor([scene.labels[0]]), "transformer_attribution", 1)
    d = E.relevance_maps(model, x, torch.tensor([scene.labels[1]]), "transformer_attribution", 1)
    assert c.shape == (1, 64, 64) and not torch.allclose(c, d)
    assert np.isfinite(result.scores["rollout"].summary()["miou"][0])


def test_attribution_methods_are_evaluated_with_their_time(model):
    """The gradient and perturbation methods run in the benchmark, with their options and a time per explanation;
    the time is the wall clock of the explain() calls over the explained objects."""
    names = [m for m in relevance.list_methods() if relevance.get_method(m).attribution is not None]
    options = {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"n_samples": 4}, "lime": {"n_samples": 32},
               "kernel_shap": {"n_samples": 32}}
    result = E.evaluate(model, scenes=2, seed=10_000_000, methods=names, random_reference=False, progress=False,
                        method_options=options)
    assert result.methods == names and result.method_options == options
    n = len(result.samples)
    for m in names:
        assert result.scores[m].explanations == n
        assert result.scores[m].milliseconds() == pytest.approx(1000 * result.scores[m].seconds / n)
        assert 0 < result.scores[m].milliseconds() < 60_000
        assert len(result.scores[m].values["pointing"]) == n
    table = result.table().splitlines()
    assert table[0].endswith("| ms / explanation |") and len(table) == 2 + len(names)
    assert "lime: n_samples=32" in E.markdown_report(result, "shapes-vit")
    assert E.result_dict(result)["method_options"]["lime"] == {"n_samples": 32}
