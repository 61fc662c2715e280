"""The "Text classification" tab: explain a text classifier's decision with highlighted tokens.

Type a text or pick a review of the reviews world (its known rationale is shown as a hint), choose a model, a
method and a class, and see the tokens highlighted (:meth:`relevance.TextMap.html`, the engine's own rendering:
unsigned maps white to red, signed maps blue-white-red centred on 0, a colour legend below), as word pieces or
whole words; compare every method for the same class; download the heatmap as a self-contained HTML page.

:class:`TextClassificationHandlers` holds the event handlers: plain functions of their inputs and of the
read-only :class:`~demos.app_models.ModelCatalog` of text models (no per-request state), so concurrent users get
their own results. Models come from a fixed catalog loaded before the server starts (:func:`load_text_catalog`:
the embedded ``reviews-bert`` always, a hub sentiment model only when it is already in the local cache); a web user
picks a label, never a name or path. Texts are capped at :data:`MAX_TEXT_CHARS` characters and at the model's
token limit. :func:`text_classification_tab` lays the tab out and wires the events.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
import torch

from demos.app_common import DemoError, OverlayFiles, class_names_of, display_names, domain_notice, \
    safe_filename_part, unavailable_note, user_facing_errors
from demos.app_models import ModelCatalog, UnknownModelError, load_cached_catalog

__all__ = [
    "EMBEDDED_TEXT_LABEL",
    "EXAMPLES",
    "GRANULARITIES",
    "HUB_TEXT_MODELS",
    "MAX_TEXT_CHARS",
    "TEXT_TAB_CSS",
    "TextClassificationHandlers",
    "TextExample",
    "heatmap_html",
    "load_text_catalog",
    "method_label",
    "text_classification_tab",
]


#: Dropdown label of the embedded text model.
EMBEDDED_TEXT_LABEL = "Reviews BERT (embedded, offline)"
#: Hub text classifiers the tab offers when they are already in the local Hugging Face cache (never downloaded).
HUB_TEXT_MODELS: dict[str, str] = {
    "BERT SST-2 (textattack, CVPR 2021 notebook)": "textattack/bert-base-uncased-SST-2",
    "DistilBERT SST-2": "distilbert-base-uncased-finetuned-sst-2-english",
}
NOT_CACHED_REASON = "not in the local Hugging Face cache (the demo never downloads text models)"
#: Longest text the demo accepts, in characters (the model's own token limit applies too).
MAX_TEXT_CHARS = 2000
DEFAULT_METHOD = "transformer_attribution"
#: The display switch: label -> whether whole words are shown.
GRANULARITIES: dict[str, bool] = {"Word pieces": False, "Whole words (max of the pieces)": True}
TOP_CLASS = "Top prediction"
#: Page CSS (``launch(css=...)``): keep the heatmaps readable and the comparison tidy.
TEXT_TAB_CSS = ("#text-heatmap { min-height: 64px; } "
                "#text-compare .text-compare-grid { display: grid; gap: 14px 18px; "
                "grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); } "
                "#text-compare .text-compare-title { font-weight: 600; font-size: 16px; margin: 4px 0 10px; } "
                "#text-compare .text-compare-caption { font-weight: 600; font-size: 14px; margin: 0 0 4px; }")
CAVEAT = ("Token relevance is an *estimate* of which tokens drove the model's score for the chosen class, not ground "
          "truth: compare methods, and the reviews' known rationales, before trusting one.")


@dataclass(frozen=True)
class TextExample:
    """A review of the reviews world with what decides its label.

    Attributes
    ----------
    text:
        The review.
    label:
        Its class name.
    rationale:
        Its rationale words, in order (the opinion phrase(s) that decide the label).
    kind:
        ``"plain"``, ``"negation"``, ``"contrast"`` or ``"negation+contrast"``.
    """

    text: str
    label: str
    rationale: tuple[str, ...]
    kind: str

    @property
    def hint(self) -> str:
        """The hint shown when the example is picked."""
        return (f"Known rationale (the words that decide the label **{self.label}**): "
                f"**{html.escape(' '.join(self.rationale))}** · {self.kind} review of the reviews world")


#: Held-out reviews (seed 2) of the world reviews-bert was trained on (seed 1): plain reviews, distractors (opinions
#: about other things), negation, and "but" contrast.
EXAMPLE_REVIEWS = ((2, 91), (2, 145), (2, 67), (2, 25), (2, 215), (2, 97), (2, 244), (2, 76))


def _examples() -> tuple[TextExample, ...]:
    from relevance.data.reviews import LABELS, generate_reviews

    reviews = [generate_reviews(1, seed, start=index)[0] for seed, index in EXAMPLE_REVIEWS]
    return tuple(TextExample(r.text, LABELS[r.label], tuple(r.rationale_words), r.kind) for r in reviews)


EXAMPLES: tuple[TextExample, ...] = _examples()


# ------------------------------------------------------------------------------------ models


def is_text_classifier(model: torch.nn.Module) -> bool:
    """Whether ``model`` classifies texts (a ``"text"`` token stream and class logits)."""
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    return "text" in adapter.depths() and adapter.info.output == "class_logits"


def load_text_catalog(device: str | torch.device = "cpu", *, hub: Mapping[str, str] | None = None,
                      cached: Callable[[str], bool] | None = None) -> ModelCatalog:
    """The text models the tab serves, loaded once: the hub classifiers already in the local cache (``cached``,
    default :func:`relevance.models.hub.cached_hf_repo`; nothing is downloaded), then the embedded reviews-bert."""
    from relevance.models.reviews import load_embedded

    return load_cached_catalog(HUB_TEXT_MODELS if hub is None else hub, modality="text", embedded_label=EMBEDDED_TEXT_LABEL,
                               load_embedded=lambda: load_embedded(device=device), device=device, cached=cached,
                               not_cached_reason=NOT_CACHED_REASON)


def method_label(method: str) -> str:
    """A method's name for the page: its title, and how to read it when it is signed or class-agnostic."""
    import relevance

    spec = relevance.get_method(method)
    notes = [note for note, on in (("signed: blue \u2212, red +", spec.signed),
                                   ("same map for every class", not spec.class_specific)) if on]
    return spec.title + (f" ({'; '.join(notes)})" if notes else "")


# ------------------------------------------------------------------------------------ engine calls


def heatmap_html(explanation: Any, index: int, words: bool) -> str:
    """Sample ``index``'s token heatmap as the engine renders it (special tokens hidden, so that the words use the
    colour scale; signed methods diverging, centred on 0; a legend below)."""
    return str(explanation.maps["text"].html(index, words=words, show_special=False))


@dataclass(frozen=True)
class TextResult:
    """One explained text: the heatmap fragment, class probabilities, the explained class, the token count."""

    fragment: str
    probabilities: list[float]
    explained: int
    tokens: int


def explain_text(model: torch.nn.Module, text: str, *, method: str, target: int | None, words: bool) -> TextResult:
    """Explain ``text`` for class ``target`` (``None``: the top prediction) with ``method``.

    Parameters
    ----------
    model:
        A text classifier of the catalog.
    text:
        One text, already checked (not empty, within the model's token limit).
    method, target:
        As :func:`relevance.explain`.
    words:
        Show whole words (the max of their pieces) instead of word pieces.

    Returns
    -------
    TextResult
        The heatmap (:func:`heatmap_html`), the probabilities, the explained class and the number of tokens.
    """
    import relevance

    explanation = relevance.explain(model, [text], method=method, target=target)
    return TextResult(fragment=heatmap_html(explanation, 0, words),
                      probabilities=explanation.probabilities[0].tolist(), explained=int(explanation.target[0]),
                      tokens=len(explanation.maps["text"].tokens(0)))


# ------------------------------------------------------------------------------------ handlers


class TextClassificationHandlers:
    """Event handlers of the text classification tab, bound to a catalog of loaded text classifiers."""

    def __init__(self, catalog: ModelCatalog, files: OverlayFiles | None = None) -> None:
        import relevance

        self.catalog = catalog
        self.files = files or OverlayFiles()
        self.methods = list(relevance.list_methods())
        self.examples = {example.text: example for example in EXAMPLES}

    # ---- validation of raw inputs

    def _model(self, label: Any) -> torch.nn.Module:
        model = self.catalog.get(label)
        if not is_text_classifier(model):
            raise UnknownModelError(f"{str(label)[:80]!r} is not a text classifier.")
        return model

    def _text(self, model: torch.nn.Module, model_label: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DemoError("Type a text or pick an example first.")
        if len(value) > MAX_TEXT_CHARS:
            raise DemoError(f"The text is too long for the demo: {len(value)} characters; the limit is "
                            f"{MAX_TEXT_CHARS}.")
        from relevance.models.text_inputs import max_length

        tokenizer = model.info.tokenizer
        count, limit = len(tokenizer(value)["input_ids"]), max_length(model.config, tokenizer)
        if count > limit:
            raise DemoError(f"The text has {count} tokens but {model_label} takes at most {limit} (special tokens "
                            "included); shorten it.")
        return value

    def _method(self, method: Any) -> str:
        if method not in self.methods:
            raise DemoError(f"Unknown method {str(method)[:80]!r}. Choose one of: {', '.join(self.methods)}.")
        return str(method)

    @staticmethod
    def _target(model: torch.nn.Module, class_choice: Any) -> int | None:
        if class_choice in (None, "", TOP_CLASS):
            return None
        names = class_names_of(model)
        try:
            index = int(class_choice)
        except (TypeError, ValueError):
            raise DemoError("Pick a class from the list.") from None
        if not 0 <= index < len(names):
            raise DemoError("The chosen class does not belong to this model; pick one from the list again.")
        return index

    @staticmethod
    def _words(granularity: Any) -> bool:
        if granularity in (None, ""):
            return False
        if granularity not in GRANULARITIES:
            raise DemoError(f"Unknown display {str(granularity)[:80]!r}. Choose one of: {', '.join(GRANULARITIES)}.")
        return GRANULARITIES[granularity]

    # ---- events

    def class_choices(self, model_label: Any) -> Any:
        """New model: its classes in the class list (the top prediction selected)."""
        try:
            model = self._model(model_label)
        except ValueError:
            return gr.update()
        names = display_names(class_names_of(model))
        return gr.update(choices=[(TOP_CLASS, "")] + [(name, index) for index, name in enumerate(names)], value="")

    def rationale_hint(self, text: Any) -> str:
        """The known rationale of a picked example (empty for any other text)."""
        example = self.examples.get(text) if isinstance(text, str) else None
        return example.hint if example is not None else ""

    @staticmethod
    def clear_results() -> tuple[Any, ...]:
        """A new text or model: empty the previous results (heatmap, predictions, download, comparison, notice)."""
        return "", None, None, "", "", "Choose a method and a class, then press **Explain**."

    @user_facing_errors
    def explain(self, text: Any, model_label: Any, method: Any, class_choice: Any,
                granularity: Any) -> tuple[str, dict[str, float], str, str, str]:
        """Explain the text for the chosen class.

        Returns the heatmap (HTML), the predictions, the downloadable page's path, the status and the domain notice.
        """
        model = self._model(model_label)
        text = self._text(model, str(model_label), text)
        method = self._method(method)
        target = self._target(model, class_choice)
        words = self._words(granularity)
        started = time.perf_counter()
        result = explain_text(model, text, method=method, target=target, words=words)
        elapsed = time.perf_counter() - started
        names = display_names(class_names_of(model))
        name, probability = names[result.explained], result.probabilities[result.explained]
        caption = f"{name} ({probability:.1%}) · {method_label(method)} · {model_label}"
        download = self.files.write_text(self._page(result.fragment, caption, text),
                                         f"{safe_filename_part(text)}_{method}_{safe_filename_part(name)}.html")
        status = (f"**{method_label(method)}** for class **{html.escape(name)}** (p = {probability:.1%}), "
                  f"{result.tokens} tokens, {elapsed:.2f} s.")
        return result.fragment, self._label(names, result.probabilities), download, status, self._notice(model, text)

    @user_facing_errors
    def compare(self, text: Any, model_label: Any, class_choice: Any, granularity: Any) -> tuple[str, str]:
        """Every method's heatmap for the same text and class (the top prediction pinned when none is chosen)."""
        model = self._model(model_label)
        text = self._text(model, str(model_label), text)
        target = self._target(model, class_choice)
        words = self._words(granularity)
        started = time.perf_counter()
        if target is None:
            target = explain_text(model, text, method="attention", target=None, words=words).explained
        items = []
        for method in self.methods:
            result = explain_text(model, text, method=method, target=target, words=words)
            items.append(f'<div class="text-compare-item" data-method="{method}"><div class="text-compare-caption">'
                         f"{html.escape(method_label(method))}</div>{result.fragment}</div>")
        names = display_names(class_names_of(model))
        status = (f"Compared {len(self.methods)} methods for class **{html.escape(names[target])}**, "
                  f"{time.perf_counter() - started:.2f} s.")
        title = f"Every method for class {html.escape(names[target])}"
        return (f'<div class="text-compare-title">{title}</div><div class="text-compare-grid">{"".join(items)}</div>',
                status)

    # ---- outputs

    @staticmethod
    def _label(names: Sequence[str], probabilities: Sequence[float]) -> dict[str, float]:
        return {name: float(p) for name, p in sorted(zip(names, probabilities), key=lambda item: -item[1])}

    @staticmethod
    def _page(fragment: str, caption: str, text: str) -> str:
        from relevance.render.text import text_heatmap_document

        return text_heatmap_document([fragment], [caption], title="Token relevance: " + text[:80])

    @staticmethod
    def _notice(model: torch.nn.Module, text: str) -> str:
        from relevance.models import domain_warning

        warning = domain_warning(model, text)
        return domain_notice([] if warning is None else [warning])


# ------------------------------------------------------------------------------------ layout


def text_classification_tab(catalog: ModelCatalog, *, examples: Sequence[TextExample] = EXAMPLES,
                            concurrency_limit: int = 2,
                            handlers: TextClassificationHandlers | None = None) -> TextClassificationHandlers:
    """Lay out the "Text classification" tab inside the current ``gr.Blocks`` and wire its events."""
    handlers = handlers or TextClassificationHandlers(catalog)
    classes = handlers.class_choices(catalog.default_label)
    default_method = DEFAULT_METHOD if DEFAULT_METHOD in handlers.methods else handlers.methods[0]
    with gr.Tab("Text classification", id="text-classification"):
        with gr.Row():
            with gr.Column(scale=1):
                text = gr.Textbox(label="Text", lines=3, max_length=MAX_TEXT_CHARS, elem_id="text-input",
                                  placeholder="Type a film review, e.g. the acting was not dull .")
                if examples:
                    gr.Examples(examples=[[e.text] for e in examples], inputs=[text],
                                              label="Reviews of the reviews world (reviews-bert knows them)",
                                              elem_id="text-examples")
                hint = gr.Markdown("", elem_id="text-hint")
                model = gr.Dropdown(choices=catalog.labels, value=catalog.default_label, label="Model",
                                    filterable=False, elem_id="text-model")
                gr.Markdown(unavailable_note(catalog), elem_id="text-unavailable-models")
                method = gr.Dropdown(choices=[(method_label(m), m) for m in handlers.methods], value=default_method,
                                     label="Method", filterable=False, elem_id="text-method")
                with gr.Row():
                    class_select = gr.Dropdown(choices=classes["choices"], value="", label="Class",
                                               info="Top prediction: the model's own choice.", filterable=False,
                                               elem_id="text-class")
                    granularity = gr.Radio(choices=list(GRANULARITIES), value=next(iter(GRANULARITIES)),
                                           label="Show", elem_id="text-granularity")
                with gr.Row():
                    explain_button = gr.Button("Explain", variant="primary", elem_id="text-explain")
                    compare_button = gr.Button("Compare methods", elem_id="text-compare-button")
            with gr.Column(scale=1):
                gr.Markdown("**Token relevance**", elem_id="text-heatmap-title")
                heatmap = gr.HTML("", label="Token relevance", elem_id="text-heatmap")
                status = gr.Markdown("Type a text or pick an example.", elem_id="text-status")
                notice = gr.Markdown("", elem_id="text-domain-notice")
                top_k = gr.Label(label="Predictions", elem_id="text-top-k")
                download = gr.DownloadButton("Download heatmap (HTML)", elem_id="text-download")
        comparison = gr.HTML("", label="Compare methods", elem_id="text-compare")
        gr.Markdown(CAVEAT, elem_id="text-caveat")

    common = dict(concurrency_id="explain", concurrency_limit=concurrency_limit)
    cleared = [heatmap, top_k, download, comparison, notice, status]
    # any new text (typed, pasted, an example picked) empties the previous text's results and shows its hint
    text.change(handlers.clear_results, outputs=cleared, queue=False, api_visibility="private")
    text.change(handlers.rationale_hint, inputs=[text], outputs=[hint], queue=False, api_visibility="private")
    model.change(handlers.class_choices, inputs=[model], outputs=[class_select], queue=False,
                 api_visibility="private").then(handlers.clear_results, outputs=cleared, queue=False,
                                                api_visibility="private")
    explain_button.click(handlers.explain, inputs=[text, model, method, class_select, granularity],
                         outputs=[heatmap, top_k, download, status, notice], api_name="explain_text", **common)
    compare_button.click(handlers.compare, inputs=[text, model, class_select, granularity],
                         outputs=[comparison, status], api_name="compare_text", **common)
    return handlers
