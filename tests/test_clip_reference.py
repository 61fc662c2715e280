"""Gradient rollout on CLIP against the authors' notebook (hila-chefer/Transformer-MM-Explainability@58eaea8,
``CLIP_explainability.ipynb``), through both converters.

``benchmarks/reference_parity_clip.py --write-golden`` ran the notebook's ``interpret`` on the reference's own
``CLIP`` class with small random weights and stored, in ``tests/golden/clip_notebook.safetensors``: the weights,
one image, three texts of different lengths (padded with 0), and the reference's pair logits, image maps ([CLS]
row over the patches) and text maps (each text's end-of-text row over every position) in float64 and float32, for
the notebook's default ``start_layer = start_layer_text = -1`` (the last block) and for 0 (every block).

The weights are loaded into open_clip's ``CLIP`` and into transformers' ``CLIPModel`` (renamed), converted, and
explained, the three pairs in one call. Errors are max |ours - reference| / max |reference| per map.
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import relevance
from relevance.models import clip

GOLDEN = Path(__file__).parent / "golden" / "clip_notebook.safetensors"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import reference_parity_clip as parity  # noqa: E402  (the model builders and the weight renaming)

#: Both implementations differ only in summation order in float64 (measured: <= 1e-14).
FLOAT64_TOLERANCE = 1e-11
#: float32 against the reference's float64 maps: within 8 times the reference's own float32 spread (as
#: tests/test_reference_parity.py argues), and never below 1e-5 of the map's peak.
FLOAT32_MULTIPLE, FLOAT32_FLOOR = 8, 1e-5


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(GOLDEN), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    state = {k.removeprefix("weights/"): v for k, v in tensors.items() if k.startswith("weights/")}
    reference = {k.removeprefix("reference/"): v for k, v in tensors.items() if k.startswith("reference/")}
    models = {"open_clip": clip.from_open_clip(parity.open_clip_model(state)),
              "hf": clip.from_hf(parity.hf_model(state))}
    return {"models": models, "image": tensors["image"], "texts": tensors["texts"], "reference": reference}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return parity.relative_error(actual.detach().cpu(), expected)


@pytest.mark.parametrize("converter", ["open_clip", "hf"])
def test_gradient_rollout_equals_the_notebook(golden, converter):
    model, image, texts, reference = golden["models"][converter], golden["image"], golden["texts"], golden["reference"]
    ours64 = parity.our_maps(model.double(), image.double(), texts)
    for key, expected in ((k.removeprefix("float64/"), v) for k, v in reference.items() if k.startswith("float64/")):
        assert relative_error(ours64[key], expected) < FLOAT64_TOLERANCE, key
    ours32 = parity.our_maps(model.float(), image.float(), texts)
    for key in ours32:
        spread = relative_error(reference[f"float32/{key}"], reference[f"float64/{key}"])
        tolerance = max(FLOAT32_MULTIPLE * spread, FLOAT32_FLOOR)
        assert relative_error(ours32[key], reference[f"float64/{key}"]) < tolerance, (key, spread)


def test_the_comparison_fails_for_the_wrong_start_layer_or_pair(golden):
    model, image, texts, reference = golden["models"]["open_clip"].double(), golden["image"].double(), \
        golden["texts"], golden["reference"]
    every = relevance.explain(model, image, texts=texts, method="gradient_rollout", start_layer=0)
    assert relative_error(every.image_relevance.flatten(1), reference["float64/image/start-1"]) > 1e-2
    last = relevance.explain(model, image, texts=texts, method="gradient_rollout")
    swapped = last.image_relevance.flatten(1)[[1, 2, 0]]  # each map explained against another text
    assert relative_error(swapped, reference["float64/image/start-1"]) > 1e-2
