"""Compare this package's maps with the authors' reference implementation, side by side in one process.

The reference (hila-chefer/Transformer-Explainability, commit c3e578f) is not part of this project: point
``--reference`` at your own checkout of it (it needs ``einops``). Every method is run at batch 1 on a random
timm ViT whose weights are loaded into the reference's own model classes (``ViT_LRP``, ``ViT_orig_LRP``,
``ViT_new``), calling the reference's entry points the way its evaluation scripts do, minus their hard-coded
``.cuda()`` (spec §6.1 #2). The reference's final LayerNorm eps (1e-5, spec §6.1 #13) is set to timm's 1e-6 so
that both models compute the same logits. The ICCV 2021 ViT notebook is not a module; its gradient rollout
(spec §4.7) is written out below on the reference's ``ViT_new`` attention maps and gradients.

    python benchmarks/reference_parity.py --reference /path/to/Transformer-Explainability [--float32]
    python benchmarks/reference_parity.py --reference ... --write-golden tests/golden/chefer_reference.safetensors

``--write-golden`` stores a small model's weights, an input and the reference's maps, which
``tests/test_reference_golden.py`` checks without the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

PATCH, IMAGE = 16, 224  # the reference's Grad-CAM hard-codes a 14 x 14 grid (spec §6.1 #15)
CASES = [  # (method, target or None for the argmax, start_layer)
    (method, target, start)
    for method in ("attention", "rollout", "attention_gradcam", "lrp", "partial_lrp", "transformer_attribution",
                   "gradient_rollout")
    for target, start in ((None, 0), (3, 1))
]


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


def reference_maps(reference: Path, state: dict, width: int, depth: int, heads: int, x: torch.Tensor) -> dict:
    """Maps of the reference implementation for every case in ``CASES`` (batch 1)."""
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

    def run(method: str, index: int, start: int) -> torch.Tensor:
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

    argmax = int(lrp_model(x).argmax())
    return {f"{m}/target={t}/start={s}": run(m, argmax if t is None else t, s).detach() for m, t, s in CASES}


def our_maps(model, x: torch.Tensor) -> dict:
    import relevance

    return {f"{m}/target={t}/start={s}": relevance.explain(model, x, method=m, target=t, start_layer=s).relevance[0]
            for m, t, s in CASES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of Transformer-Explainability")
    parser.add_argument("--float32", action="store_true", help="compare in float32 (default float64)")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--write-golden", type=Path, help="store weights, input and reference maps here")
    args = parser.parse_args(argv)

    from relevance.models.vit import from_timm

    dtype = torch.float32 if args.float32 else torch.float64
    timm_model = build_timm_model(args.width, args.depth, args.heads)
    state = {k: v.clone() for k, v in timm_model.state_dict().items()}
    torch.manual_seed(1)
    x = torch.randn(1, 3, IMAGE, IMAGE).to(dtype)
    expected = reference_maps(args.reference, state, args.width, args.depth, args.heads, x)
    actual = our_maps(from_timm(timm_model.to(dtype)), x)
    worst = 0.0
    print(f"{'case':55s} max|ours - reference| / max|reference|")
    for key, reference_map in expected.items():
        if torch.isnan(reference_map).any():  # min-max of a constant map: 0/0 in the reference, zeros here
            print(f"{key:55s} reference NaN (constant map); ours all zero: {bool((actual[key] == 0).all())}")
            worst = max(worst, 0.0 if bool((actual[key] == 0).all()) else float("inf"))
            continue
        error = ((actual[key] - reference_map).abs().max() / reference_map.abs().max()).item()
        worst = max(worst, error)
        print(f"{key:55s} {error:.2e}")
    print(f"worst relative difference ({dtype}): {worst:.2e}")
    if args.write_golden:
        from safetensors.torch import save_file

        tensors = {f"weights/{k}": v.contiguous() for k, v in state.items()}
        tensors["input"] = x.float().contiguous()  # float32-valued: exact in float64 too
        for other in (torch.float64, torch.float32):  # the reference's own numbers in each precision
            maps = expected if other == dtype else reference_maps(args.reference, state, args.width, args.depth,
                                                                  args.heads, x.to(other))
            name = "float64" if other == torch.float64 else "float32"
            tensors.update({f"reference/{name}/{k}": v.to(other).contiguous() for k, v in maps.items()})
        metadata = {"width": str(args.width), "depth": str(args.depth), "heads": str(args.heads),
                    "dtype": str(dtype), "reference": "hila-chefer/Transformer-Explainability@c3e578f"}
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(args.write_golden), metadata=metadata)
        print(f"wrote {args.write_golden}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
