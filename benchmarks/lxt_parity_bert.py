"""This package's ``attnlrp`` against lxt's efficient AttnLRP patch of Hugging Face BERT, on the same weights.

lxt (``LRP-eXplains-Transformers``, the AttnLRP authors' library) patches ``transformers.models.bert.modeling_bert``
globally (``lxt.efficient.monkey_patch``) and needs an older ``transformers`` (4.x) than this package tests with, so
run this script in a side environment, e.g.

    /tmp/side/bin/pip install torch 'transformers==4.57.6' 'tokenizers==0.22.1' 'huggingface_hub<1.0' safetensors \
        torchvision pillow && /tmp/side/bin/pip install --no-deps lxt==2.1
    /tmp/side/bin/python benchmarks/lxt_parity_bert.py

It imports this package from the checkout. A random ``BertForSequenceClassification`` (``--width/--depth/--heads``)
is converted with ``relevance.models.bert.from_hf`` BEFORE lxt patches the module; lxt's patched class then loads
the same state dict. lxt reads token relevance at the word embeddings (``inputs_embeds * grad`` summed over the
hidden dimension, the seed being the target logit's one-hot); ``relevance.explain(..., method="attnlrp")`` returns
the same quantity. Printed: the max relative difference per sample (padded batch of ``--batch`` texts of different
lengths), and the time of each against the unpatched forward pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def import_project() -> None:
    """Import ``relevance`` and ``relevance.models`` from the checkout (``models/`` installs as ``relevance.models``)."""
    sys.path.insert(0, str(ROOT))
    import relevance  # noqa: F401

    spec = importlib.util.spec_from_file_location("relevance.models", ROOT / "models" / "__init__.py",
                                                  submodule_search_locations=[str(ROOT / "models")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["relevance.models"] = module
    spec.loader.exec_module(module)


def median_times(functions: dict, repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Median time of each function, the runs interleaved (a busy machine slows them alike), after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for name, function in functions.items():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            start = clock()
            function()
            times[name].append(clock() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time, steadier on a busy machine (use it "
                             "with OMP_NUM_THREADS=1)")
    parser.add_argument("--float32", action="store_true", help="compare in float32 (default float64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import_project()
    import transformers
    from transformers import BertConfig

    import relevance
    from relevance.models import bert

    dtype = torch.float32 if args.float32 else torch.float64
    torch.manual_seed(args.seed)
    config = BertConfig(vocab_size=1000, hidden_size=args.width, num_hidden_layers=args.depth,
                        num_attention_heads=args.heads, intermediate_size=4 * args.width, num_labels=3,
                        attn_implementation="eager")
    source = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():  # weights large enough that relevance does not vanish
        for name, parameter in source.named_parameters():
            if "LayerNorm" not in name:
                parameter.normal_(0, 1.0 if "embeddings" in name else 0.5 / parameter.shape[-1] ** 0.5 * 3)
    source = source.to(dtype)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    ours = bert.from_hf(source)

    generator = torch.Generator().manual_seed(args.seed + 1)
    lengths = [args.length - 5 * i for i in range(args.batch)]
    ids = torch.zeros(args.batch, args.length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, 1000, (length,), generator=generator)
        mask[row, :length] = 1
    targets = torch.arange(args.batch) % 3
    batch = {"input_ids": ids, "attention_mask": mask}

    def forward() -> None:
        with torch.no_grad():
            source(**batch)

    result = relevance.explain(ours, batch, method="attnlrp", target=targets)

    from lxt.efficient import monkey_patch
    from transformers.models.bert import modeling_bert

    monkey_patch(modeling_bert, verbose=False)
    patched = modeling_bert.BertForSequenceClassification(config).to(dtype).eval()
    patched.load_state_dict(state)

    def lxt_relevance() -> torch.Tensor:
        embeddings = patched.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = patched(inputs_embeds=embeddings, attention_mask=mask).logits
        seed = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
        (gradient,) = torch.autograd.grad(logits, embeddings, seed)
        return (embeddings * gradient).sum(-1).detach() * mask

    theirs = lxt_relevance()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    timed = median_times({"forward": forward,
                          "ours": lambda: relevance.explain(ours, batch, method="attnlrp", target=targets),
                          "lxt": lxt_relevance}, args.repeats, clock)
    forward_time, ours_time, lxt_time = timed["forward"], timed["ours"], timed["lxt"]
    print(f"BERT width {args.width}, depth {args.depth}, heads {args.heads}, batch {args.batch} x {args.length} "
          f"tokens (lengths {lengths}), {str(dtype).removeprefix('torch.')}, transformers {transformers.__version__}")
    for row in range(args.batch):
        difference = (result.relevance[row] - theirs[row]).abs().max() / theirs[row].abs().max()
        print(f"sample {row} (target {int(targets[row])}): max |ours - lxt| / max |lxt| = {float(difference):.2e}")
    overall = (result.relevance - theirs).abs().max() / theirs.abs().max()
    print(f"max relative difference over the batch: {float(overall):.2e}")
    print(f"time / forward ({forward_time * 1e3:.1f} ms, unpatched, no grad; {args.clock} clock, "
          f"{torch.get_num_threads()} threads, runs interleaved): ours {ours_time / forward_time:.2f}x, "
          f"lxt {lxt_time / forward_time:.2f}x, ours / lxt = {ours_time / lxt_time:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
