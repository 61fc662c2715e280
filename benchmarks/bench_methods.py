"""Time every method against the plain forward pass, in one process, side by side.

    python benchmarks/bench_methods.py [--model vit_base_patch16_224] [--batch-sizes 1 8] [--device cuda]
                                       [--repeats 5] [--reference /path/to/Transformer-Explainability]
                                       [--methods a,b] [--attribution-batch-sizes 1] [--attribution-repeats 1]

For each batch size: the forward pass without gradients, then each method, as the median of ``--repeats``
runs after one warm-up (runs of all methods are interleaved, so a busy machine slows them alike). Prints
milliseconds, the ratio to the forward pass, and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
the growth of the process's peak resident set). With ``--reference`` (a checkout of the authors' code, not
part of this project), the authors' transformer attribution and their plain-model gradient rollout are timed
on the same weights and input at batch 1 (the only batch size they support), and the ratio this package /
reference is printed.

The gradient and perturbation methods (captum) run with their default options, which evaluate the model tens to
hundreds of times per image: they are timed at ``--attribution-batch-sizes`` (default: batch 1 only) with
``--attribution-repeats`` runs (default 1) after the warm-up, and the table gives their model evaluations per
image (forward passes; a gradient method also runs one backward pass per forward).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def measure(functions: dict, repeats: int, device: str, clock=time.perf_counter) -> dict[str, tuple[float, float]]:
    """Median milliseconds and peak-memory growth (MiB) of each zero-argument function, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    memory: dict[str, float] = {}
    for name, function in functions.items():  # warm-up, and memory
        _reset_peak(device)
        before = _peak_bytes(device) if device.startswith("cuda") else _peak_bytes(device)
        function()
        _sync(device)
        memory[name] = (_peak_bytes(device) - (0 if device.startswith("cuda") else before)) / 2**20
    for _ in range(repeats):
        for name, function in functions.items():
            _sync(device)
            start = clock()
            function()
            _sync(device)
            times[name].append((clock() - start) * 1000)
    return {name: (statistics.median(values), memory[name]) for name, values in times.items()}


def reference_functions(reference: Path, timm_model, x: torch.Tensor) -> dict:
    """The authors' transformer attribution (ViT_LRP + LRP.generate_LRP's steps, minus ``.cuda()``) and the
    ICCV 2021 ViT notebook's gradient rollout on their plain ViT_new, at batch 1."""
    sys.path[:0] = [str(reference), str(reference / "baselines" / "ViT")]
    from baselines.ViT import ViT_LRP, ViT_new

    cfg = timm_model.patch_embed
    kwargs = dict(img_size=cfg.img_size[0], patch_size=cfg.patch_size[0], embed_dim=timm_model.embed_dim,
                  depth=len(timm_model.blocks), num_heads=timm_model.blocks[0].attn.num_heads, mlp_ratio=4,
                  qkv_bias=True, num_classes=timm_model.num_classes)
    state = timm_model.state_dict()
    lrp_model = ViT_LRP.VisionTransformer(**kwargs)
    lrp_model.load_state_dict(state)
    plain_model = ViT_new.VisionTransformer(**kwargs)
    plain_model.load_state_dict(state)
    lrp_model.to(x.device).eval()
    plain_model.to(x.device).eval()

    def one_hot_backward(model, output):
        one_hot = torch.zeros_like(output)
        one_hot[0, output.argmax()] = 1
        model.zero_grad()
        (one_hot * output).sum().backward(retain_graph=True)
        return one_hot

    def transformer_attribution():
        output = lrp_model(x)
        one_hot = one_hot_backward(lrp_model, output)
        return lrp_model.relprop(one_hot, method="transformer_attribution", start_layer=0, alpha=1)

    def gradient_rollout():
        output = plain_model(x, register_hook=True)
        one_hot_backward(plain_model, output)
        relevance = torch.eye(lrp_tokens(x, cfg), device=x.device)
        for block in plain_model.blocks:
            gradient, attention = block.attn.get_attn_gradients()[0], block.attn.get_attention_map()[0]
            relevance = relevance + (gradient * attention).clamp(min=0).mean(dim=0) @ relevance
        return relevance[0, 1:]

    return {"transformer_attribution": transformer_attribution, "gradient_rollout": gradient_rollout}


def model_evaluations(method: str, grid: tuple[int, int]) -> str:
    """``"forward (backward)"`` passes per image of a gradient or perturbation method with its default options (its
    reference pass included; integrated gradients' delta adds two forward passes, occlusion's unoccluded score
    one); empty for the other methods."""
    import relevance

    spec = relevance.get_method(method).attribution
    if spec is None:
        return ""
    defaults = {name: option.default for name, option in spec.options.items()}
    backward = {"saliency": 1, "input_x_gradient": 1, "integrated_gradients": defaults.get("n_steps", 0),
                "smoothgrad": defaults.get("n_samples", 0)}.get(method, 0)
    forward = {"integrated_gradients": backward + 2, "occlusion": grid[0] * grid[1] + 1}.get(
        method, defaults.get("n_samples", backward))
    return f"{1 + forward} ({backward})"


def lrp_tokens(x: torch.Tensor, patch_embed) -> int:
    return (x.shape[-2] // patch_embed.patch_size[0]) * (x.shape[-1] // patch_embed.patch_size[1]) + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--reference", type=Path, help="checkout of hila-chefer/Transformer-Explainability")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    parser.add_argument("--attribution-batch-sizes", type=int, nargs="+", default=[1],
                        help="batch sizes at which the gradient and perturbation methods are timed (default: 1)")
    parser.add_argument("--attribution-repeats", type=int, default=1,
                        help="timed runs of the gradient and perturbation methods (default 1, after a warm-up)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time (all threads), steadier on a busy "
                             "machine, meaningful for CPU runs with --threads 1")
    args = parser.parse_args(argv)

    import timm

    import relevance
    from relevance.models.vit import from_timm

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    methods = [relevance.get_method(m).name for m in args.methods.split(",")] if args.methods else \
        relevance.list_methods()
    torch.manual_seed(0)
    timm_model = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    model = from_timm(timm_model)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {args.model} (random weights), {name}, torch {torch.__version__}, median of {args.repeats}, "
          f"{args.clock} clock")
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, *model.config.img_size, device=args.device)

        def timm_forward():
            with torch.no_grad():
                return timm_model(x)

        def forward():
            with torch.no_grad():
                return model(x)

        functions = {"timm forward (no grad)": timm_forward, "this package's forward (no grad)": forward}
        slow = {}
        for method in methods:
            explained = lambda method=method: relevance.explain(model, x, method=method)  # noqa: E731
            if relevance.get_method(method).attribution is None:
                functions[method] = explained
            elif batch in args.attribution_batch_sizes:
                slow[method] = explained
        reference = {}
        if args.reference is not None and batch == 1:
            reference = {f"reference {k}": v for k, v in reference_functions(args.reference, timm_model, x).items()}
            functions.update(reference)
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        results = measure(functions, args.repeats, args.device, clock)
        if slow:
            results.update(measure(slow, args.attribution_repeats, args.device, clock))
        base = results["timm forward (no grad)"][0]  # the source library's own forward
        print(f"\n## batch {batch}\n")
        print("| method | ms | x timm forward | ms per image | peak memory growth (MiB) | forward (backward) passes "
              "per image |")
        print("|---|---:|---:|---:|---:|---:|")
        for key, (ms, mib) in results.items():
            evaluations = model_evaluations(key, model.config.grid_size) if key in relevance.METHODS else ""
            print(f"| {key} | {ms:.1f} | {ms / base:.2f} | {ms / batch:.1f} | {mib:.0f} | {evaluations} |")
        for key in reference:
            ours = results[key.removeprefix("reference ")][0]
            print(f"\n{key.removeprefix('reference ')}: this package / reference = {ours / results[key][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
