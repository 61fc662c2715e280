"""The evaluation protocols of the papers as library functions.

* :mod:`~relevance.evaluation.perturbation`: positive / negative perturbation tests and their AUC (spec §5.3).
* :mod:`~relevance.evaluation.segmentation`: pixel accuracy, mIoU and mAP of the ImageNet-Segmentation test (spec §5.2).
* :mod:`~relevance.evaluation.localisation`: pointing game, mass inside the mask and class specificity
  against known object masks (the shapes world).
* :mod:`~relevance.evaluation.grounding`: image-text models grounding captions of held-out shapes scenes (image
  maps on the named object, text relevance on its colour and shape words), per method.
* :mod:`~relevance.evaluation.datasets`: readers for ImageNet val folders and ``gtsegs_ijcv.mat``.

All functions take plain tensors and callables (a classifier, an explainer), never model internals.
"""

from relevance.evaluation.datasets import (
    ImageNetSegmentation,
    ImageNetVal,
    imagenet_val_batches,
    segmentation_batches,
)
from relevance.evaluation.grounding import GroundingResult, evaluate_grounding, grounding_samples
from relevance.evaluation.localisation import class_specificity, dilate, mass_inside, pointing_game
from relevance.evaluation.perturbation import (
    STEPS,
    PerturbationResult,
    make_normalize,
    multilabel_present,
    perturb,
    perturbation_auc,
    perturbation_curve,
    perturbation_hits,
    perturbation_test,
    removal_order,
    top1_correct,
)
from relevance.evaluation.segmentation import (
    SegmentationAccumulator,
    SegmentationScores,
    average_precision,
    binarize,
    normalize_map,
    segmentation_ap,
    segmentation_scores,
    segmentation_statistics,
    segmentation_test,
)

__all__ = [
    "GroundingResult",
    "STEPS",
    "ImageNetSegmentation",
    "ImageNetVal",
    "PerturbationResult",
    "SegmentationAccumulator",
    "SegmentationScores",
    "average_precision",
    "binarize",
    "class_specificity",
    "dilate",
    "evaluate_grounding",
    "grounding_samples",
    "imagenet_val_batches",
    "make_normalize",
    "mass_inside",
    "multilabel_present",
    "normalize_map",
    "perturb",
    "perturbation_auc",
    "perturbation_curve",
    "perturbation_hits",
    "perturbation_test",
    "pointing_game",
    "removal_order",
    "segmentation_ap",
    "segmentation_batches",
    "segmentation_scores",
    "segmentation_statistics",
    "segmentation_test",
    "top1_correct",
]
