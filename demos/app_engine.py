"""The demo's only door to the engine: reading images, predicting and explaining.

Every call the web app makes into :mod:`relevance` goes through this module, so the app's
handlers deal with plain numpy arrays and class indices, and a change in the engine's API is a
change in one place. Everything here is a pure function of its arguments: the shared model is
only read (the engine records each explanation on a per-call tape, never on the model), so
several requests may run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import relevance
from relevance.images import ImageError, load_image, prepare
from relevance.render import COLORMAPS, colorbar, is_diverging, overlay

__all__ = [
    "DEFAULT_DIVERGING_COLORMAP",
    "DEMO_EXCLUDED_METHODS",
    "DEMO_MAX_PIXELS",
    "ImageError",
    "Prediction",
    "SIGNED_METHODS",
    "class_probabilities",
    "colormap_names",
    "colour_scale",
    "domain_warning",
    "explain_overlay",
    "is_multi_label",
    "is_signed",
    "method_names",
    "num_blocks",
    "overlay_colormap",
    "predict",
    "read_image",
]

#: Methods whose maps have meaningful signs (full LRP: negative relevance speaks against the class).
#: They are drawn centred on 0 with a diverging colour map instead of min-max normalised.
SIGNED_METHODS = frozenset(m for m in relevance.list_methods() if relevance.get_method(m).signed)
#: The diverging colour map of signed maps when the chosen colour map is not diverging.
DEFAULT_DIVERGING_COLORMAP = "bwr"

#: Largest image the web demo accepts, in pixels. Tighter than the engine's own cap because the
#: overlay goes back to the browser at the image's own resolution.
DEMO_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class Prediction:
    """Class probabilities of one image.

    Attributes
    ----------
    probabilities:
        (num_classes,) floats: softmax probabilities, or independent sigmoid
        probabilities for a multi-label model (see :func:`is_multi_label`).
    """

    probabilities: np.ndarray

    def top(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (class index, probability), most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


def colormap_names() -> list[str]:
    """Names of the colour maps the overlay can use."""
    return list(COLORMAPS)


def is_signed(method: str) -> bool:
    """Whether ``method``'s maps are signed (drawn with a diverging colour map centred on 0)."""
    return method in SIGNED_METHODS


def overlay_colormap(method: str, colormap: str) -> str:
    """The colour map ``method``'s overlay is drawn with: the chosen one, except that a signed
    method gets :data:`DEFAULT_DIVERGING_COLORMAP` unless a diverging map was chosen."""
    if is_signed(method) and not is_diverging(colormap):
        return DEFAULT_DIVERGING_COLORMAP
    return colormap


def colour_scale(method: str, colormap: str, *, height: int = 480, width: int = 88) -> np.ndarray:
    """The colour bar (uint8 RGB) that matches :func:`explain_overlay`'s picture for ``method``."""
    return colorbar(overlay_colormap(method, colormap), height, width, signed=is_signed(method))


#: Methods the demo leaves out on purpose: each evaluates the model 50 to 256 times per image with its default
#: options (integration steps, noisy copies, occluded patches, random subsets), about 10 s to a minute per image
#: for ViT-B/16 on a CPU, and 16 times that for "compare all". They run from Python and the command line
#: (``relevance explain --method lime``). Saliency and input x gradient (one backward pass) are in the demo.
DEMO_EXCLUDED_METHODS = ("integrated_gradients", "smoothgrad", "occlusion", "lime", "kernel_shap")


def method_names() -> list[str]:
    """Names of the demo's explanation methods, in the engine's order (all but :data:`DEMO_EXCLUDED_METHODS`)."""
    return [m for m in relevance.list_methods() if m not in DEMO_EXCLUDED_METHODS]


def num_blocks(model: torch.nn.Module) -> int:
    """Number of transformer blocks (the start-layer slider runs over 0..num_blocks - 1)."""
    return len(model.blocks)


def read_image(path: str | Path, *, display_name: str | None = None) -> np.ndarray:
    """Decode an uploaded file into uint8 RGB (H, W, 3).

    Greyscale, alpha, palette and 16-bit files are converted by :func:`relevance.images.load_image`.
    Raises :class:`ImageError` with a message that names the file by ``display_name`` (the name the
    user uploaded) rather than by its server-side path.
    """
    path = Path(path)
    name = display_name or path.name
    try:
        _check_pixel_count(path, name)
        return load_image(path)
    except ImageError as error:
        message = str(error).replace(str(path), name)
        raise ImageError(message) from None


def _check_pixel_count(path: Path, name: str) -> None:
    """Refuse images over :data:`DEMO_MAX_PIXELS` from the header alone, before decoding them."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # not an image: load_image gives the precise message
        return
    if width * height > DEMO_MAX_PIXELS:
        raise ImageError(
            f"{name}: image too large for the demo ({width}x{height} = {width * height / 1e6:.1f} "
            f"megapixels; the limit is {DEMO_MAX_PIXELS / 1e6:.0f} megapixels)"
        )


def is_multi_label(model: torch.nn.Module) -> bool:
    """True for models trained with one sigmoid per class (``model.multi_label``, e.g. the shapes model)."""
    return bool(getattr(model, "multi_label", False))


def class_probabilities(model: torch.nn.Module, logits: torch.Tensor) -> np.ndarray:
    """(num_classes,) probabilities of one sample's logits: sigmoid for multi-label models, else softmax."""
    logits = logits.detach().float().reshape(1, -1)
    return relevance.class_probabilities(logits, is_multi_label(model))[0].cpu().numpy()


def domain_warning(model: torch.nn.Module, image: np.ndarray) -> str | None:
    """A one-line warning when ``image`` lies outside what ``model`` knows (e.g. a photo given to the shapes
    model), else None; see :func:`relevance.models.domain_warning`."""
    from relevance.models import domain_warning as model_domain_warning

    return model_domain_warning(model, image)


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def predict(model: torch.nn.Module, image: np.ndarray) -> Prediction:
    """Class probabilities of ``image`` (uint8 RGB) under ``model``, preprocessed as the model expects."""
    batch = prepare(image, model.data_config)
    with torch.no_grad():
        logits = model(batch.pixels.to(_device_of(model)))
    return Prediction(probabilities=class_probabilities(model, logits[0]))


def explain_overlay(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    method: str,
    target: int | None,
    start_layer: int,
    opacity: float,
    colormap: str = "jet",
) -> tuple[np.ndarray, Prediction, int]:
    """Explain ``image`` for class ``target`` (None: the top prediction) and draw the overlay.

    Unsigned maps are min-max normalised and drawn with ``colormap``, as
    :meth:`relevance.Explanation.overlay` draws them; signed maps (:data:`SIGNED_METHODS`) are
    scaled by their largest magnitude and drawn with a diverging map centred on 0
    (:func:`overlay_colormap`).

    Returns
    -------
    tuple[np.ndarray, Prediction, int]
        The overlay, uint8 RGB of the image's own size; the prediction; the explained class index.
    """
    explanation = relevance.explain(model, image, method=method, target=target, start_layer=start_layer)
    picture = overlay(
        explanation.originals[0],
        explanation.relevance[0],
        explanation.geometries[0],
        colormap=overlay_colormap(method, colormap),
        alpha=opacity,
        signed=is_signed(method),
    )
    prediction = Prediction(probabilities=class_probabilities(model, explanation.logits[0]))
    return picture, prediction, int(explanation.target[0])
