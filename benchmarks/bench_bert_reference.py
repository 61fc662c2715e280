"""Time the authors' BERT explanation generator and this package side by side, on the same BERT-base-sized weights
and input, as multiples of transformers' own no-grad forward pass, in one process.

The reference (hila-chefer/Transformer-Explainability, ``BERT_explainability``) needs transformers 4.x and runs at
batch 1 only; run this script in the side environment of ``benchmarks/reference_parity_bert.py``:

    OMP_NUM_THREADS=1 /tmp/side/bin/python benchmarks/bench_bert_reference.py --reference PATH --clock cpu

A random ``BertForSequenceClassification`` (``--width/--depth/--heads/--inner``, BERT-base by default, two classes)
in float32, one text of ``--tokens`` random ids between [CLS] and [SEP]. For each method of the generator (transformer
attribution on their CVPR 2021 model, the baselines on their LRP-baseline model, as their ERASER pipeline builds
them), the generator's call and ``relevance.explain`` with the same start layer are timed, interleaved (a busy
machine slows both alike), median of ``--repeats`` after a warm-up; the maps are compared as well (max difference
over the tokens but [CLS], relative to the reference's largest value), so the times are of the same computation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lxt_parity_bert import import_project, median_times  # noqa: E402
from reference_parity_bert import load_reference, without_cuda  # noqa: E402

#: Our method name -> (the generator's model: "ours" (CVPR 2021 rules) or "baseline" (LRP baseline), its call).
REFERENCE_CALLS = {
    "transformer_attribution": ("ours", "generate_LRP"),
    "rollout": ("baseline", "generate_rollout"),
    "attention_gradcam": ("baseline", "generate_attn_gradcam"),
    "partial_lrp": ("baseline", "generate_LRP_last_layer"),
    "lrp": ("baseline", "generate_full_lrp"),
}


def difference(ours: torch.Tensor, authors: torch.Tensor) -> float:
    """max |ours - authors| over the tokens but [CLS] (the reference overwrites it for display), relative to the
    reference's largest magnitude (absolute when the reference's map is zero there)."""
    ours, authors = ours.double()[1:], authors.double()[1:]
    scale = float(authors.abs().max())
    return float((ours - authors).abs().max()) / (scale if scale > 0 else 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of Transformer-Explainability")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--inner", type=int, default=3072)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--start-layer", type=int, default=0, help="of transformer attribution and rollout")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(REFERENCE_CALLS))
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or this process's CPU time (steadier on a shared machine; one thread)")
    args = parser.parse_args(argv)
    import_project()
    import relevance
    from relevance.models import bert
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = dict(vocab_size=30522, hidden_size=args.width, num_hidden_layers=args.depth,
                  num_attention_heads=args.heads, intermediate_size=args.inner, num_labels=2)
    source = BertForSequenceClassification(BertConfig(**config)).eval()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    ours_class, baseline_class, Generator = load_reference(args.reference)

    def reference_model(cls):
        model = cls(BertConfig(**config, return_dict=False))
        model.load_state_dict(state, strict=False)
        return Generator(model.eval())

    generators = {"ours": reference_model(ours_class), "baseline": reference_model(baseline_class)}
    model = bert.from_hf(source)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 29000, (1, args.tokens), generator=generator)
    ids[0, 0], ids[0, -1] = 101, 102
    mask = torch.ones_like(ids)
    target = int(source(input_ids=ids, attention_mask=mask).logits.argmax())

    def forward() -> None:
        with torch.no_grad():
            source(input_ids=ids, attention_mask=mask)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} clock; BERT width "
          f"{args.width}, depth {args.depth}, {args.tokens} tokens, batch 1, target {target}")
    print(f"{'method':26s} {'ours x fwd':>10s} {'authors x fwd':>13s} {'ours / authors':>14s} {'max diff':>9s}")
    for method in args.methods.split(","):
        kind, call = REFERENCE_CALLS[method]
        start = {"start_layer": args.start_layer} if relevance.get_method(method).uses_start_layer else {}

        def authors(call=call, kind=kind, start=start) -> torch.Tensor:
            with without_cuda():
                return getattr(generators[kind], call)(ids, mask, index=target, **start)[0].detach()

        def ours(method=method, start=start) -> torch.Tensor:
            return relevance.explain(model, {"input_ids": ids, "attention_mask": mask}, method=method,
                                     target=target, **start).relevance[0].detach()

        gap = difference(ours(), authors())
        times = median_times({"forward": forward, "ours": ours, "authors": authors}, args.repeats, clock)
        print(f"{method:26s} {times['ours'] / times['forward']:9.2f}x {times['authors'] / times['forward']:12.2f}x "
              f"{times['ours'] / times['authors']:14.2f} {gap:9.1e}", flush=True)
        if not torch.isfinite(authors()).all():
            print(f"  the authors' {method} map is not finite here (a min-max normalisation of an all-zero map "
                  "divides by zero); this package returns zeros for a constant map")
    return 0


if __name__ == "__main__":
    sys.exit(main())
