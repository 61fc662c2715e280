"""The result of :func:`relevance.explain`: one map per token space, with what is needed to draw it.

* :class:`ImageMap`: (B, h, w) on the patch grid (or (B, H, W) on pixels for input-level methods), upsampled
  heatmaps and overlays on the original images at their own resolution.
* :class:`TextMap`: (B, L) one value per token (exactly zero on padding), the token strings, word aggregation,
  and token heatmaps as self-contained HTML and PNG.
* :class:`Explanation`: the maps of every stream, the model output, the explained scores and classes, the
  raw token-to-token matrices where a method has them, and warnings (inputs outside the model's domain). In a
  notebook it displays itself (``_repr_html_``, ``_repr_png_``) without any JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from relevance.adapter import ImageInputs, ModelInfo, TextInputs


def class_probabilities(logits: Tensor, multi_label: bool = False) -> Tensor:
    """(B, C) probabilities of logits: softmax, or independent sigmoids for a multi-label model (one trained with
    one binary cross-entropy per class)."""
    return logits.sigmoid() if multi_label else logits.softmax(dim=-1)


def _pixels_to_uint8(pixels: Tensor) -> np.ndarray:
    image = pixels.detach().float().cpu()
    image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ImageMap:
    """Relevance over an image stream.

    Attributes
    ----------
    values:
        (B, h, w) raw values on the patch grid, or (B, H, W) on the model input's pixels.
    inputs:
        The images (model input, originals and crop geometries).
    signed:
        Whether the method's values are signed (drawn with a diverging colour map centred on zero).
    """

    values: Tensor
    inputs: ImageInputs
    signed: bool = False

    def heatmaps(self, size: tuple[int, int] | None = None) -> Tensor:
        """(B, H, W) maps in [0, 1]: upsampled bilinearly to ``size`` (default: the model input's size) and
        min-max normalised per map (a constant map gives zeros), as the papers display them (spec §2.1 step 9)."""
        from relevance.render import normalize, upsample

        size = tuple(size) if size is not None else tuple(self.inputs.pixels.shape[-2:])
        maps = self.values
        if tuple(maps.shape[-2:]) != size:
            maps = upsample(maps, size)
        return normalize(maps)

    def heatmap_on_original(self, index: int = 0) -> np.ndarray:
        """float32 (H0, W0): sample ``index``'s map resampled onto its original image and min-max normalised
        over the part the model saw (0 outside it, and for a constant map)."""
        from relevance.render.image import map_on_original

        _, geometry = self.original(index)
        values = map_on_original(self.values[index], geometry)
        seen = np.isfinite(values)
        if not seen.any():
            return np.zeros_like(values)
        low, high = float(values[seen].min()), float(values[seen].max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return np.where(seen, scaled, 0.0).astype(np.float32)

    def original(self, index: int) -> tuple[np.ndarray, Any]:
        """Sample ``index``'s image as given (uint8 RGB) and where the model input lies in it."""
        from relevance.images import CropGeometry

        if self.inputs.originals is not None:
            return self.inputs.originals[index], self.inputs.geometries[index]
        image = _pixels_to_uint8(self.inputs.pixels[index])
        return image, CropGeometry.full(image.shape[:2])

    def overlay(self, index: int = 0, colormap: str | None = None, alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB overlay of sample ``index``'s map on its original image, at the original's resolution (on the
        model input when no original is known). Signed maps are drawn centred on zero with a diverging colour map:
        ``colormap`` when it is diverging, else ``"bwr"``."""
        from relevance.render import image as render
        from relevance.render.colormaps import is_diverging

        original, geometry = self.original(index)
        if self.signed:
            diverging = colormap if colormap is not None and is_diverging(colormap) else "bwr"
            return render.overlay(original, self.values[index], geometry, colormap=diverging, alpha=alpha,
                                  signed=True)
        return render.overlay(original, self.values[index], geometry, colormap=colormap or "jet", alpha=alpha)


@dataclass
class TextMap:
    """Relevance over a text stream.

    Attributes
    ----------
    values:
        (B, L) one raw value per token, exactly zero on padding.
    inputs:
        The texts (ids, token strings, special-token and padding masks, word indices).
    signed:
        Whether the method's values are signed.
    """

    values: Tensor
    inputs: TextInputs
    signed: bool = False

    def tokens(self, index: int = 0) -> list[str]:
        """Token strings of sample ``index`` (padding excluded)."""
        return [t for t, v in zip(self.inputs.tokens[index], self.inputs.valid[index].tolist()) if v]

    def scores(self, index: int = 0) -> Tensor:
        """(L_i,) values of sample ``index``'s tokens (padding excluded)."""
        return self.values[index][self.inputs.valid[index]]

    def words(self, index: int = 0, reduce: str = "sum") -> list[tuple[str, float]]:
        """(word, score) of sample ``index``: word pieces aggregated by ``"sum"`` or ``"max"`` (the ERASER
        pipeline's choice, spec §5.4); special tokens and padding are skipped."""
        from relevance.render import text as render_text

        tokens, scores, word_ids = self._arguments(index)
        words, values = render_text.aggregate_words(tokens, scores, word_ids, reduce=reduce)
        return list(zip(words, [float(v) for v in values]))

    def _arguments(self, index: int) -> tuple[list[str], np.ndarray, list[int | None]]:
        """Tokens, scores and word indices of sample ``index``'s valid tokens."""
        valid = self.inputs.valid[index].tolist()
        tokens = [t for t, v in zip(self.inputs.tokens[index], valid) if v]
        word_ids = [w for w, v in zip(self.inputs.word_ids[index], valid) if v]
        return tokens, self.scores(index).detach().cpu().double().numpy(), word_ids

    def html(self, index: int = 0, **options: Any) -> str:
        """Sample ``index``'s token heatmap as a self-contained HTML fragment (inline styles, no JavaScript);
        ``options`` are those of :func:`relevance.render.text.token_heatmap` (``words``, ``show_special``, ...)."""
        from relevance.render import text as render_text

        options.setdefault("signed", True if self.signed else None)
        return render_text.text_heatmap_html(*self._arguments(index), **options)

    def png(self, index: int = 0, **options: Any) -> np.ndarray:
        """Sample ``index``'s token heatmap as a uint8 RGB image (options as :meth:`html`, plus ``width``)."""
        from relevance.render import text as render_text

        options.setdefault("signed", True if self.signed else None)
        return render_text.text_heatmap_image(*self._arguments(index), **options)


@dataclass
class Explanation:
    """The result of :func:`relevance.explain` for a batch of B samples.

    Attributes
    ----------
    method:
        The method's name.
    maps:
        One map per token stream: ``"image"`` -> :class:`ImageMap`, ``"text"`` -> :class:`TextMap`.
    output:
        The model output: (B, C) logits, or (B,) pair scores.
    scores:
        (B,) the explained score of each sample (the target logit, the pair's similarity logit, ...).
    target:
        (B,) the explained class of each sample, when the target is a class; else ``None``.
    start_layers:
        The first block used per stream, by methods that chain blocks.
    matrices:
        Per stream, the method's token-to-token matrix (B, N, N) where it has one (transformer attribution's
        product, rollout, gradient rollout, the last block's attention or relevance).
    info:
        The model's metadata (class names, multi-label).
    warnings:
        Things the user should know, e.g. inputs outside the model's domain.
    extras:
        Anything else: what the family's adapter reports about the batch (e.g. an image-text model's zero-shot
        prompts, the prompt explained for each image and the ranking of the prompts), and what a method reports
        besides its map. The gradient and perturbation methods (:mod:`relevance.attribution`): ``"attributions"``
        (B, ...) captum's attributions at the input site, ``"feature_mask"`` the feature of each position,
        ``"stream"``, ``"site"``, ``"options"`` (every option's value), and for ``integrated_gradients``
        ``"convergence_delta"`` (B,): the sum of the attributions minus (score(input) - score(baseline)).
    """

    method: str
    maps: dict[str, ImageMap | TextMap]
    output: Tensor
    scores: Tensor
    target: Tensor | None
    start_layers: dict[str, int]
    info: ModelInfo
    matrices: dict[str, Tensor] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------------------- access
    @property
    def relevance(self) -> Tensor:
        """The raw map of the first stream: (B, h, w) for images (or (B, H, W) pixels), (B, L) for texts."""
        return next(iter(self.maps.values())).values

    @property
    def image_relevance(self) -> Tensor:
        """(B, h, w) (or (B, H, W) pixels): the image stream's raw map."""
        return self._map("image").values

    @property
    def text_relevance(self) -> Tensor:
        """(B, L): the text stream's raw values, zero on padding."""
        return self._map("text").values

    @property
    def start_layer(self) -> int:
        """The first stream's start layer."""
        return next(iter(self.start_layers.values()), 0)

    @property
    def logits(self) -> Tensor:
        return self.output

    @property
    def class_names(self) -> list[str] | None:
        return self.info.class_names

    @property
    def multi_label(self) -> bool:
        return self.info.multi_label

    @property
    def probabilities(self) -> Tensor:
        """(B, C) class probabilities: softmax, or one sigmoid per class for multi-label models."""
        if self.output.dim() != 2:
            raise ValueError("this model's output holds no classes")
        return class_probabilities(self.output, self.info.multi_label)

    def _map(self, stream: str):
        if stream not in self.maps:
            raise KeyError(f"this explanation has no {stream!r} map (it has {', '.join(self.maps)})")
        return self.maps[stream]

    @property
    def pixels(self) -> Tensor:
        """(B, C, H, W) the image stream's model input."""
        return self._map("image").inputs.pixels

    @property
    def originals(self) -> list[np.ndarray] | None:
        """The images as given (uint8 RGB), when raw images were passed."""
        return self._map("image").inputs.originals

    @property
    def geometries(self) -> list[Any] | None:
        """Where the model input lies in each original image (:class:`relevance.images.CropGeometry`)."""
        return self._map("image").inputs.geometries

    @property
    def tokens(self) -> list[list[str]]:
        """Per sample, the text stream's token strings (padding excluded)."""
        text = self._map("text")
        return [text.tokens(i) for i in range(len(text.values))]

    def heatmaps(self, size: tuple[int, int] | None = None) -> Tensor:
        """(B, H, W) image maps in [0, 1] (see :meth:`ImageMap.heatmaps`)."""
        return self._map("image").heatmaps(size)

    def overlay(self, index: int = 0, colormap: str | None = None, alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB overlay of sample ``index``'s image map on its original image (see :meth:`ImageMap.overlay`)."""
        return self._map("image").overlay(index, colormap=colormap, alpha=alpha)

    def html(self, index: int = 0, **options: Any) -> str:
        """Sample ``index``'s token heatmap as self-contained HTML (see :meth:`TextMap.html`)."""
        return self._map("text").html(index, **options)

    def png(self, index: int = 0, **options: Any) -> np.ndarray:
        """Sample ``index``'s token heatmap (text) or overlay (image) as a uint8 RGB image."""
        if "text" in self.maps:
            return self.maps["text"].png(index, **options)
        return self.overlay(index)

    def class_name(self, index: int = 0) -> str:
        """Name of sample ``index``'s explained class (its number when the model has no names)."""
        if self.target is None:
            return ""
        target = int(self.target[index])
        return self.info.class_names[target] if self.info.class_names else str(target)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    # ---------------------------------------------------------------------------------------- display
    def _caption(self, index: int) -> str:
        parts = [self.method]
        if self.target is not None:
            parts.append(f"class {self.class_name(index)}")
        parts.append(f"score {float(self.scores[index]):.4g}")
        return " · ".join(parts)

    def _repr_html_(self) -> str:
        """Every sample: its overlay as an inline PNG and its token heatmap; no JavaScript."""
        blocks = []
        for index in range(min(len(self), 16)):
            parts = [f"<div style='font:12px sans-serif;margin:4px 0'>{html.escape(self._caption(index))}</div>"]
            if "image" in self.maps:
                encoded = base64.b64encode(_png_bytes(self.overlay(index))).decode("ascii")
                parts.append(f"<img src='data:image/png;base64,{encoded}' style='max-height:256px'>")
            if "text" in self.maps:
                parts.append(self.html(index))
            blocks.append("<div style='margin-bottom:12px'>" + "".join(parts) + "</div>")
        if len(self) > 16:
            blocks.append(f"<div>… {len(self) - 16} more</div>")
        return "<div>" + "".join(blocks) + "</div>"

    def _repr_png_(self) -> bytes:
        """The first sample as a PNG (its overlay, or its token heatmap)."""
        return _png_bytes(self.png(0) if "image" not in self.maps else self.overlay(0))
