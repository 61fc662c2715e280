"""``explain`` for the gradient and perturbation methods: prepare, one plain reference pass, captum, the map.

Deterministic methods (saliency, input x gradient, integrated gradients, occlusion) make one captum call for the
batch, with per-sample targets. Randomised ones (smoothgrad, lime, kernel_shap) run sample by sample, each with the
random generators seeded by ``seed`` (and, for texts, on the sample's own tokens without the batch's padding), so a
sample's map is the same alone and in any batch, and the same seed gives the same maps. captum draws from torch's
global generators: they are saved and restored around each call, and a lock keeps two threads' seeded calls
apart (other code drawing random numbers at the same time is not stopped).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from relevance.adapter import Adapter, TextInputs, check_finite
from relevance.attribution.features import Features, feature_map, make_features, occlusion_window
from relevance.attribution.forward import SiteForward, reference_pass, resolve_baseline
from relevance.attribution.specs import AttributionMethod, Call
from relevance.explanation import Explanation, ImageMap, TextMap
from relevance.targets import as_target

_RNG_LOCK = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the block, and restore them after it.

    Parameters
    ----------
    seed:
        The seed of the CPU generator (captum's LIME and Kernel SHAP draw there) and of ``device``'s generator
        when it is a GPU (SmoothGrad's noise is drawn on the input's device).
    device:
        The device of the input values.
    """
    with _RNG_LOCK:
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            yield


def explain_attribution(adapter: Adapter, name: str, method: AttributionMethod, inputs: Any, *, texts: Any,
                        target: Any, options: Mapping[str, Any]) -> Explanation:
    """Explain a batch with a gradient or perturbation method (what :func:`relevance.explain` calls for them).

    Parameters
    ----------
    adapter:
        The model's adapter.
    name:
        The method's name in :data:`relevance.methods.METHODS`.
    method:
        Its captum call and options (:data:`relevance.attribution.ATTRIBUTION_METHODS`).
    inputs, texts, target:
        As :func:`relevance.explain`: prepared by the adapter, the target bound to the model's output.
    options:
        The method's options as given (checked here; the others take their defaults).

    Returns
    -------
    Explanation
        One map per explained stream: (B, H, W) pixels, (B, h, w) patches or (B, L) tokens. A model with several
        streams (an image-text pair) has each stream explained in turn, the other held at the batch's own
        values, unless the option ``stream`` names one. ``extras`` holds captum's attributions (B, ...) at the
        input site, the feature ids, the stream, the site, every option's value, the baselines and, for
        integrated gradients, the convergence delta (B,); with several streams, those of each stream under
        ``extras["streams"][name]``. The adapter's own extras (zero-shot prompts and their ranking) are kept.
    """
    resolved = method.resolve(options)
    batch, target = adapter.prepare(inputs, texts=texts, target=target)
    warnings = adapter.domain_warnings(batch)
    shared = {key: value for key, value in batch.extras.items() if not key.startswith("_")}  # prompts, ranking
    streams = _streams(adapter, batch, resolved["stream"])
    if len(streams) > 1 and isinstance(resolved["features"], (Tensor, np.ndarray)):
        raise ValueError("feature ids belong to one stream: pass stream= (one of "
                         f"{', '.join(map(repr, streams))}) with them")
    if len(streams) > 1 and resolved["site"] is not None:
        raise ValueError(f"site={resolved['site']!r} names one stream's input: pass stream= (one of "
                         f"{', '.join(map(repr, streams))}) with it")
    parts = [_explain_stream(adapter, name, method, resolved, batch, target, stream, several=len(streams) > 1)
             for stream in streams]
    if len(parts) == 1:
        explanation = parts[0]
        explanation.warnings[:0] = warnings
        explanation.extras.update(shared)
        return explanation
    first = parts[0]
    return Explanation(method=name, maps={s: p.maps[s] for s, p in zip(streams, parts)}, output=first.output,
                       scores=first.scores, target=first.target, start_layers={}, info=adapter.info,
                       warnings=warnings + [w for p in parts for w in p.warnings],
                       extras={"streams": {s: p.extras for s, p in zip(streams, parts)}, "options": resolved,
                               **shared})


def _explain_stream(adapter: Adapter, name: str, method: AttributionMethod, resolved: Mapping[str, Any], batch,
                    target: Any, stream: str, several: bool) -> Explanation:
    """:func:`explain_attribution` for one stream of a prepared batch (no domain warnings). With ``several``
    streams, a ``features`` name of the other modality (``"patches"`` for a text) means that stream's default, and
    occlusion windows apply to the image."""
    output, site, original, space = reference_pass(adapter, batch, stream, resolved["site"],
                                                   adapter.info.conventions.input_site.get(name))
    check_finite(output, "the model's outputs")
    bound = as_target(target, adapter.info.output).bind(output, adapter.info.class_names)
    stream_inputs = batch.streams[stream]
    fixed = _fixed(stream_inputs, original, site)
    modality = "text" if fixed is not None else "image"
    if modality == "image" and original.dim() != 4:
        raise ValueError(f"site {site!r} of the image stream {stream!r} holds {tuple(original.shape)}, not images "
                         "(B, C, H, W)")
    choice = resolved["features"]
    if several and isinstance(choice, str) and (choice == "tokens") != (modality == "text"):
        choice = None
    if several and modality == "text":  # occlusion windows are the image's; a text's window is one token
        resolved = {**resolved, **{k: None for k in ("window", "stride") if k in resolved}}
    if choice is None:
        choice = "tokens" if modality == "text" else ("pixels" if method.kind == "gradient" else "patches")
    features, notes = make_features(choice, modality, original, fixed, space.grid_size if space else None,
                                    resolved.get("n_segments"))
    baselines = None
    if method.uses_baseline:
        baselines = resolve_baseline(resolved["baseline"], adapter=adapter, batch=batch, stream=stream, site=site,
                                     original=original, fixed=fixed)
    forward = SiteForward(adapter, batch, stream, site, bound, original, fixed)
    attribution, delta, features = _attribute(method, forward, original, baselines, features, resolved, fixed)
    attribution = attribution.detach().to(original.dtype)
    values = feature_map(attribution, features, "sum" if method.kind == "gradient" else "mean", fixed)
    signed = method.signed(resolved)
    if modality == "text":
        values = values * stream_inputs.valid.to(values)
        stream_map = TextMap(values=values, inputs=stream_inputs, signed=signed)
    else:
        stream_map = ImageMap(values=values, inputs=stream_inputs, signed=signed)
    extras = {"attributions": attribution, "feature_mask": features.ids, "stream": stream, "site": site,
              "options": resolved}
    if baselines is not None:
        extras["baselines"] = baselines
    if delta is not None:
        extras["convergence_delta"] = delta.detach()
    return Explanation(method=name, maps={stream: stream_map}, output=output, scores=bound.score(output),
                       target=bound.classes, start_layers={}, info=adapter.info, warnings=list(notes),
                       extras=extras)


def _streams(adapter: Adapter, batch, chosen: str | None) -> list[str]:
    """The streams explained: ``chosen``, or every stream of the batch (in the adapter's order)."""
    streams = [s for s in adapter.depths() if s in batch.streams] or list(batch.streams)
    if chosen is None:
        return streams
    if chosen not in batch.streams:
        raise ValueError(f"unknown stream {chosen!r}; this model's streams: {', '.join(streams)}")
    return [chosen]


def _fixed(inputs: Any, values: Tensor, site: str) -> Tensor | None:
    """(B, L) the positions of a text stream that never change (special tokens, padding); ``None`` for images."""
    if not isinstance(inputs, TextInputs):
        return None
    if values.dim() < 2 or values.shape[1] != inputs.input_ids.shape[1]:
        raise ValueError(f"site {site!r} holds {tuple(values.shape)}: its second axis is not the stream's "
                         f"{inputs.input_ids.shape[1]} tokens")
    return (inputs.special | ~inputs.valid).to(values.device)


def _attribute(method: AttributionMethod, forward: SiteForward, original: Tensor, baselines: Tensor | None,
               features: Features, options: Mapping[str, Any],
               fixed: Tensor | None) -> tuple[Tensor, Tensor | None, Features]:
    """Run captum: the whole batch at once, or sample by sample for the seeded methods.

    Parameters
    ----------
    method, forward, options:
        The method, the forward function captum sees and the resolved options.
    original:
        (B, ...) the input values at the site.
    baselines:
        (B, ...) like ``original``, or ``None``.
    features:
        The features of the batch (occlusion reads its window from them).
    fixed:
        (B, L) text positions that never change, or ``None`` for images.

    Returns
    -------
    tuple
        captum's attributions (B, ...), the convergence delta (B,) or ``None``, and the features of the map.
    """
    window = strides = None
    if method.features == "window":
        window, strides, features = occlusion_window(features, options["window"], options["stride"], original)
    gradients = torch.enable_grad if method.kind == "gradient" else contextlib.nullcontext
    device = original.device
    gradient = method.kind == "gradient"
    if not method.seeded:
        call = Call(forward, original.clone().requires_grad_(gradient), torch.arange(original.shape[0], device=device), options, baselines,
                    window=window, strides=strides)
        with gradients():
            attribution, delta = method.run(call)
        return attribution, delta, features
    parts = []
    for index in range(original.shape[0]):
        length = original.shape[1]
        if fixed is not None:  # a text: the sample's own tokens, without the batch's padding after them
            length = int(torch.nonzero(forward.batch.streams[forward.stream].valid[index]).max()) + 1
        values = original[index:index + 1, :length].clone().requires_grad_(gradient)
        own = original[index, :length]
        changing = own if fixed is None else own[~fixed[index, :length]]
        stdev = None
        if "noise_level" in options:
            spread = float(changing.max() - changing.min()) if changing.numel() else 0.0
            stdev = options["stdevs"] if options["stdevs"] is not None else options["noise_level"] * spread
        mask = features.captum_mask(index, values) if method.features == "mask" else None
        if mask is not None and int(mask.max()) + 1 < method.min_features:
            raise ValueError(f"{method.name} needs at least {method.min_features} features; sample {index} has "
                             f"{int(mask.max()) + 1}")
        call = Call(forward, values, torch.tensor([index], device=device), options,
                    None if baselines is None else baselines[index:index + 1, :length].clone(), feature_mask=mask,
                    stdev=stdev)
        with seeded(options["seed"], device), gradients():
            part, _ = method.run(call)
        if length < original.shape[1]:
            pad = torch.zeros(1, original.shape[1] - length, *part.shape[2:], dtype=part.dtype, device=part.device)
            part = torch.cat([part, pad], dim=1)
        parts.append(part.to(original.dtype))
    return torch.cat(parts), None, features
