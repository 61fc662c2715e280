"""``relevance figures text``: token heatmaps of a text classifier (Chefer et al., CVPR 2021, text figure).

Part 1: several sentences (columns), one token heatmap per method (rows), each explaining the model's prediction.
Part 2: a sentence of mixed sentiment ("X , but Y") explained for each class (columns) by every method (rows):
class-specific methods change between the columns, raw attention and rollout draw the same map twice.

Offline it runs on the embedded ``reviews-bert`` with held-out reviews of its world (:mod:`relevance.data.reviews`,
seed 2, whose rationales are known and listed in the ``.json``); ``--model`` and ``--checkpoint`` take a Hugging
Face text classifier (e.g. ``textattack/bert-base-uncased-SST-2``, the CVPR 2021 notebook's) and ``--texts`` your
own sentences (the last one is the mixed sentence). [CLS] and [SEP] are hidden so that the words use the colour
scale, which is each heatmap's own: white to red for unsigned maps, blue-white-red centred on 0 for signed ones.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from relevance.figures.inputs import FigureRequest, FigureResult
from relevance.figures.style import RC, caption_width, citation_caption, method_title

TITLE = "CVPR 2021 text figure: token heatmaps per method, class-specific rows for a mixed sentence"
#: The embedded text classifier of the BERT family.
DEFAULT_MODEL = "reviews-bert"
#: The default sentences: held-out reviews (seed, index) of the reviews world, which ``reviews-bert`` knows. A plain
#: review with a distractor (an opinion about the cinema), a negative one with a positive distractor, a negated one.
REVIEWS = ((2, 145), (2, 67), (2, 215))
#: The mixed sentence of part 2: a contrast review ("X , but Y": the clause after "but" decides, here positive).
MIXED_REVIEW = (2, 97)
#: Methods by default: those of the CVPR 2021 text figure, gradient rollout, AttnLRP and CP-LRP.
TEXT_METHODS = ("transformer_attribution", "gradient_rollout", "attnlrp", "cp_lrp", "partial_lrp",
                "attention_gradcam", "lrp", "rollout", "attention")
#: How the heatmaps are drawn: their width in pixels is PIXELS_PER_INCH x their column's width, so that the text has
#: one size in every column.
HEATMAP = dict(font_size=22, legend=False, show_special=False)
PIXELS_PER_INCH = 190
FIGURE_WIDTH, LABEL_WIDTH, GAP = 11.0, 1.45, 0.1


def default_sentences() -> tuple[list[str], str]:
    """The texts of :data:`REVIEWS` and :data:`MIXED_REVIEW`."""
    from relevance.data.reviews import generate_reviews

    def text(seed: int, index: int) -> str:
        return generate_reviews(1, seed, start=index)[0].text

    return [text(*where) for where in REVIEWS], text(*MIXED_REVIEW)


def load_text_model(request: FigureRequest) -> tuple[Any, str]:
    """The requested text classifier; a clear error when the BERT family is not installed or the model is no text
    classifier."""
    from relevance.adapter import adapter_for
    from relevance.figures import FigureUnavailableError
    from relevance.models import UnknownModelError, create

    name = request.model or DEFAULT_MODEL
    try:
        model = create(name, checkpoint=request.checkpoint, device=request.device, modality="text", quiet=True)
    except UnknownModelError as problem:
        if name == DEFAULT_MODEL:
            raise FigureUnavailableError("the text figure needs a text classifier: the BERT family "
                                         "(relevance.models.bert, embedded reviews-bert) is not installed") from problem
        raise
    adapter = adapter_for(model)
    if "text" not in adapter.depths() or adapter.info.output != "class_logits":
        raise ValueError(f"{name!r} is not a text classifier; the text figure needs one (e.g. reviews-bert)")
    return model, name


def explained_classes(model: Any, classes: Sequence[str] | None) -> list[int]:
    """Part 2's classes: ``--classes`` (names or indices, :func:`relevance.labels.resolve_class`), else all of a
    two-class model's, else 0 and 1."""
    from relevance.labels import resolve_class

    names = model.info.class_names
    count = len(names) if names else int(model.config.num_labels)
    if classes:
        return [resolve_class(c, names, count) for c in classes]
    return list(range(count)) if count <= 2 else [0, 1]


def make(request: FigureRequest) -> FigureResult:
    model, name = load_text_model(request)
    if request.texts:
        texts = list(request.texts)
        sentences, mixed = (texts[:-1] or texts), texts[-1]
    else:
        sentences, mixed = default_sentences()
    methods = list(request.methods or TEXT_METHODS)
    return text_figure(model, name, sentences, mixed, methods, explained_classes(model, request.classes))


def text_figure(model: Any, model_name: str, sentences: Sequence[str], mixed: str, methods: Sequence[str],
                classes: Sequence[int] = (0, 1)) -> FigureResult:
    """Part 1 (methods x sentences, the predicted class) and part 2 (methods x classes, the mixed sentence).

    Returns
    -------
    FigureResult
        ``data``: ``sentences``, ``mixed``, ``methods``, ``targets`` {method: explained classes of the sentences},
        ``probabilities`` (per sentence, per class), ``scores`` {method: per sentence the token values},
        ``classes`` (part 2's explained classes), ``class_rows`` {method: per class the token values of the mixed
        sentence}, ``class_rows_differ`` {method: whether part 2's columns differ}.
    """
    import relevance

    methods = [relevance.get_method(m).name for m in methods]
    sentences, classes = list(sentences), [int(c) for c in classes]
    first = {m: relevance.explain(model, sentences, method=m) for m in methods}
    second = {m: relevance.explain(model, [mixed] * len(classes), method=m, target=classes) for m in methods}
    any_explanation = first[methods[0]]
    class_names = any_explanation.class_names or [str(c) for c in range(int(any_explanation.logits.shape[-1]))]
    probabilities = any_explanation.probabilities.tolist()
    mixed_probabilities = second[methods[0]].probabilities[0].tolist()

    def row_label(method: str) -> str:
        spec = relevance.get_method(method)
        notes = [n for n, on in (("signed", spec.signed), ("class-agnostic", not spec.class_specific)) if on]
        return method_title(method) + (f"\n({', '.join(notes)})" if notes else "")

    options1, options2 = heatmap_options(len(sentences)), heatmap_options(len(classes))
    part1 = [(row_label(m), [first[m].maps["text"].png(i, **options1) for i in range(len(sentences))])
             for m in methods]
    part2 = [(row_label(m), [second[m].maps["text"].png(i, **options2) for i in range(len(classes))])
             for m in methods]
    predicted = [int(t) for t in first[methods[0]].logits.argmax(-1)]
    titles1 = [f"“{_short(s)}”\npredicted: {class_names[p]} ({probabilities[i][p]:.0%})"
               for i, (s, p) in enumerate(zip(sentences, predicted))]
    titles2 = [f"explained: {class_names[c]} (p = {mixed_probabilities[c]:.0%})" for c in classes]
    class_rows = {m: [second[m].maps["text"].scores(i).tolist() for i in range(len(classes))] for m in methods}
    differ = {m: any(row != class_rows[m][0] for row in class_rows[m][1:]) for m in methods}
    citations, _ = citation_caption(methods, width=10_000)
    caption = ("Each heatmap is scaled to its own largest value: white to red for unsigned maps, blue (negative) - "
               "white (0) - red (positive) for signed ones; [CLS] and [SEP] are hidden.\n" + citations)
    figure = sections_figure(
        [(f"1. Each sentence's predicted class, per method ({model_name})", titles1, part1),
         (f"2. A sentence of mixed sentiment explained for each class: “{mixed}”", titles2, part2)],
        title=f"Token relevance per method ({model_name})", caption=caption)
    data = {"sentences": sentences, "mixed": mixed, "methods": methods,
            "targets": {m: [int(t) for t in first[m].target] for m in methods}, "probabilities": probabilities,
            "scores": {m: [first[m].maps["text"].scores(i).tolist() for i in range(len(sentences))] for m in methods},
            "classes": classes, "class_names": [class_names[c] for c in classes], "class_rows": class_rows,
            "class_rows_differ": differ}
    return FigureResult(figure, data, caption)


def column_inches(columns: int) -> float:
    """The width of one of ``columns`` columns of :func:`sections_figure`."""
    return (FIGURE_WIDTH - LABEL_WIDTH - 0.15 - GAP * (columns - 1)) / columns


def heatmap_options(columns: int) -> dict[str, Any]:
    """The options of the heatmaps of a section of ``columns`` columns (:meth:`relevance.TextMap.png`)."""
    return dict(HEATMAP, width=int(round(PIXELS_PER_INCH * column_inches(columns))))


def _short(sentence: str, length: int = 48) -> str:
    return sentence if len(sentence) <= length else sentence[: length - 1].rstrip() + "…"


def sections_figure(sections: Sequence[tuple[str, Sequence[str], Sequence[tuple[str, Sequence[np.ndarray]]]]], *,
                    title: str, caption: str = ""):
    """Sections of labelled rows of pictures stacked vertically; each section spreads its columns over the width.

    Parameters
    ----------
    sections:
        ``(heading, column titles, rows)`` with ``rows`` ``(label, pictures)``, one picture per column (uint8 RGB).
    title, caption:
        The figure's title and the text below it (paragraphs wrapped to the figure's width).
    """
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    width, label_width, gap = FIGURE_WIDTH, LABEL_WIDTH, GAP
    heading_height, titles_height = 0.32, 0.42
    layouts, height = [], 0.55
    for heading, titles, rows in sections:
        column = column_inches(len(titles))
        row_heights = [max(column * p.shape[0] / p.shape[1] for p in pictures) for _, pictures in rows]
        layouts.append((heading, titles, rows, column, row_heights))
        height += heading_height + titles_height + sum(row_heights) + gap * len(rows) + 0.15
    lines = [w for paragraph in caption.split("\n") if paragraph for w in textwrap.wrap(paragraph, caption_width(width))]
    height += 0.15 + 0.128 * len(lines)
    with plt.rc_context(RC):
        figure = Figure(figsize=(width, height))
        y = height - 0.55
        for heading, titles, rows, column, row_heights in layouts:
            figure.text(0.1 / width, (y - heading_height / 2) / height, heading, ha="left", va="center",
                        fontsize=9.5, fontweight="bold")
            y -= heading_height
            for c, text in enumerate(titles):
                x = label_width + c * (column + gap) + column / 2
                figure.text(x / width, (y - titles_height / 2) / height, text, ha="center", va="center", fontsize=8,
                            linespacing=1.25)
            y -= titles_height
            for (label, pictures), row_height in zip(rows, row_heights):
                y -= row_height
                for c, picture in enumerate(pictures):
                    shown = column * picture.shape[0] / picture.shape[1]
                    axes = figure.add_axes(((label_width + c * (column + gap)) / width,
                                            (y + row_height - shown) / height, column / width, shown / height))
                    axes.set_axis_off()
                    axes.imshow(picture, interpolation="antialiased")
                figure.text((label_width - 0.08) / width, (y + row_height / 2) / height, label, ha="right",
                            va="center", fontsize=8, linespacing=1.25)
                y -= gap
            y -= 0.15
        figure.suptitle(title, y=1 - 0.1 / height, va="top", fontsize=10.5, fontweight="bold")
        if lines:
            figure.text(0.1 / width, 0.07 / height, "\n".join(lines), ha="left", va="bottom", fontsize=7,
                        linespacing=1.3, color="#333333")
    return figure
