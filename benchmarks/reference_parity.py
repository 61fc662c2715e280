"""Compare this package's maps with the authors' reference implementation, side by side in one process.

The reference (hila-chefer/Transformer-Explainability, commit c3e578f) is not part of this project: point
``--reference`` at your own checkout of it (it needs ``einops``). Every method is run at batch 1 on a random
timm ViT whose weights are loaded into the reference's own model classes (``ViT_LRP``, ``ViT_orig_LRP``,
``ViT_new``), calling the reference's entry points the way its evaluation scripts do, minus their hard-coded
``.cuda()`` (spec §6.1 #2). The reference's final LayerNorm eps (1e-5, spec §6.1 #13) is set to timm's 1e-6 so
that both models compute the same logits. The ICCV 2021 ViT notebook is not a module; its gradient rollout
(spec §4.7) is written out below on the reference's ``ViT_new`` attention maps and gradients.

Two inputs (a Gaussian-noise image and a photograph, ``assets/samples/chelsea.jpg`` prepared as ImageNet
models expect it) and two cases per method: the argmax class with ``start_layer=0``, and the class with the
second-highest logit with ``start_layer=1``. The targets are chosen from the reference's float64 logits and
used in both precisions. The reference always runs in float64 and float32; this package runs batched, in
float64 by default or float32 with ``--float32``. Printed per case and summarised per method:

* ``ref32~ref64``: the reference's own float32 map against its float64 map (its float32 rounding spread);
* ``ours~ref64``: this package's map in the chosen precision against the reference's float64 map;
* ``ours~ref``: this package's map against the reference's map in the same precision.

Every number is max |a - b| / max |b| over one sample's map.

    python benchmarks/reference_parity.py --reference /path/to/Transformer-Explainability [--float32]
    python benchmarks/reference_parity.py --reference ... --write-golden tests/golden/chefer_reference.safetensors

``--write-golden`` stores the small model's weights, the inputs, the targets, the reference's logits and the
reference's maps in float64 and float32, which ``tests/test_reference_parity.py`` checks without the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

PATCH, IMAGE = 16, 224  # the reference's Grad-CAM hard-codes a 14 x 14 grid (spec §6.1 #15)
METHODS = ("attention", "rollout", "attention_gradcam", "lrp", "partial_lrp", "transformer_attribution",
           "gradient_rollout")
CLASS_AGNOSTIC = ("attention", "rollout")
#: (name, column of the golden's ``targets``, start_layer): the argmax from block 0, the runner-up from block 1
CASES = (("argmax", 0, 0), ("second", 1, 1))
PHOTO = Path(__file__).resolve().parent.parent / "assets" / "samples" / "chelsea.jpg"
#: The runner-up must trail the argmax, and lead the third class, by at least this fraction of the logits' spread
#: so that no precision or summation order can swap them.
MIN_LOGIT_GAP = 0.05


def build_timm_model(width: int, depth: int, heads: int, seed: int = 0):
    """A random timm ViT, with LayerNorm, head and embedding weights spread out so that no rule degenerates."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=width, depth=depth,
                              num_heads=heads, num_classes=10).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
            if "head" in name or "pos_embed" in name or "cls_token" in name:
                parameter.normal_(0, 0.5)
    return model


def build_inputs(seed: int = 1) -> torch.Tensor:
    """(2, 3, 224, 224) float32: Gaussian noise, and a photograph with ImageNet's eval transform."""
    from relevance.images import DataConfig, prepare

    torch.manual_seed(seed)
    noise = torch.randn(1, 3, IMAGE, IMAGE)
    photo = prepare(str(PHOTO), DataConfig(input_size=(IMAGE, IMAGE))).pixels
    return torch.cat([noise, photo]).float().contiguous()


def choose_targets(logits: torch.Tensor) -> torch.Tensor:
    """(S, 2): each sample's argmax and its runner-up (second-highest logit), checked to be well separated."""
    ranked = logits.argsort(dim=1, descending=True)
    for sample, row in enumerate(logits):
        top = row[ranked[sample, :3]]
        gap = MIN_LOGIT_GAP * float(row.max() - row.min())
        if not (top[0] - top[1] > gap and top[1] - top[2] > gap):
            raise SystemExit(f"sample {sample}: logits {top.tolist()} of the three best classes are too close "
                             "to pick a distinct runner-up; choose another seed")
    return ranked[:, :2].contiguous()


def reference_maps(reference: Path, state: dict, width: int, depth: int, heads: int, x: torch.Tensor,
                   targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The reference's logits (S, C) and maps ``{"method/case": (S, h, w)}`` in ``x``'s precision, one sample
    at a time (it supports batch 1 only). ``targets`` (S, 2) default to :func:`choose_targets` of its logits."""
    if str(reference) not in sys.path:
        sys.path[:0] = [str(reference), str(reference / "baselines" / "ViT")]
    from baselines.ViT import ViT_LRP, ViT_new, ViT_orig_LRP
    from baselines.ViT.ViT_explanation_generator import Baselines

    dtype = x.dtype
    kwargs = dict(patch_size=PATCH, embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=4, qkv_bias=True,
                  num_classes=state["head.weight"].shape[0])

    def load(module):
        model = module.VisionTransformer(**kwargs)
        model.load_state_dict(state)
        for layer in model.modules():
            if isinstance(layer, torch.nn.LayerNorm):
                layer.eps = 1e-6
        return model.to(dtype).eval()

    lrp_model, orig_model, plain_model = load(ViT_LRP), load(ViT_orig_LRP), load(ViT_new)
    grid = IMAGE // PATCH

    def backward_one_hot(model, output, index):
        one_hot = torch.zeros(1, output.shape[-1], dtype=dtype)
        one_hot[0, index] = 1
        model.zero_grad()
        (one_hot * output).sum().backward(retain_graph=True)
        return one_hot

    def run(method: str, x: torch.Tensor, index: int, start: int) -> torch.Tensor:
        if method in ("transformer_attribution", "lrp", "partial_lrp", "attention"):
            model = lrp_model if method == "transformer_attribution" else orig_model
            one_hot = backward_one_hot(model, model(x), index)
            name = {"transformer_attribution": "transformer_attribution", "lrp": "full",
                    "partial_lrp": "last_layer", "attention": "last_layer_attn"}[method]
            maps = model.relprop(one_hot, method=name, start_layer=start, alpha=1)
            return maps.reshape(IMAGE, IMAGE) if method == "lrp" else maps.reshape(grid, grid)
        if method == "rollout":
            return Baselines(plain_model).generate_rollout(x, start_layer=start).reshape(grid, grid)
        backward_one_hot(plain_model, plain_model(x, register_hook=True), index)
        last = plain_model.blocks[-1].attn
        if method == "attention_gradcam":  # Baselines.generate_cam_attn without .cuda()
            cam = last.get_attention_map()[0, :, 0, 1:].reshape(-1, grid, grid)
            grad = last.get_attn_gradients()[0, :, 0, 1:].reshape(-1, grid, grid).mean(dim=[1, 2], keepdim=True)
            cam = (cam * grad).mean(0).clamp(min=0)
            return (cam - cam.min()) / (cam.max() - cam.min())
        relevance = torch.eye(grid * grid + 1, dtype=dtype)  # ICCV 2021 ViT notebook, spec §4.7
        for block in plain_model.blocks[start:]:  # the notebook has no start_layer: it uses start = 0
            gradient, attention = block.attn.get_attn_gradients()[0], block.attn.get_attention_map()[0]
            relevance = relevance + (gradient * attention).clamp(min=0).mean(dim=0) @ relevance
        return relevance[0, 1:].reshape(grid, grid)

    logits = torch.cat([lrp_model(x[i:i + 1]).detach() for i in range(len(x))])
    if targets is None:
        targets = choose_targets(logits)
    maps = {f"{method}/{case}": torch.stack([run(method, x[i:i + 1], int(targets[i, column]), start).detach()
                                             for i in range(len(x))])
            for method in METHODS for case, column, start in CASES}
    return logits, maps


def our_maps(model, x: torch.Tensor, targets: torch.Tensor) -> dict:
    """This package's maps, the whole batch in one call per case: the argmax case passes ``target=None``."""
    import relevance

    maps = {}
    for method in METHODS:
        for case, column, start in CASES:
            result = relevance.explain(model, x, method=method, target=None if column == 0 else targets[:, column],
                                       start_layer=start)
            assert torch.equal(result.target.cpu(), targets[:, column]), (method, case, result.target)
            maps[f"{method}/{case}"] = result.relevance.detach()
    return maps


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per sample: max |actual - expected| / max |expected| (float64)."""
    actual, expected = actual.double().flatten(1), expected.double().flatten(1)
    return (actual - expected).abs().amax(dim=1) / expected.abs().amax(dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of Transformer-Explainability")
    parser.add_argument("--float32", action="store_true", help="run this package in float32 (default float64)")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4, help="of the random model: seed 4 gives well separated "
                        "targets and no constant Grad-CAM map (0/0 in the reference)")
    parser.add_argument("--write-golden", type=Path, help="store weights, inputs, targets and reference maps here")
    args = parser.parse_args(argv)

    from relevance.models.vit import from_timm

    dtype = torch.float32 if args.float32 else torch.float64
    timm_model = build_timm_model(args.width, args.depth, args.heads, args.seed)
    state = {k: v.clone() for k, v in timm_model.state_dict().items()}
    x = build_inputs()  # float32 values: exact in float64 too
    shape = (args.width, args.depth, args.heads)
    logits64, ref64 = reference_maps(args.reference, state, *shape, x.double())
    targets = choose_targets(logits64)
    logits32, ref32 = reference_maps(args.reference, state, *shape, x.float(), targets)
    same = ref64 if dtype == torch.float64 else ref32
    ours = our_maps(from_timm(timm_model).to(dtype), x.to(dtype), targets)

    for sample, row in enumerate(logits64):
        print(f"sample {sample}: argmax {int(targets[sample, 0])} (logit {row[targets[sample, 0]]:+.4f}), "
              f"runner-up {int(targets[sample, 1])} (logit {row[targets[sample, 1]]:+.4f}), "
              f"logits {row.min():+.3f}..{row.max():+.3f}")
    for key in ref64:
        for name, maps in (("float64", ref64), ("float32", ref32)):
            if not torch.isfinite(maps[key]).all():
                raise SystemExit(f"reference {name} {key} is not finite (e.g. Grad-CAM of a constant map)")
    precision = "float64" if dtype == torch.float64 else "float32"
    print(f"\nthis package in {precision}; max |a - b| / max |b| per sample")
    print(f"{'case':42s} {'sample':>6s} {'ref32~ref64':>12s} {'ours~ref64':>12s} {'ours~ref':>12s} "
          f"{'cases differ':>13s}")
    summary = {}
    for key in ref64:
        method, case = key.split("/")
        spread, error, error_same = (relative_error(ref32[key], ref64[key]), relative_error(ours[key], ref64[key]),
                                     relative_error(ours[key], same[key]))
        other = ref64[f"{method}/{'second' if case == 'argmax' else 'argmax'}"]
        differ = relative_error(ref64[key], other)  # the other case: another target and another start_layer
        for sample in range(len(x)):
            print(f"{key:42s} {sample:6d} {spread[sample]:12.2e} {error[sample]:12.2e} {error_same[sample]:12.2e} "
                  f"{differ[sample]:13.2e}")
        old = summary.get(method, (0.0, 0.0, 0.0))
        summary[method] = (max(old[0], spread.max().item()), max(old[1], error.max().item()),
                           max(old[2], error_same.max().item()))
    print(f"\nper method, max over samples and cases (this package in {precision})")
    print(f"{'method':26s} {'ref32~ref64':>12s} {'ours~ref64':>12s} {'ours~ref':>12s} {'ours/spread':>12s}")
    for method, (spread, error, error_same) in summary.items():
        ratio = f"{error / spread:12.2f}" if spread > 0 else f"{'-':>12s}"
        print(f"{method:26s} {spread:12.2e} {error:12.2e} {error_same:12.2e} {ratio}")

    if args.write_golden:
        from safetensors.torch import save_file

        for method in METHODS:
            if method not in CLASS_AGNOSTIC:
                differ = relative_error(ref64[f"{method}/argmax"], ref64[f"{method}/second"])
                if not (differ > 1e-2).all():
                    raise SystemExit(f"{method}: the two targets' maps are too alike ({differ.tolist()})")
        tensors = {f"weights/{k}": v.contiguous() for k, v in state.items()}
        tensors["input"] = x
        tensors["targets"] = targets  # (S, 2): argmax, runner-up
        tensors["start_layers"] = torch.tensor([start for _, _, start in CASES])
        for name, logits, maps in (("float64", logits64, ref64), ("float32", logits32, ref32)):
            tensors[f"reference/{name}/logits"] = logits.contiguous()
            tensors.update({f"reference/{name}/{k}": v.contiguous() for k, v in maps.items()})
        metadata = {"width": str(args.width), "depth": str(args.depth), "heads": str(args.heads),
                    "seed": str(args.seed), "cases": ",".join(case for case, _, _ in CASES), "torch": torch.__version__,
                    "reference": "hila-chefer/Transformer-Explainability@c3e578f"}
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(args.write_golden), metadata=metadata)
        print(f"wrote {args.write_golden} ({args.write_golden.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
