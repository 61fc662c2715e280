"""The six methods of the authors' BERT generator against their implementation (hila-chefer/
Transformer-Explainability@c3e578f, ``BERT_explainability``), on a small random BERT.

``benchmarks/reference_parity_bert.py --write-golden`` ran the reference (in a side environment with the old
``transformers`` it needs) at batch 1 and stored in ``tests/golden/chefer_bert_reference.safetensors``: the weights
(Hugging Face BERT names), two inputs of different lengths, per input the argmax and the runner-up class, and the
maps of ``attention``, ``rollout``, ``attention_gradcam``, ``lrp``, ``partial_lrp`` and ``transformer_attribution``
in float64 and float32 for two cases:

* ``last``: the argmax class, start layer = the last block (the generator's default, used by the ERASER pipeline);
* ``first``: the runner-up class, start layer 0 (the notebooks').

Here both inputs go through :func:`relevance.explain` in ONE padded batch (the reference cannot batch), with the
family's conventions (row normalisation, whole-map Grad-CAM weights, full LRP at the encoder input). Every token
is compared except [CLS], which the reference overwrites for display (``rollout[:, 0, 0] = min``, ``cam[:, 0] =
0``). Tolerances as in ``tests/test_reference_parity.py``: float64 <= ``FLOAT64_TOLERANCE``; float32 within
``FLOAT32_MULTIPLE`` times the reference's own float32-vs-float64 spread of the method.
"""

from pathlib import Path

import pytest
import torch
from conftest import DEVICE
from safetensors import safe_open

import relevance
from relevance.models import bert

GOLDEN = Path(__file__).parent / "golden" / "chefer_bert_reference.safetensors"
METHODS = ("attention", "rollout", "attention_gradcam", "lrp", "partial_lrp", "transformer_attribution")
CASES = ("last", "first")  # column i of ``targets``; start layer: the last block, then 0
CLASS_AGNOSTIC = ("attention", "rollout")
USES_START_LAYER = ("rollout", "transformer_attribution")
#: Measured: <= 5e-14 for every method but full LRP (1.5e-12: it is not conservative and amplifies rounding, its
#: float32 spread is 1e-3). The rules are the reference's to the stabiliser (its Add rule on the attention mask
#: included), so float64 leaves only summation order; 1e-9 is the ViT golden's bound.
FLOAT64_TOLERANCE = 1e-9
FLOAT32_MULTIPLE = 8
FLOAT32_FLOOR = 1e-6
CASES_DIFFER_BY = 1e-2


@pytest.fixture(scope="module")
def golden():
    import transformers

    with safe_open(str(GOLDEN), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_labels",
            "max_position_embeddings", "type_vocab_size")
    config = transformers.BertConfig(**{k: int(meta[k]) for k in keys}, hidden_act=meta["hidden_act"],
                                     layer_norm_eps=float(meta["layer_norm_eps"]))
    source = transformers.BertForSequenceClassification(config).eval()
    missing, unexpected = source.load_state_dict(
        {k.removeprefix("weights/"): v for k, v in tensors.items() if k.startswith("weights/")}, strict=False)
    assert not unexpected and all(k.endswith(("position_ids", "token_type_ids")) for k in missing)
    inputs = [tensors[f"input/{i}"] for i in range(sum(k.startswith("input/") for k in tensors))]
    length = max(x.shape[1] for x in inputs)
    ids = torch.zeros(len(inputs), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(inputs):
        ids[i, :x.shape[1]], mask[i, :x.shape[1]] = x[0], 1
    reference = {k.removeprefix("reference/"): v for k, v in tensors.items() if k.startswith("reference/")}
    return {"model": bert.from_hf(source), "batch": {"input_ids": ids, "attention_mask": mask},
            "lengths": [x.shape[1] for x in inputs], "targets": tensors["targets"], "reference": reference,
            "depth": config.num_hidden_layers}


def relative_errors(golden: dict, maps: torch.Tensor, key: str, precision: str = "float64") -> list[float]:
    """Per sample: max |ours - reference| / max |reference| over its tokens but [CLS]."""
    errors = []
    for sample, length in enumerate(golden["lengths"]):
        expected = golden["reference"][f"{precision}/{key}/{sample}"].double()[1:]
        actual = maps[sample, 1:length].detach().cpu().double()
        assert torch.equal(maps[sample, length:], torch.zeros_like(maps[sample, length:]))  # padding: exactly 0
        errors.append(float((actual - expected).abs().max() / expected.abs().max()))
    return errors


def explain_case(golden, model, dtype, method, case, *, target_case=None, start_case=None, start_layer="case"):
    column = CASES.index(target_case or case)
    target = None if column == 0 else golden["targets"][:, column].tolist()
    start = (golden["depth"] - 1 if (start_case or case) == "last" else 0) if start_layer == "case" else start_layer
    batch = {k: v.to(DEVICE) for k, v in golden["batch"].items()}
    return relevance.explain(model.to(device=DEVICE, dtype=dtype), batch, method=method, target=target,
                             start_layer=start)


def float32_tolerance(reference: dict, golden: dict, method: str) -> float:
    spread = 0.0
    for case in CASES:
        for sample in range(len(golden["lengths"])):
            r32 = reference[f"float32/{method}/{case}/{sample}"].double()[1:]
            r64 = reference[f"float64/{method}/{case}/{sample}"].double()[1:]
            spread = max(spread, float((r32 - r64).abs().max() / r64.abs().max()))
    return max(FLOAT32_MULTIPLE * spread, FLOAT32_FLOOR)


def test_the_golden_is_the_generators_output_for_two_targets(golden):
    reference, targets = golden["reference"], golden["targets"]
    assert torch.equal(targets[:, 0], reference["float64/logits"].argmax(dim=1))
    assert torch.equal(targets[:, 1], reference["float64/logits"].topk(2, dim=1).indices[:, 1])
    assert len(set(golden["lengths"])) == len(golden["lengths"])  # different lengths: the batch is padded
    for method in METHODS:
        if method not in CLASS_AGNOSTIC:
            for sample in range(len(golden["lengths"])):
                a = reference[f"float64/{method}/last/{sample}"][1:]
                b = reference[f"float64/{method}/first/{sample}"][1:]
                assert float((a - b).abs().max() / a.abs().max()) > CASES_DIFFER_BY, method


def test_logits_equal_the_references(golden):
    model = golden["model"].double()
    with torch.no_grad():
        logits = model(**golden["batch"])
    expected = golden["reference"]["float64/logits"]
    assert float((logits - expected).abs().max() / expected.abs().max()) < 1e-12


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_every_method_reproduces_the_authors_bert_generator(golden, dtype, method):
    reference = golden["reference"]
    tolerance = FLOAT64_TOLERANCE if dtype == torch.float64 else float32_tolerance(reference, golden, method)
    for column, case in enumerate(CASES):
        result = explain_case(golden, golden["model"], dtype, method, case)
        assert torch.equal(result.target.cpu(), golden["targets"][:, column])
        errors = relative_errors(golden, result.relevance, f"{method}/{case}")
        assert max(errors) <= tolerance, f"{method}/{case}: {errors} > {tolerance:.1e}"


@pytest.mark.parametrize("method", METHODS)
def test_a_wrong_target_or_start_layer_misses_the_reference(golden, method):
    model = golden["model"].double()
    for case in CASES:
        other = CASES[1 - CASES.index(case)]
        wrong = {}
        if method not in CLASS_AGNOSTIC:
            wrong["target"] = explain_case(golden, model, torch.float64, method, case, target_case=other)
        if method in USES_START_LAYER:
            wrong["start"] = explain_case(golden, model, torch.float64, method, case, start_case=other)
        for what, result in wrong.items():
            errors = relative_errors(golden, result.relevance, f"{method}/{case}")
            assert min(errors) > CASES_DIFFER_BY, (method, case, what, errors)


def test_the_family_defaults_start_at_block_0_and_the_erasers_last_block_is_minus_1(golden):
    # transformer attribution and rollout start at block 0 by default (the notebooks'); -1 is the generator's default
    model = golden["model"].double()
    batch = golden["batch"]
    runner_up = golden["targets"][:, 1].tolist()
    default = relevance.explain(model, batch, method="transformer_attribution", target=runner_up)
    assert max(relative_errors(golden, default.relevance, "transformer_attribution/first")) <= FLOAT64_TOLERANCE
    assert default.start_layer == 0
    last = relevance.explain(model, batch, method="transformer_attribution", start_layer=-1)
    assert max(relative_errors(golden, last.relevance, "transformer_attribution/last")) <= FLOAT64_TOLERANCE
    rollout = relevance.explain(model, batch, method="rollout")
    assert max(relative_errors(golden, rollout.relevance, "rollout/first")) <= FLOAT64_TOLERANCE
    # without the family's conventions the maps differ: the conventions are what makes them match
    plain = relevance.explain(model, batch, method="transformer_attribution", row_normalize=False, start_layer=0)
    assert min(relative_errors(golden, plain.relevance, "transformer_attribution/first")) > CASES_DIFFER_BY
    gradcam = relevance.explain(model, batch, method="attention_gradcam", gradcam_weights="readout_row")
    assert min(relative_errors(golden, gradcam.relevance, "attention_gradcam/last")) > CASES_DIFFER_BY
