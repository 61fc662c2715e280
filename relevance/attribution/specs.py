"""The catalogue of gradient and perturbation methods: their options (keyword arguments of
:func:`relevance.explain`, validated here) and the one captum call each makes.

References: Simonyan, Vedaldi & Zisserman, *Deep Inside Convolutional Networks*, ICLR workshop 2014 (saliency);
Shrikumar et al., *Not Just a Black Box*, arXiv 1605.01713, 2016 (input x gradient); Sundararajan, Taly & Yan,
*Axiomatic Attribution for Deep Networks*, ICML 2017 (integrated gradients); Smilkov et al., *SmoothGrad*, arXiv
1706.03825, 2017; Zeiler & Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014 (occlusion);
Ribeiro, Singh & Guestrin, *"Why Should I Trust You?"*, KDD 2016 (LIME); Lundberg & Lee, *A Unified Approach to
Interpreting Model Predictions*, NeurIPS 2017 (Kernel SHAP). Implementations: captum (Kokhlikyan et al. 2020).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from torch import Tensor


# ----------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Option:
    """A method option: its default, a check ``(name, value) -> value`` that raises ``ValueError``, and its help."""

    default: Any
    check: Callable[[str, Any], Any]
    help: str


def _int(minimum: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        return int(value)
    return check


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _positive_float(name: str, value: Any) -> float:
    if _float(name, value) <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    return check


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a name (str), got {value!r}")
    return value


def _features(name: str, value: Any) -> Any:
    if isinstance(value, str) or isinstance(value, (Tensor, np.ndarray)):
        return value
    raise ValueError(f"{name} must be 'pixels', 'patches', 'superpixels', 'tokens' or an int tensor of feature ids, "
                     f"got {type(value).__name__}")


def _baseline(name: str, value: Any) -> Any:
    if isinstance(value, (str, Tensor, np.ndarray)) or callable(value) or (
            isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{name} must be 'zero', 'pad', 'mask', 'unk', a number, a tensor or a function of the input "
                     f"values, got {type(value).__name__}")


def _window(name: str, value: Any) -> tuple[int, ...]:
    sizes = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if not isinstance(sizes, (tuple, list)) or not 1 <= len(sizes) <= 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ValueError(f"{name} must be a positive int or (height, width) in pixels, got {value!r}")
    return tuple(int(v) for v in sizes) * (2 if len(sizes) == 1 else 1)


STREAM = {
    "stream": Option(None, _optional(_name), "the token stream explained (default: the model's first; 'image' or "
                                             "'text' for an image-text model, whose other tower stays fixed)"),
    "site": Option(None, _optional(_name), "the input site whose values are attributed (default: the stream's first, "
                                           "the pixels of an image, the word embeddings of a text)"),
}
FEATURES = {
    "features": Option(None, _features, "'pixels', 'patches' (the model's grid), 'superpixels' (SLIC), 'tokens', "
                                        "or int feature ids (H, W), (B, H, W), (L,) or (B, L)"),
    "n_segments": Option(None, _optional(_int(1)), "superpixels: about how many (default: the number of patches)"),
}
BASELINE = {"baseline": Option("zero", _baseline, "what removed or interpolated-from values are: 'zero', a "
                                                  "number, a tensor, a function of the input values, or for texts "
                                                  "'pad', 'mask', 'unk' (that token's embedding)")}
BATCH = {"internal_batch_size": Option(32, _int(1), "at most this many rows per forward pass")}
SEED = {"seed": Option(0, _int(0), "seed of the random draws; each sample is drawn with it, so a sample gets the "
                                   "same map alone and in a batch")}


# ----------------------------------------------------------------------------------------- captum calls
@dataclass(frozen=True)
class Call:
    """One captum call: ``forward(values (B', ...), rows (B',)) -> scores (B',)``, the input values (B, ...), the
    sample of each input row (B,) (passed on as captum's ``additional_forward_args``, so that it is expanded
    exactly as the inputs are), and what the method needs besides."""

    forward: Callable[[Tensor, Tensor], Tensor]
    inputs: Tensor
    rows: Tensor
    options: Mapping[str, Any]
    baselines: Tensor | None = None
    feature_mask: Tensor | None = None
    window: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    stdev: float | None = None


def _saliency(call: Call) -> tuple[Tensor, None]:
    """Simonyan et al. 2014: ``|d score / d x|`` (``abs=True``) or the gradient itself."""
    from captum.attr import Saliency

    return Saliency(call.forward).attribute(call.inputs, abs=call.options["abs"],
                                            additional_forward_args=(call.rows,)), None


def _input_x_gradient(call: Call) -> tuple[Tensor, None]:
    """Shrikumar et al. 2016: ``x * d score / d x``."""
    from captum.attr import InputXGradient

    return InputXGradient(call.forward).attribute(call.inputs, additional_forward_args=(call.rows,)), None


def _integrated_gradients(call: Call) -> tuple[Tensor, Tensor]:
    """Sundararajan et al. 2017: ``(x - x') * integral_0^1 d score(x' + a (x - x')) / dx da``, with captum's
    completeness delta ``sum(attributions) - (score(x) - score(x'))``."""
    from captum.attr import IntegratedGradients

    options = call.options
    return IntegratedGradients(call.forward).attribute(
        call.inputs, baselines=call.baselines, additional_forward_args=(call.rows,), n_steps=options["n_steps"],
        method=options["integration"], internal_batch_size=options["internal_batch_size"],
        return_convergence_delta=True)


def _smoothgrad(call: Call) -> tuple[Tensor, None]:
    """Smilkov et al. 2017: the saliency averaged over ``n_samples`` copies with Gaussian noise."""
    from captum.attr import NoiseTunnel, Saliency

    options = call.options
    return NoiseTunnel(Saliency(call.forward)).attribute(
        call.inputs, nt_type=options["nt_type"], nt_samples=options["n_samples"],
        nt_samples_batch_size=options["internal_batch_size"], stdevs=call.stdev, abs=options["abs"],
        additional_forward_args=(call.rows,)), None


def _occlusion(call: Call) -> tuple[Tensor, None]:
    """Zeiler & Fergus 2014: the drop of the score when a sliding window is set to the baseline."""
    from captum.attr import Occlusion

    per_eval = max(1, call.options["internal_batch_size"] // call.inputs.shape[0])
    return Occlusion(call.forward).attribute(call.inputs, sliding_window_shapes=call.window, strides=call.strides,
                                             baselines=call.baselines, additional_forward_args=(call.rows,),
                                             perturbations_per_eval=per_eval), None


def _lime(call: Call) -> tuple[Tensor, None]:
    """Ribeiro et al. 2016: a sparse linear surrogate (captum's Lasso) of the score on random subsets of features,
    weighted by an exponential kernel of the cosine distance to the input."""
    from captum._utils.models.linear_model import SkLearnLasso
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    options = call.options
    lime = Lime(call.forward, interpretable_model=SkLearnLasso(alpha=options["alpha"]),
                similarity_func=get_exp_kernel_similarity_function("cosine", options["kernel_width"]))
    return lime.attribute(call.inputs, baselines=call.baselines, additional_forward_args=(call.rows,),
                          feature_mask=call.feature_mask, n_samples=options["n_samples"],
                          perturbations_per_eval=options["internal_batch_size"]), None


def _kernel_shap(call: Call) -> tuple[Tensor, None]:
    """Lundberg & Lee 2017: Shapley values estimated by a linear regression weighted with the Shapley kernel."""
    from captum.attr import KernelShap

    options = call.options
    return KernelShap(call.forward).attribute(call.inputs, baselines=call.baselines,
                                              additional_forward_args=(call.rows,), feature_mask=call.feature_mask,
                                              n_samples=options["n_samples"],
                                              perturbations_per_eval=options["internal_batch_size"]), None


# -------------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class AttributionMethod:
    """A gradient or perturbation method computed by captum.

    Attributes
    ----------
    kind:
        ``"gradient"``: attributions per input element, a feature's attribution is their sum (maps default to
        pixels); ``"perturbation"``: one coefficient per feature, repeated on its elements (maps default to the
        model's patches). Texts use tokens for both.
    options:
        The options :func:`relevance.explain` accepts for the method, with their defaults.
    run:
        The captum call.
    seeded:
        Random draws: run sample by sample, each seeded with ``seed``.
    features:
        ``"mask"`` (captum takes a feature mask), ``"window"`` (a sliding window), or ``"aggregate"`` (per element;
        the map sums over each feature).
    min_features:
        Fewest features (captum's, one for the never-changing positions included) the method can attribute to.
    signed:
        Whether maps of the given options are signed.
    """

    name: str
    kind: str
    options: Mapping[str, Option]
    run: Callable[[Call], tuple[Tensor, Tensor | None]]
    seeded: bool = False
    features: str = "aggregate"
    min_features: int = 1
    signed: Callable[[Mapping[str, Any]], bool] = lambda options: True

    @property
    def uses_baseline(self) -> bool:
        return "baseline" in self.options

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option's value: the given ones, checked, and the defaults. Unknown names are a ``TypeError``."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise TypeError(f"method {self.name!r} has no option{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(unknown)}; its options: {', '.join(self.options)}")
        return {name: option.check(name, given[name]) if name in given else option.default
                for name, option in self.options.items()}


def _signed_unless_abs(options: Mapping[str, Any]) -> bool:
    return not options["abs"] and options.get("nt_type", "smoothgrad") == "smoothgrad"


ABS = {"abs": Option(True, _bool, "absolute values of the gradient (the papers' maps)")}

ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {
    method.name: method for method in (
        AttributionMethod("saliency", "gradient", {**STREAM, **FEATURES, **ABS}, _saliency, signed=_signed_unless_abs),
        AttributionMethod("input_x_gradient", "gradient", {**STREAM, **FEATURES}, _input_x_gradient),
        AttributionMethod("integrated_gradients", "gradient", {
            **STREAM, **FEATURES, **BASELINE, **BATCH,
            "n_steps": Option(50, _int(1), "steps of the path integral"),
            "integration": Option("gausslegendre", _choice("gausslegendre", "riemann_right", "riemann_left",
                                                           "riemann_middle", "riemann_trapezoid"),
                                  "captum's quadrature")}, _integrated_gradients),
        AttributionMethod("smoothgrad", "gradient", {
            **STREAM, **FEATURES, **BATCH, **SEED, **ABS,
            "n_samples": Option(50, _int(1), "noisy copies per sample (the paper's 50)"),
            "noise_level": Option(0.15, _float, "noise standard deviation as a share of each sample's value range "
                                                "(max - min), the paper's sigma / (x_max - x_min)"),
            "stdevs": Option(None, _optional(_float), "absolute noise standard deviation (overrides noise_level)"),
            "nt_type": Option("smoothgrad", _choice("smoothgrad", "smoothgrad_sq", "vargrad"), "captum's NoiseTunnel "
                                                                                               "type")},
            _smoothgrad, seeded=True, signed=_signed_unless_abs),
        AttributionMethod("occlusion", "perturbation", {
            **STREAM, "features": FEATURES["features"], **BASELINE, **BATCH,
            "window": Option(None, _optional(_window), "sliding window (height, width) in pixels (default: the "
                                                       "feature, a patch or a pixel; a token for texts)"),
            "stride": Option(None, _optional(_window), "its stride in pixels (default: the window)")},
            _occlusion, features="window"),
        AttributionMethod("lime", "perturbation", {
            **STREAM, **FEATURES, **BASELINE, **BATCH, **SEED,
            "n_samples": Option(256, _int(1), "random subsets of features evaluated per sample"),
            "alpha": Option(0.01, _float, "L1 weight of the Lasso surrogate"),
            "kernel_width": Option(1.0, _positive_float, "width of the exponential kernel on the cosine distance")},
            _lime, seeded=True, features="mask"),
        AttributionMethod("kernel_shap", "perturbation", {
            **STREAM, **FEATURES, **BASELINE, **BATCH, **SEED,
            "n_samples": Option(256, _int(2), "subsets of features evaluated per sample (all and none included)")},
            _kernel_shap, seeded=True, features="mask", min_features=2),
    )
}
