"""The numbers the CVPR 2021 paper reports (Chefer, Gur & Wolf, arXiv 2012.09838), to print beside ours.

Values are those of spec §5.2 (Table 1) and §5.3 (Table 2), ViT-B/16 (Google's JAX weights as ported by timm,
squash-resize to 224, mean = std = 0.5), in percent. ``None`` marks a cell the paper leaves empty (the class-agnostic
methods have no "target" row). Methods the paper does not evaluate (gradient rollout, AttnLRP, CP-LRP) have no
entry.
"""

from __future__ import annotations

__all__ = [
    "PAPER_LABELS",
    "PAPER_START_LAYER",
    "TABLE1",
    "TABLE2",
    "UNPERTURBED_ACCURACY",
    "paper_label",
]

#: Our method names -> the names in the paper's tables.
PAPER_LABELS: dict[str, str] = {
    "rollout": "rollout",
    "attention": "raw attention",
    "attention_gradcam": "GradCAM (attention)",
    "lrp": "LRP (full)",
    "partial_lrp": "partial LRP",
    "transformer_attribution": "TA (ours)",
}

#: ``start_layer`` of the paper's quantitative scripts (``imagenet_seg_eval.py``, ``generate_visualizations.py``):
#: 1 for transformer attribution and rollout (spec §2.1); 0 for gradient rollout (ICCV 2021).
PAPER_START_LAYER: dict[str, int] = {"transformer_attribution": 1, "rollout": 1, "gradient_rollout": 0}

#: CVPR 2021 Table 1, ImageNet-Segmentation: method -> (pixel accuracy, mAP, mIoU).
TABLE1: dict[str, tuple[float, float, float]] = {
    "rollout": (73.54, 84.76, 55.42),
    "attention": (67.84, 80.24, 46.37),
    "attention_gradcam": (64.44, 71.60, 40.82),
    "lrp": (51.09, 55.68, 32.89),
    "partial_lrp": (76.31, 84.67, 57.94),
    "transformer_attribution": (79.70, 86.03, 61.95),
}

#: CVPR 2021 Table 2, perturbation AUC on ImageNet val: (test, explained class) -> method -> AUC.
#: test is "negative" (least relevant removed first, higher is better) or "positive" (lower is better); the
#: explained class is "predicted" or "target" (the ground-truth label).
TABLE2: dict[tuple[str, str], dict[str, float | None]] = {
    ("negative", "predicted"): {"rollout": 53.10, "attention": 45.55, "attention_gradcam": 41.52, "lrp": 43.49,
                                "partial_lrp": 50.49, "transformer_attribution": 54.16},
    ("negative", "target"): {"rollout": None, "attention": None, "attention_gradcam": 42.02, "lrp": 43.49,
                             "partial_lrp": 50.49, "transformer_attribution": 55.04},
    ("positive", "predicted"): {"rollout": 20.05, "attention": 23.99, "attention_gradcam": 34.06, "lrp": 41.94,
                                "partial_lrp": 19.64, "transformer_attribution": 17.03},
    ("positive", "target"): {"rollout": None, "attention": None, "attention_gradcam": 33.56, "lrp": 41.93,
                             "partial_lrp": 19.64, "transformer_attribution": 16.04},
}

#: Top-1 accuracy of the authors' ViT-B/16 under this preprocessing (TE#31, TE#52), as a fraction.
UNPERTURBED_ACCURACY = 0.80314


def paper_label(method: str) -> str:
    """The paper's name of ``method`` (the method's title when the paper does not evaluate it)."""
    if method in PAPER_LABELS:
        return PAPER_LABELS[method]
    import relevance

    return relevance.get_method(method).title
