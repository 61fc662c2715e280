"""``relevance explain --text TEXT [--text ...]``: token heatmaps of a text classifier, HTML and PNG per text and class.

Files are named ``OUT/<text-slug>__<rank>_<class-slug>__<method>.html`` and ``.png`` (the slug: the text's first
words; ``rank`` is the class's position in the model's prediction, 1 = top). The HTML is a standalone page (inline
styles, no script, nothing from the network) with the heatmap and its colour legend; the PNG is the same heatmap as a
picture. Both carry a label naming the class, its probability and the method (``--no-label``: none). Special tokens
([CLS], [SEP]) are hidden, so the words use the whole colour scale; ``--words`` merges word pieces into words (the
max of the pieces). Signed methods (full LRP, AttnLRP, CP-LRP) are drawn with a diverging colour map centred on 0.

Texts are explained in batches of ``--batch-size`` (``--top-k K``: K classes each, in the same call); an empty text
or one longer than the model takes is reported (``error: text N ...: ...``, saying the maximum) and skipped, and the
exit status is then 1. The default model is the text default: the hub sentiment BERT when its weights are cached or
reachable, else the embedded ``reviews-bert`` (one line on stderr says so).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from relevance.cli.explain import (EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, UsageError, _check_device, _check_method,
                                   _Reporter, class_label, load_cli_model, overlay_label, resolve_target,
                                   slugify)

#: Width of the PNG heatmaps, in pixels.
PNG_WIDTH = 800
#: Characters of a text quoted in messages.
EXCERPT = 40


def excerpt(text: str, length: int = EXCERPT) -> str:
    """The text's first characters, one line, for messages: ``'the acting was not dull and the pl…'``."""
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1].rstrip() + "…"


def text_name(number: int, text: str) -> str:
    """How messages name a text: ``text 2 "the plot was dull ."`` (numbered from 1, in the order given)."""
    return f'text {number} "{excerpt(text)}"'


def text_slug(text: str) -> str:
    """A file-name stem from the text's first words: ``"The plot was DULL!"`` -> ``"the-plot-was-dull"``."""
    return slugify(text) if re.search(r"[a-z0-9]", text.lower()) else "text"


def is_text_classifier(model: Any) -> bool:
    """Whether ``model`` classifies texts (a ``"text"`` token stream and class logits)."""
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    return "text" in adapter.depths() and adapter.info.output == "class_logits"


def model_name(model: Any, requested: str | None) -> str:
    from relevance.adapter import adapter_for

    return requested or adapter_for(model).info.name or type(model).__name__


def num_classes(model: Any) -> int:
    """The number of classes of a text classifier."""
    names = getattr(model, "class_names", None)
    if names:
        return len(names)
    return int(model.config.num_labels)


@dataclass
class _TextSetup:
    model: Any
    name: str
    method: str
    class_names: list[str] | None
    num_classes: int
    target: int | None
    start_layer: int
    max_tokens: int


def _setup(args: argparse.Namespace) -> _TextSetup:
    from relevance.adapter import adapter_for
    from relevance.models.text_inputs import max_length

    method = _check_method(args.method)
    args.device = _check_device(args.device)
    model = load_cli_model(args, "text")
    name = model_name(model, args.model)
    if adapter_for(model).info.output == "pair_logits":
        raise UsageError(f"{name} is an image-text model: give image files or folders with --text CAPTION")
    if not is_text_classifier(model):
        raise UsageError(f"{name} is not a text classifier: --text needs one (e.g. --model reviews-bert); give "
                         "image files or folders to an image model instead")
    depth = adapter_for(model).depths()["text"]
    start_layer = 0 if args.start_layer is None else args.start_layer
    if start_layer >= depth:
        raise UsageError(f"--start-layer must be below the model's {depth} blocks, got {start_layer}")
    classes = num_classes(model)
    class_names = getattr(model, "class_names", None)
    if args.top_k is not None and args.top_k > classes:
        raise UsageError(f"--top-k {args.top_k} exceeds the model's {classes} classes")
    target = resolve_target(args.target, class_names, classes) if args.target is not None else None
    return _TextSetup(model=model, name=name, method=method, class_names=class_names, num_classes=classes,
                      target=target, start_layer=start_layer,
                      max_tokens=max_length(model.config, model.info.tokenizer))


def check_text(setup: _TextSetup, text: str) -> str | None:
    """Why ``text`` cannot be explained (empty, longer than the model takes), or ``None``."""
    if not text.strip():
        return "the text is empty: there is nothing to explain"
    count = len(setup.model.info.tokenizer(text)["input_ids"])
    if count > setup.max_tokens:
        return (f"{count} tokens, but {setup.name} takes at most {setup.max_tokens} (special tokens included): "
                "shorten the text")
    return None


@dataclass
class _TextRun:
    setup: _TextSetup
    args: argparse.Namespace
    reporter: _Reporter
    out_dir: Path
    used_stems: dict[str, int] = field(default_factory=dict)
    explained: int = 0
    outside_domain: list[tuple[int, str]] = field(default_factory=list)  # (text number, the model's warning)


def _unique(stem: str, used: dict[str, int]) -> str:
    used[stem] = used.get(stem, 0) + 1
    return stem if used[stem] == 1 else f"{stem}-{used[stem]}"


def explain_batch(setup: _TextSetup, texts: Sequence[str], top_k: int):
    """(logits (B, C), classes (B, K), explanation) of one batch of texts: the K top classes of each text (or the
    ``--target`` class) explained by ONE ``relevance.explain`` call, each text repeated K times in a row; sample
    ``i * K + r`` of the explanation is text ``i``'s rank-``r`` class."""
    import torch

    import relevance
    from relevance.adapter import adapter_for

    if top_k == 1:
        explanation = relevance.explain(setup.model, list(texts), method=setup.method, target=setup.target,
                                        start_layer=setup.start_layer)
        return explanation.logits.float(), explanation.target.cpu().view(-1, 1), explanation
    adapter = adapter_for(setup.model)
    with torch.no_grad():
        logits = adapter.forward(adapter.prepare(list(texts))[0]).float().cpu()
    classes = logits.argsort(dim=-1, descending=True)[:, :top_k]
    repeated = [text for text in texts for _ in range(top_k)]
    explanation = relevance.explain(setup.model, repeated, method=setup.method, target=classes.reshape(-1),
                                    start_layer=setup.start_layer)
    return logits, classes, explanation


def heatmap_options(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """What the heatmaps show: words or pieces, no special tokens; the colour map (signed maps keep a diverging one)."""
    import relevance
    from relevance.render.colormaps import is_diverging

    options: dict[str, Any] = {"words": bool(args.words), "show_special": False}
    colormap = args.colormap
    if colormap is not None and (not relevance.get_method(method).signed or is_diverging(colormap)):
        options["colormap"] = colormap
    return options


def write_heatmaps(explanation: Any, index: int, stem: Path, label: str | None,
                   options: dict[str, Any]) -> tuple[Path, Path]:
    """Sample ``index``'s heatmap as ``<stem>.html`` (a standalone page) and ``<stem>.png``, with ``label`` above it
    (``None``: no label)."""
    from PIL import Image

    from relevance.render import annotate
    from relevance.render.text import text_heatmap_document

    text_map = explanation.maps["text"]
    page = text_heatmap_document([text_map.html(index, **options)], [label] if label else None,
                                 title=f"Token relevance · {explanation.method}")
    picture = text_map.png(index, width=PNG_WIDTH, **options)
    if label:
        picture = annotate(picture, label, position="top")
    html_path, png_path = stem.with_name(stem.name + ".html"), stem.with_name(stem.name + ".png")
    html_path.write_text(page, encoding="utf-8")
    Image.fromarray(picture).save(png_path)
    return html_path, png_path


def _explain_batch(run: _TextRun, batch: Sequence[tuple[int, str]]) -> int:
    """Explain one batch of (number, text); returns the number of heatmaps written."""
    import relevance
    from relevance.models import domain_warning

    setup, args, reporter = run.setup, run.args, run.reporter
    top_k = args.top_k or 1
    try:
        logits, classes, explanation = explain_batch(setup, [text for _, text in batch], top_k)
    except (RuntimeError, ValueError, TypeError) as error:
        for number, text in batch:
            reporter.error(text_name(number, text), f"explanation failed ({error})")
        return 0
    run.explained += len(batch)
    probabilities = relevance.class_probabilities(logits, explanation.multi_label).cpu()
    order = logits.argsort(dim=-1, descending=True).cpu()
    shown = min(setup.num_classes, max(3, top_k))
    options = heatmap_options(setup.method, args)
    written = 0
    for i, (number, text) in enumerate(batch):
        warning = domain_warning(setup.model, text)
        if warning is not None:
            run.outside_domain.append((number, warning))
        top = ", ".join(f"{class_label(int(c), setup.class_names)} {float(probabilities[i, c]):.1%}"
                        for c in order[i, :shown])
        reporter.info(f"{text_name(number, text)}: {top}")
        stem = _unique(text_slug(text), run.used_stems)
        for k in range(top_k):
            cls = int(classes[i, k])
            rank = int((order[i] == cls).nonzero()[0, 0]) + 1
            name = class_label(cls, setup.class_names)
            label = overlay_label(name, rank, float(probabilities[i, cls]), explanation.method) if args.label else None
            target = run.out_dir / f"{stem}__{rank}_{slugify(name)}__{explanation.method}"
            try:
                write_heatmaps(explanation, i * top_k + k, target, label, options)
            except OSError as error:
                reporter.error(target, f"cannot write ({error})")
                continue
            written += 1
    return written


def _domain_line(run: _TextRun) -> str | None:
    if not run.outside_domain:
        return None
    count = len(run.outside_domain)
    numbers = ", ".join(str(n) for n, _ in run.outside_domain[:5]) + (", ..." if count > 5 else "")
    return f"warning: {count} of {run.explained} texts (text {numbers}): {run.outside_domain[0][1]}"


def run(args: argparse.Namespace) -> int:
    """Run ``relevance explain --text``; returns 0, 1 (some texts failed) or 2 (usage error)."""
    import relevance

    out_dir = Path(args.out)
    try:
        setup = _setup(args)
        out_dir.mkdir(parents=True, exist_ok=True)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"error: {out_dir}: cannot create the output folder ({error})", file=sys.stderr)
        return EXIT_USAGE
    if (args.top_k or 1) > 1 and not relevance.METHODS[setup.method].class_specific:
        print(f"note: {setup.method} is not class-specific: every class gets the same map", file=sys.stderr)
    texts = list(enumerate(args.text, start=1))
    reporter = _Reporter(total=len(texts), unit="text")
    state = _TextRun(setup=setup, args=args, reporter=reporter, out_dir=out_dir)
    usable = []
    for number, text in texts:
        problem = check_text(setup, text)
        if problem is None:
            usable.append((number, text))
        else:
            reporter.error(text_name(number, text), problem)
            reporter.advance(1)
    written = 0
    try:
        for start in range(0, len(usable), args.batch_size):
            chunk = usable[start:start + args.batch_size]
            written += _explain_batch(state, chunk)
            reporter.advance(len(chunk))
    finally:
        reporter.close()
    domain_line = _domain_line(state)
    if domain_line is not None:
        print(domain_line, file=sys.stderr)
    print(f"wrote {written} heatmap{'s' if written != 1 else ''} (HTML and PNG) to {out_dir}")
    return EXIT_SOME_FAILED if reporter.failures or not usable else EXIT_OK
