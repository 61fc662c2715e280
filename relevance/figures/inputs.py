"""What the figure scripts share: the request, the model, the default inputs, overlays sized for display.

Offline every figure runs on the embedded ``shapes-vit`` and scenes of the shapes world; ``--model`` (a timm name with
``--checkpoint``) and ``--inputs`` (image files or folders) give the papers' setting on your own disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "FigureRequest",
    "FigureResult",
    "load_model",
    "image_paths",
    "default_images",
    "display_overlay",
    "explainable_methods",
    "prediction_label",
]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class FigureRequest:
    """What a figure is made of; ``None`` means the figure's default.

    Attributes
    ----------
    model, checkpoint:
        A model name (``relevance.models.list_models()``) and local weights for it; default ``shapes-vit``.
    inputs:
        Image files or folders (figures of image models).
    methods:
        Method names (default: every method that applies).
    classes:
        Classes to explain (names or indices), for ``class-specific``.
    start_layer:
        ``start_layer`` of the methods that chain blocks (default: the engine's, 0).
    samples, seed:
        Synthetic samples (held-out shapes scenes from ``seed``) of the ``perturbation`` figure.
    data:
        An ImageNet validation folder for the ``perturbation`` figure of an ImageNet model.
    texts:
        Sentences (``text``) or captions (``image-text``).
    device:
        ``cpu`` or ``cuda``.
    """

    model: str | None = None
    checkpoint: str | None = None
    inputs: list[str] | None = None
    methods: list[str] | None = None
    classes: list[str] | None = None
    start_layer: int | None = None
    samples: int | None = None
    seed: int = 10_000_000
    data: str | None = None
    texts: list[str] | None = None
    device: str = "cpu"


@dataclass
class FigureResult:
    """A drawn figure, what it shows (for tests and the ``.json`` beside the pictures) and its caption."""

    figure: Any
    data: dict[str, Any] = field(default_factory=dict)
    caption: str = ""


def load_model(request: FigureRequest, default: str = "shapes-vit") -> tuple[Any, str]:
    """The model of the request (eval mode, on its device) and its name."""
    from relevance.models import create

    name = request.model or default
    return create(name, checkpoint=request.checkpoint, device=request.device, quiet=True), name


def image_paths(inputs: Sequence[str]) -> list[Path]:
    """Image files of ``inputs`` (files, or folders read in sorted order, not recursively)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(p for p in sorted(path.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"no such image or folder: {path}")
    if not paths:
        raise FileNotFoundError(f"no images in {', '.join(map(str, inputs))}")
    return paths


def _assets() -> Path:
    import relevance.assets

    return Path(relevance.assets.__file__).resolve().parent


def default_images(model_name: str, count: int) -> list[Path]:
    """Default inputs: held-out shapes scenes (``assets/examples``) for shapes models, else the sample photos."""
    folder = "examples" if "shapes" in model_name or Path(model_name).is_dir() else "samples"
    return image_paths([str(_assets() / folder)])[:count]


def display_overlay(image_map: Any, index: int, min_side: int = 224, alpha: float = 0.5) -> np.ndarray:
    """Sample ``index``'s overlay on its original image, upscaled first when the original is small (shapes scenes
    are 64 px), so that the map is resampled at the displayed resolution. Signed maps are drawn centred on zero."""
    from PIL import Image

    from relevance.images import CropGeometry
    from relevance.render import overlay

    original, geometry = image_map.original(index)
    scale = max(1, int(np.ceil(min_side / max(1, min(original.shape[:2])))))
    if scale > 1:
        height, width = original.shape[:2]
        original = np.asarray(Image.fromarray(original).resize((width * scale, height * scale),
                                                                 Image.Resampling.BICUBIC))
        geometry = CropGeometry((height * scale, width * scale), tuple(float(v) * scale for v in geometry.box))
    signed = bool(image_map.signed)
    return overlay(original, image_map.values[index], geometry, colormap="bwr" if signed else "jet", alpha=alpha,
                   signed=signed)


def display_image(image_map: Any, index: int, min_side: int = 224) -> np.ndarray:
    """Sample ``index``'s original image, upscaled as :func:`display_overlay` does."""
    from PIL import Image

    original, _ = image_map.original(index)
    scale = max(1, int(np.ceil(min_side / max(1, min(original.shape[:2])))))
    if scale == 1:
        return original
    height, width = original.shape[:2]
    return np.asarray(Image.fromarray(original).resize((width * scale, height * scale), Image.Resampling.BICUBIC))


def explainable_methods(model: Any, requested: Sequence[str] | None) -> list[str]:
    """``requested`` (canonical names), or the papers' methods that apply to the model: every attention and LRP
    method of :func:`relevance.list_methods` and LeGrad, left out where it raises ``NotImplementedError`` (LeGrad
    needs per-layer outputs). The gradient and perturbation methods (captum) join the figures when requested."""
    import torch

    import relevance
    from relevance.adapter import adapter_for

    if requested:
        return list(dict.fromkeys(relevance.get_method(m).name for m in requested))
    config = adapter_for(model).info.data_config
    probe = torch.zeros(1, 3, *config.input_size[-2:]) if config is not None else None
    chosen = []
    for name in relevance.list_methods():
        if relevance.get_method(name).attribution is not None:
            continue
        try:
            if probe is not None and name not in _ALWAYS:
                relevance.explain(model, probe.to(next(model.parameters()).device), method=name)
        except NotImplementedError:
            continue
        chosen.append(name)
    return chosen


#: Methods every image classifier supports (no probe needed).
_ALWAYS = {"attention", "rollout", "attention_gradcam", "lrp", "partial_lrp", "transformer_attribution",
           "gradient_rollout", "attnlrp", "cp_lrp"}


def prediction_label(explanation: Any, index: int) -> str:
    """``"star\\np = 0.97"``: the explained class of sample ``index`` and its probability, on two lines."""
    probability = float(explanation.probabilities[index, int(explanation.target[index])])
    return f"{explanation.class_name(index)}\np = {probability:.2f}"
