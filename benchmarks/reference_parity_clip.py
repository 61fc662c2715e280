"""Gradient rollout on CLIP against the authors' notebook (hila-chefer/Transformer-MM-Explainability, commit 58eaea8,
``CLIP_explainability.ipynb`` and its ``CLIP/clip/model.py``), side by side in one process.

The reference is not part of this project: point ``--reference`` at your own checkout of it. A small random CLIP
(ViT image tower, causal text tower, QuickGELU, a 256-token vocabulary whose end-of-text token has the largest
id) is built with the reference's own ``CLIP`` class, and the notebook's ``interpret`` is run as the notebook runs
it: one image repeated for a batch of texts, the target the sum of the diagonal of ``logits_per_image``, one
``torch.autograd.grad`` per block, ``R <- R + E_h[(dA * A)^+] R`` from ``start_layer`` (the notebook's -1 means
the last block; 0 every block), minus its hard-coded ``.cuda()``. The notebook's model computes its LayerNorms
in float32 (fp16 handling); for the float64 run they compute in float64.

This package converts the same weights through open_clip (``from_open_clip``) and Hugging Face
(``from_hf``) and explains the pairs with ``relevance.explain(model, image, texts=ids,
method="gradient_rollout")``. Printed: max |ours - reference| / max |reference| per map (image: the [CLS] row
over the patches; text: the end-of-text row over every position).

    python benchmarks/reference_parity_clip.py --reference /path/to/Transformer-MM-Explainability
    python benchmarks/reference_parity_clip.py --reference ... --write-golden tests/golden/clip_notebook.safetensors

``--write-golden`` stores the weights, the inputs and the reference's maps in float64 and float32, which
``tests/test_clip_reference.py`` checks without the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

#: The small model: (image size, patch, vision width (heads = width // 64 in the reference), vision layers,
#: context, vocabulary, text width, text heads, text layers, embedding width)
SHAPE = dict(image_resolution=32, vision_patch_size=8, vision_width=128, vision_layers=2, context_length=16,
             vocab_size=256, transformer_width=64, transformer_heads=2, transformer_layers=3, embed_dim=32)
SOT, EOT = 254, 255  # the end-of-text token has the largest id, as in CLIP's vocabulary
STARTS = (-1, 0)  # the notebook's default (last block) and every block


def build_inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One image (1, 3, 32, 32) and three texts (3, 16) of different lengths, padded with 0."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, SHAPE["image_resolution"], SHAPE["image_resolution"], generator=generator)
    texts = torch.zeros(3, SHAPE["context_length"], dtype=torch.long)
    for row, length in enumerate((4, 9, 6)):
        texts[row, 0] = SOT
        texts[row, 1:length + 1] = torch.randint(1, SOT, (length,), generator=generator)
        texts[row, length + 1] = EOT
    return image, texts


def reference_model(reference: Path, seed: int = 0):
    """The reference's ``CLIP`` with random weights, spread so that no map is degenerate."""
    if str(reference) not in sys.path:
        sys.path.insert(0, str(reference))
    from CLIP.clip import model as mm

    torch.manual_seed(seed)
    model = mm.CLIP(**SHAPE).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "ln" in name:
                parameter.add_(0.3 * torch.randn_like(parameter))
            if name.endswith("in_proj_weight"):
                parameter.mul_(3.0)  # sharper attention than the tiny default
        model.logit_scale.fill_(2.0)
    return model, mm


def interpret(model, image: torch.Tensor, texts: torch.Tensor, start_layer: int, start_layer_text: int):
    """The notebook's ``interpret`` (cell 6), without ``.cuda()``: (text relevance (B, L, L), image relevance
    (B, h*w))."""
    batch_size = texts.shape[0]
    images = image.repeat(batch_size, 1, 1, 1)
    logits_per_image, logits_per_text = model(images, texts)
    index = [i for i in range(batch_size)]
    one_hot = torch.zeros(logits_per_image.shape, dtype=logits_per_image.dtype)
    one_hot[torch.arange(logits_per_image.shape[0]), index] = 1
    one_hot = torch.sum(one_hot.requires_grad_(True) * logits_per_image)
    model.zero_grad()

    image_relevance = _rollout(model.visual.transformer, one_hot, start_layer, batch_size)[:, 0, 1:]
    return _rollout(model.transformer, one_hot, start_layer_text, batch_size), image_relevance


def _rollout(tower, one_hot: torch.Tensor, start_layer: int, batch_size: int) -> torch.Tensor:
    """The notebook's loop over one tower's blocks: ``R += mean_heads(clamp(grad * A)) @ R`` from ``start_layer``
    (-1: the last block), R starting at the identity. (B, N, N)."""
    blocks = list(dict(tower.resblocks.named_children()).values())
    if start_layer == -1:
        start_layer = len(blocks) - 1
    num_tokens = blocks[0].attn_probs.shape[-1]
    R = torch.eye(num_tokens, num_tokens, dtype=blocks[0].attn_probs.dtype)
    R = R.unsqueeze(0).expand(batch_size, num_tokens, num_tokens)
    for i, blk in enumerate(blocks):
        if i < start_layer:
            continue
        grad = torch.autograd.grad(one_hot, [blk.attn_probs], retain_graph=True)[0].detach()
        cam = blk.attn_probs.detach()
        cam = cam.reshape(-1, cam.shape[-1], cam.shape[-1])
        grad = grad.reshape(-1, grad.shape[-1], grad.shape[-1])
        cam = grad * cam
        cam = cam.reshape(batch_size, -1, cam.shape[-1], cam.shape[-1])
        cam = cam.clamp(min=0).mean(dim=1)
        R = R + torch.bmm(cam, R)
    return R


def reference_maps(model, mm, image: torch.Tensor, texts: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Logits and, per start layer, the image maps (B, h*w) and the texts' end-of-text rows (B, L)."""
    if dtype == torch.float64:
        mm.LayerNorm.forward = torch.nn.LayerNorm.forward  # compute in the input's precision
    model = model.to(dtype)
    image = image.to(dtype)
    out = {"logits": model(image.repeat(len(texts), 1, 1, 1), texts)[0].diagonal().detach()}
    eot = texts.argmax(dim=-1)
    for start in STARTS:
        text_relevance, image_relevance = interpret(model, image, texts, start, start)
        out[f"image/start{start}"] = image_relevance.detach()
        out[f"text/start{start}"] = text_relevance[torch.arange(len(texts)), eot].detach()
    return out


def open_clip_model(state: dict[str, torch.Tensor]):
    """open_clip's own ``CLIP`` of the same architecture, with the reference's weights."""
    import open_clip

    vision = dict(image_size=SHAPE["image_resolution"], patch_size=SHAPE["vision_patch_size"],
                  width=SHAPE["vision_width"], layers=SHAPE["vision_layers"], head_width=64)
    text = dict(context_length=SHAPE["context_length"], vocab_size=SHAPE["vocab_size"],
                width=SHAPE["transformer_width"], heads=SHAPE["transformer_heads"], layers=SHAPE["transformer_layers"])
    model = open_clip.model.CLIP(SHAPE["embed_dim"], vision, text, quick_gelu=True).eval()
    model.load_state_dict(state)
    return model


def hf_model(state: dict[str, torch.Tensor]):
    """transformers' ``CLIPModel`` of the same architecture, with the reference's weights renamed (its pooling
    finds the first end-of-text id)."""
    from transformers import CLIPConfig, CLIPModel

    tower = dict(hidden_act="quick_gelu", layer_norm_eps=1e-5)
    config = CLIPConfig(
        text_config=dict(vocab_size=SHAPE["vocab_size"], hidden_size=SHAPE["transformer_width"],
                         intermediate_size=4 * SHAPE["transformer_width"], num_hidden_layers=SHAPE["transformer_layers"],
                         num_attention_heads=SHAPE["transformer_heads"], max_position_embeddings=SHAPE["context_length"],
                         eos_token_id=EOT, bos_token_id=SOT, pad_token_id=0, **tower),
        vision_config=dict(hidden_size=SHAPE["vision_width"], intermediate_size=4 * SHAPE["vision_width"],
                           num_hidden_layers=SHAPE["vision_layers"], num_attention_heads=SHAPE["vision_width"] // 64,
                           image_size=SHAPE["image_resolution"], patch_size=SHAPE["vision_patch_size"], **tower),
        projection_dim=SHAPE["embed_dim"])
    model = CLIPModel(config).eval()
    model.load_state_dict(hf_state(state, SHAPE["vision_layers"], SHAPE["transformer_layers"]), strict=False)
    return model


def hf_state(state: dict[str, torch.Tensor], vision_layers: int, text_layers: int) -> dict[str, torch.Tensor]:
    """OpenAI/open_clip names -> transformers' CLIPModel names (the inverse of what ``from_hf`` reads)."""
    out = {"vision_model.embeddings.class_embedding": state["visual.class_embedding"],
           "vision_model.embeddings.patch_embedding.weight": state["visual.conv1.weight"],
           "vision_model.embeddings.position_embedding.weight": state["visual.positional_embedding"],
           "visual_projection.weight": state["visual.proj"].t(),
           "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
           "text_projection.weight": state["text_projection"].t(), "logit_scale": state["logit_scale"]}
    for part in ("weight", "bias"):
        out[f"vision_model.pre_layrnorm.{part}"] = state[f"visual.ln_pre.{part}"]
        out[f"vision_model.post_layernorm.{part}"] = state[f"visual.ln_post.{part}"]
        out[f"text_model.final_layer_norm.{part}"] = state[f"ln_final.{part}"]
    for source, target, depth in (("visual.transformer", "vision_model", vision_layers),
                                  ("transformer", "text_model", text_layers)):
        for i in range(depth):
            s, t = f"{source}.resblocks.{i}.", f"{target}.encoder.layers.{i}."
            for part in ("weight", "bias"):
                q, k, v = state[f"{s}attn.in_proj_{part}"].chunk(3)
                out.update({f"{t}self_attn.q_proj.{part}": q, f"{t}self_attn.k_proj.{part}": k,
                            f"{t}self_attn.v_proj.{part}": v,
                            f"{t}self_attn.out_proj.{part}": state[f"{s}attn.out_proj.{part}"],
                            f"{t}layer_norm1.{part}": state[f"{s}ln_1.{part}"],
                            f"{t}layer_norm2.{part}": state[f"{s}ln_2.{part}"],
                            f"{t}mlp.fc1.{part}": state[f"{s}mlp.c_fc.{part}"],
                            f"{t}mlp.fc2.{part}": state[f"{s}mlp.c_proj.{part}"]})
    return {k: v.clone() for k, v in out.items()}


def our_maps(model, image: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
    """This package's maps, the three pairs in one call per start layer (the -1 case by the default)."""
    import relevance

    out = {}
    for start in STARTS:
        result = relevance.explain(model, image, texts=texts, method="gradient_rollout",
                                   start_layer=None if start == -1 else start)
        out["logits"] = result.scores
        out[f"image/start{start}"] = result.image_relevance.flatten(1)
        text = torch.zeros(len(texts), texts.shape[1], dtype=result.text_relevance.dtype)
        text[:, :result.text_relevance.shape[1]] = result.text_relevance
        out[f"text/start{start}"] = text
    return out


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, per sample (a 1-D tensor counts as one sample), worst sample."""
    actual, expected = actual.double(), expected.double()
    if expected.dim() == 1:
        actual, expected = actual[None], expected[None]
    actual, expected = actual.flatten(1), expected.flatten(1)
    return float(((actual - expected).abs().amax(dim=1) / expected.abs().amax(dim=1)).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of Transformer-MM-Explainability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-golden", type=Path)
    args = parser.parse_args(argv)

    from relevance.models import clip

    model, mm = reference_model(args.reference, args.seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    image, texts = build_inputs()
    references = {"float32": reference_maps(model, mm, image, texts, torch.float32)}
    references["float64"] = reference_maps(model, mm, image, texts, torch.float64)
    converted = {"open_clip": clip.from_open_clip(open_clip_model(state)), "hf": clip.from_hf(hf_model(state))}
    print(f"{'case':28s} {'precision':>9s} {'converter':>10s} {'ours~ref':>10s}")
    for precision, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        for name, ours in converted.items():
            maps = our_maps(ours.to(dtype), image.to(dtype), texts)
            for key, expected in references[precision].items():
                print(f"{key:28s} {precision:>9s} {name:>10s} {relative_error(maps[key], expected):10.2e}")
    spread = {key: relative_error(references["float32"][key], references["float64"][key]) for key in references["float64"]}
    print("reference float32 vs float64:", {k: f"{v:.1e}" for k, v in spread.items()})
    for key in ("image", "text"):
        differ = relative_error(references["float64"][f"{key}/start0"], references["float64"][f"{key}/start-1"])
        print(f"{key}: start 0 and start -1 differ by {differ:.2e}")

    if args.write_golden:
        from safetensors.torch import save_file

        tensors = {f"weights/{k}": v.contiguous() for k, v in state.items()}
        tensors.update({"image": image.contiguous(), "texts": texts.contiguous()})
        for precision, maps in references.items():
            tensors.update({f"reference/{precision}/{k}": v.contiguous() for k, v in maps.items()})
        metadata = {key: str(value) for key, value in SHAPE.items()}
        metadata.update(reference="hila-chefer/Transformer-MM-Explainability@58eaea8 CLIP_explainability.ipynb",
                        torch=torch.__version__, seed=str(args.seed))
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(args.write_golden), metadata=metadata)
        print(f"wrote {args.write_golden} ({args.write_golden.stat().st_size / 2**10:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
