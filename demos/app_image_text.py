"""The "Image-text" tab: explain why a CLIP model matches an image with a caption.

Pick an image (upload one, or a shapes scene of the examples, whose captions name its objects and one absent
object) and either type **captions**, one per line, or go **zero-shot**: comma-separated labels and a template
("a photo of a {}") that the model ranks by similarity (the ranking is shown: label, probability), the best prompt
or a chosen one explained. Per caption the tab shows the image overlay (:meth:`relevance.ImageMap.overlay`, the
engine's own rendering, a PNG), the caption's token heatmap (:meth:`relevance.TextMap.html`) and the similarity
logit of the pair; "Compare methods" shows every image-text method for one caption. An image outside the model's
domain (a photo given to the embedded shapes CLIP) shows the engine's warning (``Explanation.warnings``).

:class:`ImageTextHandlers` holds the event handlers: plain functions of their inputs and of the read-only
:class:`~demos.app_models.ModelCatalog` of image-text models (no per-request state), so concurrent users get their
own results. Models come from a fixed catalog loaded before the server starts (:func:`load_image_text_catalog`:
the embedded ``shapes-clip`` always, a hub CLIP only when it is already in the local cache); a web user picks a
label, never a name or path. Images are read as on the image tab (:func:`demos.app_engine.read_image`: the upload
size and pixel caps, greyscale and alpha converted to RGB); captions are capped in number
(:data:`MAX_CAPTIONS`), characters (:data:`MAX_CAPTION_CHARS`) and the model's context (tokens).
:func:`image_text_tab` lays the tab out and wires the events.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
import numpy as np
import torch

from demos import app_engine
from demos.app_common import DemoError, domain_notice, unavailable_note, uploaded_file, user_facing_errors
from demos.app_models import ModelCatalog, UnknownModelError, load_cached_catalog

__all__ = [
    "CAPTIONS_MODE",
    "DEFAULT_LABELS",
    "DEFAULT_TEMPLATE",
    "EMBEDDED_IMAGE_TEXT_LABEL",
    "HUB_IMAGE_TEXT_MODELS",
    "IMAGE_TEXT_TAB_CSS",
    "ImageTextHandlers",
    "MAX_CAPTIONS",
    "MAX_CAPTION_CHARS",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_TEMPLATE_CHARS",
    "METHOD_DEFAULT_START",
    "MODES",
    "PairResult",
    "ZERO_SHOT_MODE",
    "example_captions",
    "explain_pair",
    "image_text_methods",
    "image_text_tab",
    "is_image_text_model",
    "load_image_text_catalog",
    "method_label",
    "start_layer_choices",
]


#: Dropdown label of the embedded image-text model.
EMBEDDED_IMAGE_TEXT_LABEL = "Shapes CLIP (embedded, offline)"
#: Hub CLIPs the tab offers when they are already in the local Hugging Face cache (never downloaded).
HUB_IMAGE_TEXT_MODELS: dict[str, str] = {
    "CLIP ViT-B/16 (OpenAI, ICCV 2021 notebook)": "openai/clip-vit-base-patch16",
    "CLIP ViT-B/32 (OpenAI)": "openai/clip-vit-base-patch32",
}
NOT_CACHED_REASON = "not in the local Hugging Face cache (the demo never downloads image-text models)"

#: Most captions (or zero-shot labels' prompts explained at once) per request.
MAX_CAPTIONS = 8
#: Longest caption, in characters (the model's own token limit applies too).
MAX_CAPTION_CHARS = 300
#: Most zero-shot labels, and the longest label and template, in characters.
MAX_LABELS = 24
MAX_LABEL_CHARS = 60
MAX_TEMPLATE_CHARS = 200

CAPTIONS_MODE = "Captions (one per line)"
ZERO_SHOT_MODE = "Zero-shot labels"
MODES = (CAPTIONS_MODE, ZERO_SHOT_MODE)
DEFAULT_METHOD = "gradient_rollout"
#: The start-layer choice that keeps each method's own default (gradient rollout: the last block, as the ICCV 2021
#: CLIP notebook; LeGrad: the last two blocks; the others: every block).
METHOD_DEFAULT_START = "method default"
#: The shapes world's six shapes, and a template the shapes CLIP knows every word of (as do hub CLIPs).
DEFAULT_LABELS = "circle, square, triangle, cross, star, ring"
DEFAULT_TEMPLATE = "a photo of a {}"

#: Page CSS (``launch(css=...)``): readable heatmap rows, large overlays.
IMAGE_TEXT_TAB_CSS = ("#it-overlays img, #it-compare-gallery img { object-fit: contain; image-rendering: auto; } "
                      "#it-heatmaps .it-row, #it-compare .it-row { margin: 0 0 12px; } "
                      "#it-heatmaps .it-row-title, #it-compare .it-row-title { font-weight: 600; font-size: 14px; "
                      "margin: 0 0 4px; } "
                      "#it-compare .it-compare-grid { display: grid; gap: 10px 18px; "
                      "grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); }")
CAVEAT = ("Each map explains the *similarity* of the image and one caption (CLIP's logit, the cosine of the two "
          "embeddings times the model's scale), not a class: a caption naming an absent object still gets a map. "
          "Maps are estimates; compare methods before trusting one.")


# ------------------------------------------------------------------------------------ models and methods


def is_image_text_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` scores image-text pairs (an ``"image"`` and a ``"text"`` stream, pair logits out)."""
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    return {"image", "text"} <= set(adapter.depths()) and adapter.info.output == "pair_logits"


def image_text_methods() -> list[str]:
    """The methods of the tab, in the engine's order: those computed from the recorded pass (attention, rollout, the
    LRP family, gradient rollout, LeGrad...). The captum methods (saliency, integrated gradients, LIME...) also
    explain image-text pairs, from Python and the CLI, but cost tens to hundreds of passes per tower and caption,
    too slow for a shared web page, and are left out."""
    import relevance

    return [m for m in relevance.list_methods() if relevance.get_method(m).attribution is None]


def method_label(method: str) -> str:
    """A method's name for the page: its title, and how to read it when it is signed or blind to the caption (its
    image map is the same for every caption: the image tower never sees the text)."""
    import relevance

    spec = relevance.get_method(method)
    notes = [note for note, on in (("signed: blue \u2212, red +", spec.signed),
                                   ("same image map for every caption", not spec.class_specific)) if on]
    return spec.title + (f" ({'; '.join(notes)})" if notes else "")


def load_image_text_catalog(device: str | torch.device = "cpu", *, hub: Mapping[str, str] | None = None,
                            cached: Callable[[str], bool] | None = None) -> ModelCatalog:
    """The image-text models the tab serves, loaded once: the hub CLIPs already in the local cache (``cached``,
    default :func:`relevance.models.hub.cached_hf_repo`; nothing is downloaded), then the embedded shapes-clip."""
    from relevance.models.shapes_clip import load_shapes_clip

    return load_cached_catalog(HUB_IMAGE_TEXT_MODELS if hub is None else hub, modality="image-text", embedded_label=EMBEDDED_IMAGE_TEXT_LABEL,
                               load_embedded=lambda: load_shapes_clip(device=device), device=device, cached=cached,
                               not_cached_reason=NOT_CACHED_REASON)


def example_captions(path: str | Path) -> list[str]:
    """Captions for a shapes example named ``scene-<seed>_<colour>-<shape>_...png``: one per object it holds, then
    one naming an object it does not hold (a red circle, or a blue star when the scene has a red circle), each as
    the shapes world words it (:func:`relevance.data.shapes_captions.object_caption`: "a photo of an orange cross")."""
    from relevance.data.shapes import SHAPE_CLASSES
    from relevance.data.shapes_captions import object_caption

    objects = [tuple(part.split("-", 1)) for part in Path(path).stem.split("_")[1:]]
    absent = ("red", "circle") if ("red", "circle") not in objects else ("blue", "star")
    return [object_caption(colour, SHAPE_CLASSES.index(shape)) for colour, shape in [*objects, absent]]


# ------------------------------------------------------------------------------------ engine calls


@dataclass(frozen=True)
class PairResult:
    """One explained image-caption pair: the overlay, the caption's heatmap, the similarity logit, the warnings."""

    overlay: np.ndarray
    fragment: str
    logit: float
    warnings: tuple[str, ...]


def explain_pair(model: torch.nn.Module, image: np.ndarray, caption: str, *, method: str,
                 start_layers: Mapping[str, int] | None = None) -> PairResult:
    """Explain the similarity of ``image`` (uint8 RGB) and ``caption`` with ``method``.

    Parameters
    ----------
    model:
        An image-text model of the catalog.
    image:
        The image, already read and converted to RGB.
    caption:
        One caption, already checked (not empty, within the model's context).
    method:
        As :func:`relevance.explain`.
    start_layers:
        The first block per tower (``{"image": 2, "text": 0}``; a tower left out keeps the method's default), for
        the methods that chain blocks; the others ignore it.

    Returns
    -------
    PairResult
        The overlay on the image (:meth:`relevance.ImageMap.overlay`), the caption's token heatmap without the
        start and end tokens (:meth:`relevance.TextMap.html`), the pair's similarity logit and the engine's warnings.
    """
    import relevance

    explanation = relevance.explain(model, image, texts=[caption], method=method, start_layer=dict(start_layers or {}))
    return PairResult(overlay=explanation.maps["image"].overlay(0),
                      fragment=str(explanation.maps["text"].html(0, show_special=False)),
                      logit=float(explanation.scores[0]), warnings=tuple(explanation.warnings))


def start_layer_choices(depth: int) -> list[Any]:
    """A start-layer menu: :data:`METHOD_DEFAULT_START`, then the blocks ``0 .. depth - 1``."""
    return [METHOD_DEFAULT_START, *range(depth)]


def _default_depths(catalog: ModelCatalog) -> dict[str, int]:
    """The towers' depths of the catalog's default model (the menus follow the model the user picks)."""
    import relevance

    return relevance.adapter_for(catalog.get(catalog.default_label)).depths()


# ------------------------------------------------------------------------------------ handlers


@dataclass(frozen=True)
class _Request:
    """The checked inputs of one request: the captions to explain and, in zero-shot mode, the ranking."""

    captions: list[str]
    ranking: dict[str, float] | None = None
    explained: str = ""


class ImageTextHandlers:
    """Event handlers of the image-text tab, bound to a catalog of loaded image-text models."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self.catalog = catalog
        self.methods = image_text_methods()

    # ---- validation of raw inputs

    def _model(self, label: Any) -> torch.nn.Module:
        model = self.catalog.get(label)
        if not is_image_text_model(model):
            raise UnknownModelError(f"{str(label)[:80]!r} is not an image-text model.")
        return model

    @staticmethod
    def _image(image_value: Any) -> np.ndarray:
        path, display_name = uploaded_file(image_value)
        return app_engine.read_image(path, display_name=display_name)

    def _method(self, method: Any) -> str:
        if method not in self.methods:
            raise DemoError(f"Unknown method {str(method)[:80]!r}. Choose one of: {', '.join(self.methods)}.")
        return str(method)

    @staticmethod
    def _start_layers(model: torch.nn.Module, image_start: Any, text_start: Any) -> dict[str, int]:
        """The chosen first block of each tower (towers left at :data:`METHOD_DEFAULT_START` are left out)."""
        import relevance

        chosen = {}
        for stream, value in (("image", image_start), ("text", text_start)):
            if value is None or value == METHOD_DEFAULT_START:
                continue
            depth = relevance.adapter_for(model).depths()[stream]
            try:
                layer = int(value)
            except (TypeError, ValueError):
                layer = -1
            if not 0 <= layer < depth or str(value).strip() != str(layer):
                raise DemoError(f"The {stream} start layer must be {METHOD_DEFAULT_START!r} or a block from 0 to "
                                f"{depth - 1}; got {str(value)[:20]!r}.")
            chosen[stream] = layer
        return chosen

    def start_layer_choices(self, model_label: Any) -> tuple[Any, Any]:
        """The start-layer menus of the chosen model: the method default, then each block of its tower."""
        import relevance

        try:
            depths = relevance.adapter_for(self.catalog.get(model_label)).depths()
        except Exception:  # an unknown label: the explain handler says so
            return gr.update(), gr.update()
        return tuple(gr.update(choices=start_layer_choices(depths[stream]), value=METHOD_DEFAULT_START)
                     for stream in ("image", "text"))

    @staticmethod
    def _check_text(model: torch.nn.Module, model_label: str, text: str, what: str) -> None:
        """``what`` (e.g. "Caption 2") must hold words the model knows and fit its context."""
        tokenizer, limit = model.tokenizer, model.config.text.context_length
        try:
            count = len(tokenizer.encode(text)) + 2  # with the start and end tokens
        except ValueError as error:  # a closed vocabulary: the words it does not know, and its vocabulary
            raise DemoError(f"{what}: {error}") from None
        if count > limit:
            raise DemoError(f"{what} has {count} tokens (start and end included) but {model_label} takes at most "
                            f"{limit}; shorten it.")

    def _captions(self, model: torch.nn.Module, model_label: str, value: Any) -> list[str]:
        if not isinstance(value, str) or not value.strip():
            raise DemoError("Type at least one caption (one per line), or pick an example.")
        lines = [line.strip() for line in value.strip("\n").split("\n")]
        if len(lines) > MAX_CAPTIONS:
            raise DemoError(f"Too many captions: {len(lines)}; the demo explains at most {MAX_CAPTIONS} at once.")
        for number, line in enumerate(lines, 1):
            if not line:
                raise DemoError(f"Caption {number} is empty: give each caption at least one word, one per line.")
            if len(line) > MAX_CAPTION_CHARS:
                raise DemoError(f"Caption {number} is too long for the demo: {len(line)} characters; the limit is "
                                f"{MAX_CAPTION_CHARS}.")
            self._check_text(model, model_label, line, f"Caption {number}")
        return lines

    def _zero_shot(self, model: torch.nn.Module, model_label: str, image: np.ndarray, labels: Any, template: Any,
                   choice: Any) -> _Request:
        from relevance.models.clip import zero_shot

        if not isinstance(labels, str) or not labels.strip():
            raise DemoError("Type the labels to rank, separated by commas (e.g. circle, square, star).")
        names = [name.strip() for name in labels.split(",")]
        if len(names) > MAX_LABELS:
            raise DemoError(f"Too many labels: {len(names)}; the demo ranks at most {MAX_LABELS}.")
        for number, name in enumerate(names, 1):
            if not name:
                raise DemoError(f"Label {number} is empty: separate the labels by single commas.")
            if len(name) > MAX_LABEL_CHARS:
                raise DemoError(f"Label {number} is too long: {len(name)} characters; the limit is "
                                f"{MAX_LABEL_CHARS}.")
        if len(set(names)) != len(names):
            raise DemoError("Each label may appear only once.")
        template = template.strip() if isinstance(template, str) else ""
        if len(template) > MAX_TEMPLATE_CHARS:
            raise DemoError(f"The template is too long: {len(template)} characters; the limit is "
                            f"{MAX_TEMPLATE_CHARS}.")
        rest = template.replace("{}", "", 1)
        if "{}" not in template or "{" in rest or "}" in rest:
            raise DemoError("The template needs exactly one {} where the label goes, e.g. a photo of a {}.")
        for number, name in enumerate(names, 1):
            self._check_text(model, model_label, template.format(name), f"The prompt of label {number}")
        result = zero_shot(model, image, names, template)
        if choice is None or (isinstance(choice, str) and not choice.strip()):
            index = int(result.best[0])
        else:
            wanted = str(choice).strip().lower()
            matches = [i for i, name in enumerate(names) if name.lower() == wanted]
            if not matches:
                raise DemoError(f"{str(choice)[:80]!r} is not one of the labels ({', '.join(names)}); leave the box "
                                "empty to explain the best one.")
            index = matches[0]
        probabilities = result.probabilities[0].tolist()
        ranking = {names[j]: float(probabilities[j]) for j in result.ranking[0].tolist()}
        return _Request(captions=[result.prompts[index]], ranking=ranking, explained=names[index])

    def _request(self, image_value: Any, mode: Any, captions: Any, labels: Any, template: Any, choice: Any,
                 model_label: Any) -> tuple[torch.nn.Module, np.ndarray, _Request]:
        model = self._model(model_label)
        if mode not in MODES:
            raise DemoError(f"Unknown mode {str(mode)[:80]!r}. Choose one of: {', '.join(MODES)}.")
        image = self._image(image_value)
        if mode == CAPTIONS_MODE:
            return model, image, _Request(captions=self._captions(model, str(model_label), captions))
        return model, image, self._zero_shot(model, str(model_label), image, labels, template, choice)

    # ---- events

    @staticmethod
    def show_mode(mode: Any) -> tuple[Any, Any, Any]:
        """The mode switch: show the captions box, or the zero-shot inputs and the ranking."""
        zero = mode == ZERO_SHOT_MODE
        return gr.update(visible=not zero), gr.update(visible=zero), gr.update(visible=zero)

    @staticmethod
    def captions_mode() -> str:
        """An example was picked: switch to the captions it brings."""
        return CAPTIONS_MODE

    @staticmethod
    def clear_results() -> tuple[Any, ...]:
        """A new image or model: empty the previous results (overlays, heatmaps, ranking, comparison, notice)."""
        return [], "", None, [], "", "", "Type captions or labels, choose a method, then press **Explain**."

    @user_facing_errors
    def explain(self, image_value: Any, mode: Any, captions: Any, labels: Any, template: Any, choice: Any,
                model_label: Any, method: Any, image_start: Any = METHOD_DEFAULT_START,
                text_start: Any = METHOD_DEFAULT_START) -> tuple[list[tuple[np.ndarray, str]], str, Any, str, str]:
        """Explain the image against each caption (or the zero-shot prompt), from the chosen start layers.

        Returns the overlays with their captions (a gallery), the token heatmaps (HTML), the zero-shot ranking
        (``None`` for captions), the status and the domain notice.
        """
        model, image, request = self._request(image_value, mode, captions, labels, template, choice, model_label)
        method = self._method(method)
        starts = self._start_layers(model, image_start, text_start)
        started = time.perf_counter()
        results = [explain_pair(model, image, caption, method=method, start_layers=starts)
                   for caption in request.captions]
        elapsed = time.perf_counter() - started
        gallery = [(r.overlay, f"{k}. {c} · logit {r.logit:.2f}")
                   for k, (c, r) in enumerate(zip(request.captions, results), 1)]
        rows = "".join(self._row(k, caption, result.logit, result.fragment)
                       for k, (caption, result) in enumerate(zip(request.captions, results), 1))
        if request.ranking is None:
            best = max(range(len(results)), key=lambda k: results[k].logit)
            status = (f"**{html.escape(method_label(method))}** for {len(results)} caption(s), {elapsed:.2f} s; the "
                      f"most similar: **{html.escape(request.captions[best])}** (logit {results[best].logit:.2f}).")
        else:
            status = (f"**{html.escape(method_label(method))}** for the prompt **{html.escape(request.captions[0])}** "
                      f"(label {html.escape(request.explained)}, p = {request.ranking[request.explained]:.1%} among "
                      f"{len(request.ranking)} labels; logit {results[0].logit:.2f}), {elapsed:.2f} s.")
        return gallery, rows, request.ranking, status, self._notice(results)

    @user_facing_errors
    def compare(self, image_value: Any, mode: Any, captions: Any, labels: Any, template: Any, choice: Any,
                model_label: Any, image_start: Any = METHOD_DEFAULT_START,
                text_start: Any = METHOD_DEFAULT_START) -> tuple[list[tuple[np.ndarray, str]], str, str]:
        """Every method for the first caption (zero-shot: the explained prompt): overlays and token heatmaps."""
        model, image, request = self._request(image_value, mode, captions, labels, template, choice, model_label)
        starts = self._start_layers(model, image_start, text_start)
        caption = request.captions[0]
        started = time.perf_counter()
        results = [explain_pair(model, image, caption, method=method, start_layers=starts)
                   for method in self.methods]
        gallery = [(result.overlay, method_label(method)) for method, result in zip(self.methods, results)]
        items = "".join(f'<div class="it-row" data-method="{method}"><div class="it-row-title">'
                        f"{html.escape(method_label(method))}</div>{result.fragment}</div>"
                        for method, result in zip(self.methods, results))
        title = f"Every method for &ldquo;{html.escape(caption)}&rdquo; (logit {results[0].logit:.2f})"
        status = (f"Compared {len(self.methods)} methods for **{html.escape(caption)}**, "
                  f"{time.perf_counter() - started:.2f} s.")
        return gallery, f'<div class="it-row-title">{title}</div><div class="it-compare-grid">{items}</div>', status

    # ---- outputs

    @staticmethod
    def _row(number: int, caption: str, logit: float, fragment: str) -> str:
        return (f'<div class="it-row" data-caption="{number}"><div class="it-row-title">{number}. '
                f"&ldquo;{html.escape(caption)}&rdquo; · similarity logit {logit:.2f}</div>{fragment}</div>")

    @staticmethod
    def _notice(results: Sequence[PairResult]) -> str:
        return domain_notice([w for result in results for w in result.warnings])


# ------------------------------------------------------------------------------------ layout


def image_text_tab(catalog: ModelCatalog, *, examples: Sequence[str] = (), concurrency_limit: int = 2,
                   handlers: ImageTextHandlers | None = None) -> ImageTextHandlers:
    """Lay out the "Image-text" tab inside the current ``gr.Blocks`` and wire its events.

    ``examples`` are shapes scenes (``scene-<seed>_<colour>-<shape>_...png``); each comes with its captions
    (:func:`example_captions`).
    """
    handlers = handlers or ImageTextHandlers(catalog)
    default_method = DEFAULT_METHOD if DEFAULT_METHOD in handlers.methods else handlers.methods[0]
    with gr.Tab("Image-text", id="image-text"):
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 height=280, elem_id="it-image")
                mode = gr.Radio(choices=list(MODES), value=CAPTIONS_MODE, label="Explain", elem_id="it-mode")
                captions = gr.Textbox(label=f"Captions (one per line, at most {MAX_CAPTIONS})", lines=4,
                                      max_length=MAX_CAPTIONS * (MAX_CAPTION_CHARS + 1), elem_id="it-captions",
                                      placeholder="a photo of a green star\na photo of a red circle")
                with gr.Group(visible=False) as zero_shot_inputs:
                    labels = gr.Textbox(label=f"Labels (comma-separated, at most {MAX_LABELS})", value=DEFAULT_LABELS,
                                        max_length=MAX_LABELS * (MAX_LABEL_CHARS + 2), elem_id="it-labels")
                    template = gr.Textbox(label="Template ({} is the label)", value=DEFAULT_TEMPLATE,
                                          max_length=MAX_TEMPLATE_CHARS, elem_id="it-template")
                    choice = gr.Textbox(label="Label to explain", placeholder="empty: the best one",
                                        max_length=MAX_LABEL_CHARS, elem_id="it-choice")
                example_set = None
                if examples:
                    example_set = gr.Examples(
                        examples=[[p, "\n".join(example_captions(p))] for p in examples], inputs=[image, captions],
                        label="Shapes scenes with captions (for the embedded shapes CLIP)",
                        elem_id="it-examples")
                model = gr.Dropdown(choices=catalog.labels, value=catalog.default_label, label="Model",
                                    filterable=False, elem_id="it-model")
                gr.Markdown(unavailable_note(catalog), elem_id="it-unavailable-models")
                method = gr.Dropdown(choices=[(method_label(m), m) for m in handlers.methods], value=default_method,
                                     label="Method", filterable=False, elem_id="it-method")
                depths = _default_depths(catalog)
                with gr.Row():
                    image_start = gr.Dropdown(choices=start_layer_choices(depths["image"]), value=METHOD_DEFAULT_START,
                                              label="Image start layer", filterable=False, elem_id="it-image-start")
                    text_start = gr.Dropdown(choices=start_layer_choices(depths["text"]), value=METHOD_DEFAULT_START,
                                             label="Text start layer", filterable=False, elem_id="it-text-start")
                with gr.Row():
                    explain_button = gr.Button("Explain", variant="primary", elem_id="it-explain")
                    compare_button = gr.Button("Compare methods", elem_id="it-compare-button")
            with gr.Column(scale=1):
                status = gr.Markdown("Upload an image or pick an example.", elem_id="it-status")
                notice = gr.Markdown("", elem_id="it-domain-notice")
                ranking = gr.Label(label="Zero-shot ranking", num_top_classes=MAX_LABELS, visible=False,
                                   elem_id="it-ranking")
                overlays = gr.Gallery(label="Image relevance per caption", format="png", columns=2, height=620,
                                      object_fit="contain", preview=False, elem_id="it-overlays")
                gr.Markdown("**Token relevance per caption**", elem_id="it-heatmaps-title")
                heatmaps = gr.HTML("", elem_id="it-heatmaps")
        compare_gallery = gr.Gallery(label="Compare methods (first caption, or the zero-shot prompt)", format="png",
                                     columns=5, height=480, object_fit="contain", preview=False,
                                     elem_id="it-compare-gallery")
        comparison = gr.HTML("", elem_id="it-compare")
        gr.Markdown(CAVEAT, elem_id="it-caveat")

    common = dict(preprocess=False, concurrency_id="explain", concurrency_limit=concurrency_limit)
    cleared = [overlays, heatmaps, ranking, compare_gallery, comparison, notice, status]
    clear = dict(fn=handlers.clear_results, outputs=cleared, queue=False, api_visibility="private")
    mode.change(handlers.show_mode, inputs=[mode], outputs=[captions, zero_shot_inputs, ranking], queue=False,
                api_visibility="private")
    image.upload(**clear)
    image.clear(**clear)
    model.change(**clear)
    model.change(handlers.start_layer_choices, inputs=[model], outputs=[image_start, text_start], queue=False,
                 api_visibility="private")
    if example_set is not None:
        # an example holds captions: show them (the captions mode), and empty the previous results
        example_set.load_input_event.then(handlers.captions_mode, outputs=[mode], queue=False,
                                          api_visibility="private").then(**clear)
    inputs = [image, mode, captions, labels, template, choice, model]
    explain_button.click(handlers.explain, inputs=[*inputs, method, image_start, text_start],
                         outputs=[overlays, heatmaps, ranking, status, notice], api_name="explain_image_text", **common)
    compare_button.click(handlers.compare, inputs=[*inputs, image_start, text_start],
                         outputs=[compare_gallery, comparison, status],
                         api_name="compare_image_text", **common)
    return handlers
