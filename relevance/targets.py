"""Targets: what an explanation explains, as a differentiable score per sample of the model's output.

The seed of the gradient and relevance passes derives from the target: it is ``d score / d output``, which for
a class is the one-hot vector the CVPR 2021 method starts from (spec §2.1 steps 3-4: the one-hot itself, not
multiplied by the logit). Gradient x Input rule sets (AttnLRP, CP-LRP) start from the same gradient, so their
input relevance sums to about the score.

``target=None | int | sequence | tensor`` keeps meaning classes (``None``: each sample's argmax); any callable
``output -> (B,) scores`` is a target (e.g. the cosine of two sentence embeddings); :class:`PairScore` explains
the per-pair similarity logit of an image-text model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

TargetLike = Any  # None | int | Sequence[int] | Tensor | Target | Callable[[Tensor], Tensor]


class Target:
    """Base class: a per-sample score of the model output.

    Subclasses implement :meth:`bind` (decide per-sample choices such as the argmax class, given the output) and
    :meth:`score` ((B,) differentiable scores of the output).
    """

    def bind(self, output: Tensor, class_names: Sequence[str] | None = None) -> "Target":
        """A copy whose choices are fixed for this output (default: nothing to decide)."""
        return self

    def score(self, output: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def classes(self) -> Tensor | None:
        """(B,) explained classes, when the target is a class; ``None`` otherwise."""
        return None

    def select(self, rows: Tensor) -> "Target":
        """This bound target for a batch made of some of its samples (the gradient and perturbation methods
        evaluate each sample many times).

        Parameters
        ----------
        rows:
            (B',) long: the sample of each row.

        Returns
        -------
        Target
            Default: the target itself (its score of a row depends on that row only); targets that hold per-sample
            choices (classes) pick them.
        """
        return self

    def seed(self, output: Tensor) -> Tensor:
        """``d sum_b score_b / d output``: the gradient seed, shaped like ``output``."""
        with torch.enable_grad():
            detached = output.detach().requires_grad_(True)
            scores = self.score(detached)
            if scores.shape != (output.shape[0],):
                raise ValueError(f"a target must give one score per sample, shape ({output.shape[0]},); "
                                 f"got {tuple(scores.shape)}")
            (seed,) = torch.autograd.grad(scores.sum(), detached, allow_unused=True)
        if seed is None:
            raise ValueError("the target's score does not depend on the model output")
        return seed


@dataclass(frozen=True)
class ClassTarget(Target):
    """One class per sample of (B, C) logits: ``None`` (each sample's argmax), an int or a class name for all
    samples, or one per sample (list, tuple, array or tensor). Names are matched by
    :func:`relevance.labels.resolve_class` (index, name or synonym, any case; ambiguity is an error)."""

    requested: Any = None
    resolved: Tensor | None = None

    def bind(self, output: Tensor, class_names: Sequence[str] | None = None) -> "ClassTarget":
        if output.dim() != 2:
            raise ValueError(f"a class target needs (B, C) logits; this model's output is {tuple(output.shape)}")
        batch, num_classes = output.shape
        requested = self.requested
        if isinstance(requested, str) or (isinstance(requested, (list, tuple))
                                          and any(isinstance(r, str) for r in requested)):
            from relevance.labels import resolve_class

            names = [requested] * batch if isinstance(requested, str) else list(requested)
            requested = [resolve_class(name, class_names, num_classes) for name in names]
        if requested is None:
            classes = output.detach().argmax(dim=-1)
        elif isinstance(requested, (int, np.integer)) and not isinstance(requested, bool):
            classes = torch.full((batch,), int(requested), dtype=torch.long)
        else:
            classes = torch.as_tensor(requested).reshape(-1)
            if classes.is_floating_point() or classes.dtype == torch.bool:
                raise TypeError(f"target must hold class indices (ints), got dtype {classes.dtype}")
            if classes.numel() != batch:
                raise ValueError(f"got {classes.numel()} targets for a batch of {batch} samples")
        classes = classes.to(device=output.device, dtype=torch.long)
        if (classes < 0).any() or (classes >= num_classes).any():
            raise ValueError(f"target classes must lie in [0, {num_classes - 1}], got {classes.tolist()}")
        return ClassTarget(requested, classes)

    @property
    def classes(self) -> Tensor | None:
        return self.resolved

    def select(self, rows: Tensor) -> "ClassTarget":
        if self.resolved is None:
            raise RuntimeError("bind the target to an output first")
        return ClassTarget(self.requested, self.resolved[rows.to(self.resolved.device)])

    def score(self, output: Tensor) -> Tensor:
        if self.resolved is None:
            raise RuntimeError("bind the target to an output first")
        return output.gather(1, self.resolved.unsqueeze(1)).squeeze(1)


@dataclass(frozen=True)
class PairScore(Target):
    """The model's own per-sample score, output (B,): an image-text pair's similarity logit."""

    def score(self, output: Tensor) -> Tensor:
        if output.dim() != 1:
            raise ValueError(f"a pair score needs a (B,) output, got {tuple(output.shape)}")
        return output


@dataclass(frozen=True)
class ScoreFunction(Target):
    """Any function of the output giving one score per sample, e.g. ``lambda e: F.cosine_similarity(e[0::2],
    e[1::2])`` on sentence embeddings. Each score must depend on its own sample only, or a batch will not equal
    its samples one by one."""

    function: Callable[[Tensor], Tensor]

    def score(self, output: Tensor) -> Tensor:
        return self.function(output)


@dataclass(frozen=True)
class PairCosine(Target):
    """The cosine similarity of the two embeddings of each pair, output (B, 2, D) -> (B,) scores: "which tokens, in
    both texts, make them similar" (sentence-embedding models, e.g. mean-pooled BERT encoders explained on text
    pairs). The seed is the cosine's gradient with respect to both embeddings."""

    def score(self, output: Tensor) -> Tensor:
        if output.dim() != 3 or output.shape[1] != 2:
            raise ValueError(f"a pair cosine needs (B, 2, D) pair embeddings, got {tuple(output.shape)}")
        return torch.nn.functional.cosine_similarity(output[:, 0], output[:, 1], dim=-1)


def as_target(target: TargetLike, output_kind: str) -> Target:
    """Turn what a user passed as ``target`` into a :class:`Target` for a model whose output is ``output_kind``
    (``"class_logits"``, ``"pair_logits"`` or ``"embeddings"``)."""
    if isinstance(target, Target):
        return target
    if callable(target) and not isinstance(target, (Tensor, np.ndarray)):
        return ScoreFunction(target)
    if output_kind == "pair_logits":
        if target is not None:
            raise ValueError("this model explains image-text pairs: pick pairs with the inputs (and prompts with "
                             "the model's zero-shot target), not with a class target")
        return PairScore()
    if output_kind == "embeddings" and target is None:
        raise ValueError("this model outputs embeddings: say what to explain with a callable target, e.g. the "
                         "cosine similarity of two texts' embeddings")
    return ClassTarget(target)
