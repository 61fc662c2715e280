"""``relevance figures text``: token heatmaps of a text classifier (Chefer et al., CVPR 2021, text figure).

Part 1: for each sentence, one token heatmap per method (the explained class is the model's prediction). Part 2:
a sentence of mixed sentiment explained once for each class, by transformer attribution (class-specific: the two
rows differ) and by rollout (class-agnostic: they do not).

Extension point: it needs a text classifier, the BERT family (``relevance.models.bert``, the embedded
``reviews-bert``), which is not part of every installation. It is written against the engine's API
(``relevance.explain(model, sentences, method=m, target=c)`` -> ``Explanation.maps["text"]``, a
:class:`relevance.TextMap`) and tested with a stand-in; once the family lands, set :data:`DEFAULT_MODEL` and the
default sentences (held-out reviews of ``relevance.data.reviews``, the world ``reviews-bert`` knows) and add an
offline test on the embedded model.
"""

from __future__ import annotations

from typing import Any, Sequence

from relevance.figures.inputs import FigureRequest, FigureResult
from relevance.figures.style import citation_caption, method_title, row_figure

TITLE = "CVPR 2021 text figure: token heatmaps per method, class-specific rows for a mixed sentence"
#: The embedded text classifier of the BERT family.
DEFAULT_MODEL = "reviews-bert"
#: Sentences of part 1 (``--texts`` replaces them; the last one given is the mixed sentence of part 2).
SENTENCES = (
    "a gripping story with wonderful performances and a score that stays with you",
    "the jokes fall flat and the two hours feel like five",
)
#: A sentence with both sentiments, explained for each class in part 2.
MIXED_SENTENCE = "the cast is terrific , but the script is a clumsy and tedious mess"
#: Methods of part 1 by default: those of the CVPR 2021 text figure, and gradient rollout.
TEXT_METHODS = ("transformer_attribution", "gradient_rollout", "partial_lrp", "attention_gradcam", "rollout",
                "attention", "lrp")
_HEATMAP = dict(width=900, font_size=20, legend=False)


def load_text_model(request: FigureRequest) -> tuple[Any, str]:
    """The requested text model; a clear error when the BERT family is not installed."""
    from relevance.figures import FigureUnavailableError
    from relevance.models import UnknownModelError, create

    name = request.model or DEFAULT_MODEL
    try:
        return create(name, checkpoint=request.checkpoint, device=request.device, modality="text",
                      quiet=True), name
    except UnknownModelError as problem:
        raise FigureUnavailableError(f"the text figure needs a text classifier ({name!r} is unknown here): the "
                                     "BERT family (relevance.models.bert, embedded reviews-bert) is not installed"
                                     ) from problem


def make(request: FigureRequest) -> FigureResult:
    model, name = load_text_model(request)
    texts = list(request.texts) if request.texts else [*SENTENCES, MIXED_SENTENCE]
    sentences, mixed = (texts[:-1] or texts), texts[-1]
    methods = list(request.methods or TEXT_METHODS)
    return text_figure(model, name, sentences, mixed, methods)


def text_figure(model: Any, model_name: str, sentences: Sequence[str], mixed: str,
                methods: Sequence[str]) -> FigureResult:
    """Part 1 (sentences x methods) and part 2 (the mixed sentence x classes, TA and rollout).

    Returns
    -------
    FigureResult
        ``data``: ``targets`` {method: explained classes of the sentences}, ``scores`` {method: per sentence the
        token values}, ``classes`` (part 2's explained classes), ``class_rows`` {method: per class the token values},
        ``class_rows_differ`` {method: whether part 2's rows differ}.
    """
    import relevance

    methods = [relevance.get_method(m).name for m in methods]
    rows, targets, scores = [], {}, {}
    explanations = {m: relevance.explain(model, list(sentences), method=m) for m in methods}
    for i in range(len(sentences)):
        for m in methods:
            e = explanations[m]
            text = e.maps["text"]
            rows.append((f"{method_title(m)}\n{e.class_name(i)}", [text.png(i, **_HEATMAP)]))
    for m, e in explanations.items():
        targets[m] = [int(t) for t in e.target]
        scores[m] = [e.maps["text"].scores(i).tolist() for i in range(len(sentences))]
    class_methods = [m for m in ("transformer_attribution", "rollout")]
    names = relevance.explain(model, [mixed], method="attention").class_names or []
    classes = list(range(len(names))) if names else [0, 1]
    class_rows, differ = {}, {}
    for m in class_methods:
        e = relevance.explain(model, [mixed] * len(classes), method=m, target=classes)
        values = [e.maps["text"].scores(i) for i in range(len(classes))]
        class_rows[m] = [v.tolist() for v in values]
        differ[m] = any(not bool((values[0] - v).abs().max() <= 1e-6 * (values[0].abs().max() + 1e-12))
                        for v in values[1:])
        for i in range(len(classes)):
            agnostic = "" if relevance.get_method(m).class_specific else " (class-agnostic)"
            rows.append((f"{method_title(m)}{agnostic}\nexplained: {e.class_name(i)}",
                         [e.maps["text"].png(i, **_HEATMAP)]))
    caption, _ = citation_caption(methods + [m for m in class_methods if m not in methods], width=10_000)
    figure = row_figure(rows, column_widths=[7.5], title=f"Token relevance per method ({model_name})",
                        caption=f"Rows 1-{len(sentences) * len(methods)}: each sentence's predicted class per "
                                f"method. Last {len(classes) * len(class_methods)} rows: \"{mixed}\" explained for "
                                f"each class.\n{caption}", label_width=1.7)
    data = {"methods": methods, "targets": targets, "scores": scores, "classes": classes,
            "class_rows": class_rows, "class_rows_differ": differ}
    return FigureResult(figure, data, caption)
