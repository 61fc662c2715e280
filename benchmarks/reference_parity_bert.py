"""Run the authors' BERT explanation generator on a small random BERT and store its maps as a golden file.

The reference (hila-chefer/Transformer-Explainability, commit c3e578f, ``BERT_explainability``) is not part of
this project and needs an old ``transformers``: run this script in a side virtual environment, e.g.

    python3 -m venv /tmp/side
    /tmp/side/bin/pip install torch 'transformers==4.57.6' 'tokenizers==0.22.1' 'huggingface_hub<1.0' safetensors
    /tmp/side/bin/python benchmarks/reference_parity_bert.py --reference /path/to/Transformer-Explainability \
        --write-golden tests/golden/chefer_bert_reference.safetensors

It builds the reference's two classifiers the way its ERASER pipeline does (``bert_pipeline.py``): transformer
attribution on ``BertForSequenceClassification`` (the paper's ``layers_ours`` rules), the baselines on
``BERT_cls_lrp.BertForSequenceClassification`` (the ``layers_lrp`` rules), both with the same weights, and calls
their ``ExplanationGenerator.Generator`` at batch 1. Their hard-coded ``.cuda()`` (spec §6.1 #2) is neutralised for
the duration of the calls by patching ``torch.Tensor.cuda`` to return the tensor itself; their model file imports
``gensim`` (unused here), which gets an empty stand-in module; ``return_dict=False`` in the config avoids their
missing ``SequenceClassifierOutput`` import. Nothing of their code is copied.

Two inputs of different lengths (random token ids between [CLS] and [SEP]), each explained for two cases:

* ``last``: the argmax class, ``start_layer`` = the last block (the generator's default, used by the ERASER
  pipeline);
* ``first``: the runner-up class, ``start_layer=0`` (the notebooks').

Methods and reference entry points: ``transformer_attribution`` (``generate_LRP``), ``partial_lrp``
(``generate_LRP_last_layer``), ``attention`` (``generate_attn_last_layer``), ``attention_gradcam``
(``generate_attn_gradcam``), ``lrp`` (``generate_full_lrp``), ``rollout`` (``generate_rollout``, with the case's
start layer). Everything runs in float64 and float32; the golden stores the weights (Hugging Face BERT names), the
inputs, the targets and every map. ``tests/test_bert_reference_parity.py`` checks this package against it.
"""

from __future__ import annotations

import argparse
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch

METHODS = ("attention", "rollout", "attention_gradcam", "lrp", "partial_lrp", "transformer_attribution")
#: (name, column of ``targets``, start layer: "last" or 0)
CASES = (("last", 0, "last"), ("first", 1, 0))
LENGTHS = (13, 9)
MIN_LOGIT_GAP = 0.05


def configuration(args) -> dict:
    return dict(vocab_size=args.vocab, hidden_size=args.width, num_hidden_layers=args.depth,
                num_attention_heads=args.heads, intermediate_size=args.inner, num_labels=args.labels,
                max_position_embeddings=32, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)


def spread_weights(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that no map is degenerate: every matrix N(0, 0.15), LayerNorm scales 1 +- 0.3,
    embeddings N(0, 1), the classifier N(0, 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            if "LayerNorm" in name:
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
            elif "embeddings" in name:
                parameter.copy_(noise)
            elif name.startswith("classifier"):
                parameter.copy_(0.5 * noise)
            else:
                parameter.copy_(0.15 * noise)


def build_inputs(vocab: int, seed: int) -> list[torch.Tensor]:
    """Token ids (1, N) per input: [CLS]=1, random ids in [3, vocab), [SEP]=2."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.tensor([1]), torch.randint(3, vocab, (n - 2,), generator=generator), torch.tensor([2])])
            .unsqueeze(0) for n in LENGTHS]


@contextmanager
def without_cuda():
    """``tensor.cuda()`` returns the tensor itself while the reference runs (it hard-codes ``.cuda()``)."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def load_reference(reference: Path):
    if str(reference) not in sys.path:
        sys.path.insert(0, str(reference))
    if "gensim" not in sys.modules:  # imported by their model_utils for word vectors this benchmark never uses
        gensim, models = types.ModuleType("gensim"), types.ModuleType("gensim.models")
        models.KeyedVectors = object
        gensim.models = models
        sys.modules.update({"gensim": gensim, "gensim.models": models})
    from BERT_explainability.modules.BERT.BERT_cls_lrp import BertForSequenceClassification as LrpBaselineModel
    from BERT_explainability.modules.BERT.BertForSequenceClassification import BertForSequenceClassification
    from BERT_explainability.modules.BERT.ExplanationGenerator import Generator

    return BertForSequenceClassification, LrpBaselineModel, Generator


def choose_targets(logits: torch.Tensor) -> torch.Tensor:
    """(2,): the argmax and the runner-up, checked to be well separated."""
    ranked = logits.argsort(descending=True)
    gap = MIN_LOGIT_GAP * float(logits.max() - logits.min())
    top = logits[ranked[:3]] if len(logits) > 2 else torch.cat([logits[ranked], logits[ranked[-1:]] - 2 * gap])
    if not (top[0] - top[1] > gap and top[1] - top[2] > gap):
        raise SystemExit(f"logits {logits.tolist()} are too close to pick a distinct runner-up; choose another seed")
    return ranked[:2].clone()


def reference_maps(reference: Path, state: dict, config: dict, inputs: list[torch.Tensor], dtype: torch.dtype,
                   targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The reference's logits (S, C), targets (S, 2) and maps ``{"method/case/sample": (N_s,)}``."""
    from transformers import BertConfig

    ours_model, baseline_model, Generator = load_reference(reference)
    bert_config = BertConfig(**config, return_dict=False)

    def load(cls):
        model = cls(bert_config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
        return model.to(dtype).eval()

    transformer_attribution, baselines = Generator(load(ours_model)), Generator(load(baseline_model))
    depth = config["num_hidden_layers"]
    logits = torch.cat([transformer_attribution.model(input_ids=x, attention_mask=torch.ones_like(x))[0].detach()
                        for x in inputs])
    if targets is None:
        targets = torch.stack([choose_targets(row) for row in logits])
    maps = {}
    with without_cuda():
        for sample, ids in enumerate(inputs):
            mask = torch.ones_like(ids)
            for case, column, start in CASES:
                index = int(targets[sample, column])
                first = depth - 1 if start == "last" else start
                calls = {
                    "transformer_attribution": lambda: transformer_attribution.generate_LRP(
                        ids, mask, index=index, start_layer=first),
                    "partial_lrp": lambda: baselines.generate_LRP_last_layer(ids, mask, index=index),
                    "attention": lambda: baselines.generate_attn_last_layer(ids, mask, index=index),
                    "attention_gradcam": lambda: baselines.generate_attn_gradcam(ids, mask, index=index),
                    "lrp": lambda: baselines.generate_full_lrp(ids, mask, index=index),
                    "rollout": lambda: baselines.generate_rollout(ids, mask, start_layer=first, index=index),
                }
                for method in METHODS:
                    maps[f"{method}/{case}/{sample}"] = calls[method]()[0].detach().to(dtype).contiguous()
    return logits, targets, maps


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - b| / max |b| over every token but [CLS] (which the reference overwrites for display)."""
    actual, expected = actual.double()[1:], expected.double()[1:]
    return float((actual - expected).abs().max() / expected.abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of Transformer-Explainability")
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--inner", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=60)
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-golden", type=Path)
    args = parser.parse_args(argv)

    from transformers import BertConfig, BertForSequenceClassification

    config = configuration(args)
    torch.manual_seed(args.seed)
    source = BertForSequenceClassification(BertConfig(**config)).eval()
    spread_weights(source, args.seed)
    state = {k: v.clone() for k, v in source.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    inputs = build_inputs(args.vocab, args.seed + 1)
    logits64, targets, ref64 = reference_maps(args.reference, state, config, inputs, torch.float64)
    logits32, _, ref32 = reference_maps(args.reference, state, config, inputs, torch.float32, targets)
    for sample, row in enumerate(logits64):
        print(f"sample {sample}: {inputs[sample].shape[1]} tokens, logits {[round(v, 4) for v in row.tolist()]}, "
              f"targets {targets[sample].tolist()}")
    print(f"\n{'map':40s} {'ref32~ref64':>12s} {'cases differ':>13s}")
    for key in ref64:
        method, case, sample = key.split("/")
        if not (torch.isfinite(ref64[key]).all() and torch.isfinite(ref32[key]).all()):
            raise SystemExit(f"reference map {key} is not finite; choose another seed")
        other = ref64[f"{method}/{'first' if case == 'last' else 'last'}/{sample}"]
        print(f"{key:40s} {relative_error(ref32[key], ref64[key]):12.2e} {relative_error(other, ref64[key]):13.2e}")
    if args.write_golden:
        from safetensors.torch import save_file

        tensors = {f"weights/{k}": v.contiguous() for k, v in state.items()}
        tensors.update({f"input/{i}": x.contiguous() for i, x in enumerate(inputs)})
        tensors["targets"] = targets.contiguous()
        for name, logits, maps in (("float64", logits64, ref64), ("float32", logits32, ref32)):
            tensors[f"reference/{name}/logits"] = logits.contiguous()
            tensors.update({f"reference/{name}/{k}": v for k, v in maps.items()})
        metadata = {key: str(value) for key, value in config.items()}
        metadata.update(seed=str(args.seed), cases=",".join(f"{c}:{s}" for c, _, s in CASES), torch=torch.__version__,
                        reference="hila-chefer/Transformer-Explainability@c3e578f (BERT_explainability)")
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(args.write_golden), metadata=metadata)
        print(f"wrote {args.write_golden} ({args.write_golden.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
