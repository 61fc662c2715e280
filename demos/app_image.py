"""The "Image classification" tab: explain an image classification with a relevance overlay.

:class:`ImageClassificationHandlers` holds the event handlers. They are plain functions of their
inputs and of the read-only :class:`~demos.app_models.ModelCatalog` (no per-request state is kept
anywhere), so concurrent users get their own results. They receive the *raw* component values
(``preprocess=False``): the image arrives as the uploaded file's record and is decoded by the
engine's own reader, so a bad file yields a clear message instead of a decoder's stack trace.
:func:`image_classification_tab` lays the tab out and wires the events.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np

from demos import app_engine
from demos.app_common import (
    DemoError,
    OverlayFiles,
    class_name_placeholder,
    class_names_of,
    display_names,
    domain_notice,
    match_class_name,
    safe_filename_part,
    unavailable_note,
    uploaded_file,
    user_facing_errors,
)
from demos.app_engine import Prediction
from demos.app_models import ModelCatalog

__all__ = [
    "CAVEAT",
    "DEFAULT_METHOD",
    "IMAGE_TAB_CSS",
    "ImageClassificationHandlers",
    "METHOD_CAPTIONS",
    "METHOD_LABELS",
    "ModelHints",
    "OVERLAY_HEIGHT",
    "TOP_K",
    "image_classification_tab",
    "method_caption",
]

#: How many predictions the class dropdown and the label show.
TOP_K = 5
DEFAULT_METHOD = "transformer_attribution"
DEFAULT_OPACITY = 0.5
DEFAULT_COLORMAP = "jet"
#: Display height of the overlay and its colour bar, in CSS pixels.
OVERLAY_HEIGHT = 480
#: Width of the colour bar image, in pixels (its height is OVERLAY_HEIGHT).
COLORBAR_WIDTH = 88

#: Page CSS (``launch(css=...)``): show the overlay and its colour bar as large as their boxes
#: allow, keeping the aspect ratio. Gradio's default ("scale-down") leaves small images tiny.
IMAGE_TAB_CSS = "#overlay-output img, #overlay-colorbar img { object-fit: contain; }"

#: Readable names of the engine's methods (unknown methods show their own name).
METHOD_LABELS: dict[str, str] = {
    "attention": "Raw attention (last block)",
    "rollout": "Attention rollout (Abnar & Zuidema 2020)",
    "attention_gradcam": "Grad-CAM on attention",
    "lrp": "Full LRP (pixel level)",
    "partial_lrp": "Partial LRP (Voita et al. 2019)",
    "transformer_attribution": "Transformer attribution (Chefer et al., CVPR 2021)",
    "gradient_rollout": "Gradient rollout (Chefer et al., ICCV 2021)",
    "attnlrp": "AttnLRP (Achtibat et al., ICML 2024)",
    "cp_lrp": "CP-LRP (Ali et al., ICML 2022)",
    "legrad": "LeGrad (Bousselham et al. 2024)",
    "saliency": "Saliency, |gradient| (Simonyan et al. 2014)",
    "input_x_gradient": "Input x gradient (Shrikumar et al. 2016)",
}

#: Short names for the captions of the method comparison.
METHOD_CAPTIONS: dict[str, str] = {
    "attention": "Raw attention",
    "rollout": "Attention rollout",
    "attention_gradcam": "Attention Grad-CAM",
    "lrp": "Full LRP",
    "partial_lrp": "Partial LRP",
    "transformer_attribution": "Transformer attribution",
    "gradient_rollout": "Gradient rollout",
    "attnlrp": "AttnLRP",
    "cp_lrp": "CP-LRP",
    "legrad": "LeGrad",
    "saliency": "Saliency",
    "input_x_gradient": "Input x gradient",
}

#: Appended to the caption of a signed method's overlay in the comparison.
SIGNED_NOTE = " (signed: blue \u2212, red +)"

CAVEAT = (
    "Relevance maps are *estimates* of which pixels drove the model's score for the chosen class, "
    "not ground truth; methods can disagree, so compare them before trusting one."
)


# ------------------------------------------------------------------------------------ handlers


def method_caption(method: str) -> str:
    """The caption of ``method``'s overlay in the comparison; signed methods say how to read them."""
    return METHOD_CAPTIONS.get(method, method) + (SIGNED_NOTE if app_engine.is_signed(method) else "")


class ImageClassificationHandlers:
    """Event handlers of the image classification tab, bound to a catalog of loaded models."""

    def __init__(self, catalog: ModelCatalog, files: OverlayFiles | None = None) -> None:
        self.catalog = catalog
        self.files = files or OverlayFiles()
        self.methods = app_engine.method_names()
        self.colormaps = app_engine.colormap_names()
        self.default_colormap = DEFAULT_COLORMAP if DEFAULT_COLORMAP in self.colormaps else self.colormaps[0]

    # ---- validation of raw inputs

    def _method(self, method: Any) -> str:
        if method not in self.methods:
            raise DemoError(f"Unknown method {str(method)[:80]!r}. Choose one of: {', '.join(self.methods)}.")
        return str(method)

    def _colormap(self, colormap: Any) -> str:
        if colormap is None or colormap == "":
            return self.default_colormap
        if colormap not in self.colormaps:
            raise DemoError(
                f"Unknown colour map {str(colormap)[:80]!r}. Choose one of: {', '.join(self.colormaps)}."
            )
        return str(colormap)

    @staticmethod
    def _start_layer(model: Any, value: Any) -> int:
        depth = app_engine.num_blocks(model)
        try:
            layer = int(round(float(value if value is not None else 0)))
        except (TypeError, ValueError):
            raise DemoError(f"Start layer must be a number between 0 and {depth - 1}.") from None
        if not 0 <= layer < depth:
            raise DemoError(f"Start layer must be between 0 and {depth - 1} for this model, got {layer}.")
        return layer

    @staticmethod
    def _opacity(value: Any) -> float:
        try:
            opacity = float(value if value is not None else DEFAULT_OPACITY)
        except (TypeError, ValueError):
            raise DemoError("Opacity must be a number between 0 and 1.") from None
        if not 0.0 <= opacity <= 1.0:
            raise DemoError(f"Opacity must be between 0 and 1, got {opacity:g}.")
        return opacity

    @staticmethod
    def _target(model: Any, class_choice: Any, class_name: Any) -> int | None:
        """The class to explain: the typed name if any, else the dropdown choice, else None (top class)."""
        names = class_names_of(model)
        if isinstance(class_name, str) and class_name.strip():
            return match_class_name(names, class_name)
        if class_choice is None or class_choice == "" or class_choice == []:
            return None
        try:
            index = int(class_choice)
        except (TypeError, ValueError):
            raise DemoError("Pick a class from the list, or type its name.") from None
        if not 0 <= index < len(names):
            raise DemoError("The chosen class does not belong to this model; pick one from the list again.")
        return index

    def _load(self, image_value: Any, model_label: Any) -> tuple[Any, np.ndarray, str]:
        model = self.catalog.get(model_label)
        path, display_name = uploaded_file(image_value)
        image = app_engine.read_image(path, display_name=display_name)
        return model, image, display_name

    # ---- outputs

    @staticmethod
    def _top_k(model: Any, prediction: Prediction) -> tuple[dict[str, float], list[tuple[str, int]]]:
        """Top-k as a label dict {name: probability} and as dropdown choices (text, class index)."""
        names = display_names(class_names_of(model))
        top = prediction.top(min(TOP_K, len(names)))
        label = {names[i]: p for i, p in top}
        choices = [(f"{names[i]} ({p:.1%})", i) for i, p in top]
        return label, choices

    # ---- events

    @staticmethod
    def clear_results(image_value: Any) -> tuple[Any, ...]:
        """New or removed image: empty every result of the previous one (run before :meth:`predict`).

        Returns updates for the class list, top-k, status, overlay, colour bar, comparison gallery
        and download button.
        """
        status = "Upload an image or pick an example." if image_value is None else "Reading the image…"
        return gr.update(choices=[], value=None), None, status, None, None, [], None

    @user_facing_errors
    def predict(self, image_value: Any, model_label: Any) -> tuple[Any, Any, str]:
        """New image: fill the class list with the top-k predictions (top one selected)."""
        if image_value is None:
            return gr.update(choices=[], value=None), None, "Upload an image or pick an example."
        model, image, display_name = self._load(image_value, model_label)
        prediction = app_engine.predict(model, image)
        label, choices = self._top_k(model, prediction)
        best_name, best_probability = next(iter(label.items()))
        status = f"Top prediction of {html.escape(str(model_label))}: **{best_name}** ({best_probability:.1%}). "
        if app_engine.is_multi_label(model):
            names = display_names(class_names_of(model))
            present = [names[i] for i, p in enumerate(prediction.probabilities) if p > 0.5]
            status += f"Each class is scored on its own; present (over 50%): {', '.join(present) or 'none'}. "
        status += "Choose a method and a class, then press **Explain**."
        return gr.update(choices=choices, value=choices[0][1]), label, status

    @user_facing_errors
    def model_changed(self, model_label: Any, image_value: Any, start_layer: Any) -> tuple[Any, Any, Any, str]:
        """New model: resize the start-layer slider and redo the predictions for its classes."""
        model = self.catalog.get(model_label)
        depth = app_engine.num_blocks(model)
        try:
            layer = min(max(int(round(float(start_layer or 0))), 0), depth - 1)
        except (TypeError, ValueError):
            layer = 0
        slider = gr.update(minimum=0, maximum=depth - 1, value=layer)
        cleared = gr.update(choices=[], value=None)
        if image_value is None:
            return slider, cleared, None, f"Model: {html.escape(str(model_label))}."
        try:
            classes, label, status = self.predict(image_value, model_label)
        except gr.Error as error:  # e.g. the current file is no image: still switch the model
            return slider, cleared, None, error.message
        return slider, classes, label, status

    @user_facing_errors
    def explain(
        self,
        image_value: Any,
        model_label: Any,
        method: Any,
        class_choice: Any,
        class_name: Any,
        start_layer: Any,
        opacity: Any,
        colormap: Any = DEFAULT_COLORMAP,
    ) -> tuple[np.ndarray, dict[str, float], str, str, np.ndarray]:
        """Explain the image for the chosen class.

        Returns the overlay, top-k, the overlay's PNG path, the status and the overlay's colour bar
        (signed methods: a diverging map centred on 0, see :func:`app_engine.overlay_colormap`).
        """
        model, image, display_name = self._load(image_value, model_label)
        method = self._method(method)
        target = self._target(model, class_choice, class_name)
        layer = self._start_layer(model, start_layer)
        alpha = self._opacity(opacity)
        colours = self._colormap(colormap)
        started = time.perf_counter()
        overlay, prediction, explained = app_engine.explain_overlay(
            model, image, method=method, target=target, start_layer=layer, opacity=alpha, colormap=colours
        )
        elapsed = time.perf_counter() - started
        names = display_names(class_names_of(model))
        label, _ = self._top_k(model, prediction)
        filename = (
            f"{safe_filename_part(Path(display_name).stem)}_{method}_{safe_filename_part(names[explained])}.png"
        )
        download = self.files.write(overlay, filename)
        status = (
            f"**{METHOD_LABELS.get(method, method)}** for class **{names[explained]}** "
            f"(p = {float(prediction.probabilities[explained]):.1%}), start layer {layer}, "
            f"{image.shape[1]}x{image.shape[0]} px, {elapsed:.2f} s."
        )
        colour_bar = app_engine.colour_scale(method, colours, height=OVERLAY_HEIGHT, width=COLORBAR_WIDTH)
        return overlay, label, download, status, colour_bar

    @user_facing_errors
    def compare(
        self,
        image_value: Any,
        model_label: Any,
        class_choice: Any,
        class_name: Any,
        start_layer: Any,
        opacity: Any,
        colormap: Any = DEFAULT_COLORMAP,
    ) -> tuple[list[tuple[np.ndarray, str]], str]:
        """Every method side by side for the same image, class, start layer and opacity (signed
        methods with a diverging colour map centred on 0, and a caption that says so)."""
        model, image, _ = self._load(image_value, model_label)
        target = self._target(model, class_choice, class_name)
        layer = self._start_layer(model, start_layer)
        alpha = self._opacity(opacity)
        colours = self._colormap(colormap)
        if target is None:  # pin the class so that every method explains the same one
            target = app_engine.predict(model, image).top(1)[0][0]
        started = time.perf_counter()
        gallery = []
        for method in self.methods:
            overlay, _, _ = app_engine.explain_overlay(
                model, image, method=method, target=target, start_layer=layer, opacity=alpha, colormap=colours
            )
            gallery.append((overlay, method_caption(method)))
        elapsed = time.perf_counter() - started
        names = display_names(class_names_of(model))
        status = (
            f"Compared {len(gallery)} methods for class **{names[target]}**, start layer {layer}, "
            f"{elapsed:.2f} s."
        )
        return gallery, status


# ------------------------------------------------------------------------------------ hints


class ModelHints:
    """Handlers of the texts that follow the chosen model and image: the class box's placeholder (a name and
    an index of the model's own classes) and the domain notice (a photo given to the shapes model)."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self.catalog = catalog

    def class_hint(self, model_label: Any) -> Any:
        """New model: the class box suggests one of its own class names and an index."""
        try:
            model = self.catalog.get(model_label)
        except ValueError:
            return gr.update()
        return gr.update(placeholder=class_name_placeholder(class_names_of(model)))

    def domain_notice(self, image_value: Any, model_label: Any) -> str:
        """A visible warning when the image lies outside what the model knows; empty otherwise."""
        try:
            model = self.catalog.get(model_label)
            path, display_name = uploaded_file(image_value)
            image = app_engine.read_image(path, display_name=display_name)
        except (ValueError, OSError):  # no image yet, or a bad one: the other handlers say so
            return ""
        warning = app_engine.domain_warning(model, image)
        return domain_notice([] if warning is None else [warning])


# ------------------------------------------------------------------------------------ layout


def image_classification_tab(
    catalog: ModelCatalog,
    *,
    shapes_examples: Sequence[str] = (),
    photo_examples: Sequence[str] = (),
    concurrency_limit: int = 2,
    handlers: ImageClassificationHandlers | None = None,
) -> ImageClassificationHandlers:
    """Lay out the "Image classification" tab inside the current ``gr.Blocks`` and wire its events."""
    handlers = handlers or ImageClassificationHandlers(catalog)
    default_model = catalog.get(catalog.default_label)
    depth = app_engine.num_blocks(default_model)
    method_choices = [(METHOD_LABELS.get(m, m), m) for m in handlers.methods]
    default_method = DEFAULT_METHOD if DEFAULT_METHOD in handlers.methods else handlers.methods[0]

    with gr.Tab("Image classification", id="image-classification"):
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    label="Image",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    height=320,
                    elem_id="image-input",
                )
                example_sets = [
                    gr.Examples(examples=[[p] for p in files], inputs=[image], label=label, elem_id=elem_id)
                    for files, label, elem_id in (
                        (shapes_examples, "Shapes scenes (for the embedded shapes model)", "shapes-examples"),
                        (photo_examples, "Photos (for the ImageNet models)", "photo-examples"),
                    )
                    if files
                ]
                model = gr.Dropdown(
                    choices=catalog.labels,
                    value=catalog.default_label,
                    label="Model",
                    filterable=False,
                    elem_id="model-select",
                )
                gr.Markdown(unavailable_note(catalog), elem_id="unavailable-models")
                method = gr.Dropdown(
                    choices=method_choices,
                    value=default_method,
                    label="Method",
                    filterable=False,
                    elem_id="method-select",
                )
                with gr.Row():
                    class_select = gr.Dropdown(
                        choices=[],
                        value=None,
                        label=f"Class (top {TOP_K} predictions)",
                        info="Empty: the top prediction.",
                        filterable=False,
                        elem_id="class-select",
                    )
                    class_name = gr.Textbox(
                        label="…or type any class name",
                        info="Overrides the list when filled.",
                        placeholder=class_name_placeholder(class_names_of(default_model)),
                        max_length=200,
                        elem_id="class-name",
                    )
                start_layer = gr.Slider(
                    minimum=0,
                    maximum=depth - 1,
                    value=0,
                    step=1,
                    label="Start layer",
                    info="First block the rollout-style methods aggregate from.",
                    elem_id="start-layer",
                )
                with gr.Row():
                    opacity = gr.Slider(
                        minimum=0.0, maximum=1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity",
                        elem_id="opacity",
                    )
                    colormap = gr.Dropdown(
                        choices=handlers.colormaps,
                        value=handlers.default_colormap,
                        label="Colour map",
                        filterable=False,
                        elem_id="colormap-select",
                    )
                with gr.Row():
                    explain_button = gr.Button("Explain", variant="primary", elem_id="explain-button")
                    compare_button = gr.Button("Compare methods", elem_id="compare-button")
            with gr.Column(scale=1):
                with gr.Row(equal_height=True):
                    overlay = gr.Image(
                        label="Relevance overlay",
                        type="numpy",
                        format="png",
                        interactive=False,
                        buttons=["fullscreen"],
                        height=OVERLAY_HEIGHT,
                        scale=1,
                        elem_id="overlay-output",
                    )
                    colour_bar = gr.Image(
                        label="Colour scale",
                        show_label=False,
                        type="numpy",
                        format="png",
                        interactive=False,
                        buttons=[],
                        height=OVERLAY_HEIGHT,
                        scale=0,
                        min_width=COLORBAR_WIDTH + 16,
                        elem_id="overlay-colorbar",
                    )
                download = gr.DownloadButton("Download overlay (PNG)", elem_id="download-button")
                top_k = gr.Label(label="Top predictions", num_top_classes=TOP_K, elem_id="top-k")
                status = gr.Markdown("Upload an image or pick an example.", elem_id="status")
                domain_notice = gr.Markdown("", elem_id="domain-notice")
        gallery = gr.Gallery(
            label="Compare methods (same image, class and start layer)",
            format="png",
            columns=4,
            height=640,
            object_fit="contain",
            preview=False,
            elem_id="compare-gallery",
        )
        gr.Markdown(CAVEAT, elem_id="caveat")

    common = dict(preprocess=False, concurrency_id="explain", concurrency_limit=concurrency_limit)
    # "upload" rather than "change": change fires twice for a file the browser cannot show.
    # A new (or removed) image first empties the previous image's results, then is predicted.
    clear = dict(
        fn=handlers.clear_results,
        inputs=[image],
        outputs=[class_select, top_k, status, overlay, colour_bar, gallery, download],
        preprocess=False,
        queue=False,
        api_visibility="private",
    )
    predict = dict(fn=handlers.predict, inputs=[image, model], outputs=[class_select, top_k, status], **common)
    image.upload(**clear).then(api_name="predict", **predict)
    image.clear(**clear).then(api_visibility="private", **predict)
    for examples in example_sets:
        examples.load_input_event.then(**clear).then(api_visibility="private", **predict)
    model.change(
        handlers.model_changed,
        inputs=[model, image, start_layer],
        outputs=[start_layer, class_select, top_k, status],
        api_visibility="private",
        **common,
    )
    explain_button.click(
        handlers.explain,
        inputs=[image, model, method, class_select, class_name, start_layer, opacity, colormap],
        outputs=[overlay, top_k, download, status, colour_bar],
        api_name="explain",
        **common,
    )
    compare_button.click(
        handlers.compare,
        inputs=[image, model, class_select, class_name, start_layer, opacity, colormap],
        outputs=[gallery, status],
        api_name="compare",
        **common,
    )
    _wire_model_hints(catalog, image, model, class_name, domain_notice, example_sets)
    return handlers


def _wire_model_hints(catalog: ModelCatalog, image: Any, model: Any, class_name: Any, domain_notice: Any,
                      example_sets: Sequence[Any]) -> None:
    """The texts that follow the chosen model and image: the class box's placeholder, the domain notice."""
    hints = ModelHints(catalog)
    model.change(hints.class_hint, inputs=[model], outputs=[class_name], api_visibility="private")
    notice = dict(fn=hints.domain_notice, inputs=[image, model], outputs=[domain_notice], preprocess=False,
                  api_visibility="private")
    image.upload(**notice)
    image.clear(**notice)
    model.change(**notice)
    for examples in example_sets:
        examples.load_input_event.then(**notice)
