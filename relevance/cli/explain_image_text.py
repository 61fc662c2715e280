"""``relevance explain IMAGE... --text CAPTION [--text ...]`` or ``--labels L1,L2,...``: explain image-text matches
with an image-text model (the CLIP family, :mod:`relevance.models.clip`; offline the embedded ``shapes-clip``).

Captions (``--text``) are paired with the images as :class:`relevance.models.clip.CLIPAdapter` pairs them: N images
and N captions are N pairs (image i, caption i); one image with several captions, or several images with one
caption, broadcast; other counts are a usage error. Each pair's similarity logit is explained (Chefer et al.,
ICCV 2021; the diagonal of ``logits_per_image``). Zero-shot (``--labels``, Radford et al. 2021): each label becomes
a prompt (``--template``; default :data:`DEFAULT_TEMPLATE`, or the model's own in :data:`MODEL_TEMPLATES`), the
prompts are ranked per image (softmax of the similarity logits over the labels, printed) and the best one is
explained by the adapter's own choice (``target="best"``), or the ``--top-k K`` best (``target=`` their indices).

Files per explained pair, in ``OUT``, with ``<pair>`` = ``<image-stem>__<caption-slug>`` (zero-shot:
``<image-stem>__<rank>_<label-slug>``):

* ``<pair>__<method>.png``: the image overlay, drawn as ``relevance explain IMAGES`` draws it;
* ``<pair>__<method>__text.html`` and ``.png``: the caption's token heatmap, as ``relevance explain --text`` draws
  it (start and end tokens hidden).

Both carry a label with the caption, the similarity logit (zero-shot: rank and probability) and the method
(``--no-label``: none). A caption that is empty, longer than the model's context (the message says the maximum) or,
for ``shapes-clip``, made of words outside its vocabulary is one ``error:`` line and its pairs are skipped (exit
status 1); such a label is a usage error (exit status 2), as are a model that is not image-text, counts that cannot
be paired, ``--target`` (image-text models have no classes) and ``--top-k`` without ``--labels``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from relevance.cli.explain import (EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, UsageError, _check_device, _check_method,
                                   _Reporter, _unique_stem, collect_images, draw_overlay, load_cli_model,
                                   parse_options, slugify)
from relevance.cli.explain_text import (_unique, excerpt, heatmap_options, model_name, text_name, text_slug,
                                        write_heatmaps)

if TYPE_CHECKING:
    import numpy as np

#: The zero-shot prompt of CLIP (Radford et al. 2021) when the model has none of its own.
DEFAULT_TEMPLATE = "a photo of a {}."
#: Models trained on other prompts: the embedded shapes CLIP saw "a photo of a red circle" (no full stop).
MODEL_TEMPLATES = {"shapes-clip": "a photo of a {}"}


def is_image_text(model: Any) -> bool:
    """Whether ``model`` scores image-text pairs (an ``"image"`` and a ``"text"`` stream, one logit per pair)."""
    from relevance.adapter import adapter_for

    adapter = adapter_for(model)
    return adapter.info.output == "pair_logits" and {"image", "text"} <= set(adapter.depths())


def pair_label(caption: str, logit: float, method: str, rank: int | None = None,
               probability: float | None = None) -> str:
    """The label of a pair's pictures: ``'"a red circle" logit 12.34 | gradient_rollout'``; zero-shot
    ``'1. red circle 91.2%, logit 12.34 | gradient_rollout'``."""
    if rank is None:
        return f'"{excerpt(caption)}" logit {logit:.2f} | {method}'
    return f"{rank}. {excerpt(caption)} {probability:.1%}, logit {logit:.2f} | {method}"


@dataclass
class _PairSetup:
    model: Any
    name: str
    method: str
    start_layer: int | None
    options: dict = field(default_factory=dict)
    max_tokens: int = 0


def _setup(args: argparse.Namespace) -> _PairSetup:
    from relevance.adapter import adapter_for

    if args.text is not None and args.labels is not None:
        raise UsageError("give either captions (--text) or zero-shot labels (--labels), not both")
    if not args.paths:
        raise UsageError("--labels ranks prompts for images: give image files or folders")
    if args.target is not None:
        raise UsageError("--target picks a class, and an image-text model has none: give the captions with --text, "
                         "or rank --labels (--top-k K explains the K best)")
    if args.top_k is not None and args.labels is None:
        raise UsageError("--top-k ranks the --labels; with --text every pair is explained")
    method = _check_method(args.method)
    options = parse_options(args.option, method)
    args.device = _check_device(args.device)
    model = load_cli_model(args, "image-text")
    name = model_name(model, args.model)
    if not is_image_text(model):
        depths = adapter_for(model).depths()
        kind = "an image classifier" if "image" in depths else "a text classifier"
        fix = ("images alone explain its classes" if "image" in depths
               else "--text alone (no images) explains its classes")
        raise UsageError(f"{name} is {kind}: images with --text or --labels need an image-text model (e.g. --model "
                         f"shapes-clip); {fix}")
    depth = min(adapter_for(model).depths().values())
    if args.start_layer is not None and args.start_layer >= depth:
        raise UsageError(f"--start-layer must be below the model's {depth} blocks, got {args.start_layer}")
    return _PairSetup(model=model, name=name, method=method, start_layer=args.start_layer, options=options,
                      max_tokens=int(model.config.text.context_length))


def check_caption(setup: _PairSetup, text: str) -> str | None:
    """Why ``text`` cannot be explained (empty, longer than the context, words the tokenizer refuses), or ``None``."""
    if not text.strip():
        return "the caption is empty: there is nothing to explain"
    try:
        count = len(setup.model.info.tokenizer.encode(text)) + 2
    except ValueError as error:  # shapes-clip's closed vocabulary
        return str(error)
    if count > setup.max_tokens:
        return (f"{count} tokens, but {setup.name} takes at most {setup.max_tokens} (start and end tokens included): "
                "shorten the caption")
    return None


def parse_labels(setup: _PairSetup, labels: str, template: str | None, top_k: int | None) -> tuple[list[str],
                                                                                                    list[str]]:
    """(labels, prompts) of ``--labels`` and ``--template``; a usage error for an empty label or an unusable prompt."""
    template = template or MODEL_TEMPLATES.get(setup.name, DEFAULT_TEMPLATE)
    if "{}" not in template:
        raise UsageError(f"--template needs '{{}}' where the label goes, got {template!r}")
    names = [label.strip() for label in labels.split(",")]
    if not any(names):
        raise UsageError("--labels is empty: give comma-separated labels, e.g. --labels 'red circle,blue star'")
    if not all(names):
        raise UsageError(f"--labels has an empty label (label {names.index('') + 1} of {labels!r})")
    prompts = [template.format(name) for name in names]
    for number, prompt in enumerate(prompts, start=1):
        problem = check_caption(setup, prompt)
        if problem is not None:
            raise UsageError(f'--labels: label {number} "{names[number - 1]}" (prompt "{prompt}"): {problem}')
    if top_k is not None and top_k > len(names):
        raise UsageError(f"--top-k {top_k} exceeds the {len(names)} labels")
    return names, prompts


def pairs_of(num_images: int, num_captions: int) -> list[tuple[int, int]]:
    """(image, caption) index pairs by the adapter's rule (:class:`relevance.models.clip.CLIPAdapter`)."""
    from relevance.models.clip import _pairs

    try:
        images, captions = _pairs(num_images, num_captions)
    except ValueError:
        raise UsageError(f"{num_images} images and {num_captions} captions cannot be paired: give as many --text as "
                         "images (pairs), one image with several --text, or several images with one --text; or "
                         "--labels to rank prompts per image") from None
    return list(zip(images, captions))


# ---------------------------------------------------------------------------------------- run


@dataclass
class _PairRun:
    setup: _PairSetup
    args: argparse.Namespace
    reporter: _Reporter
    out_dir: Path
    stems: list[str]
    used: dict[str, int] = field(default_factory=dict)
    outside_domain: list[Path] = field(default_factory=list)
    warning: str | None = None


def _load_images(run: _PairRun, files: Sequence[Path], indices: Sequence[int]) -> dict[int, np.ndarray]:
    """The images ``indices`` of ``files`` as uint8 RGB; unreadable ones are reported once and left out."""
    from relevance.images import ImageError, load_image
    from relevance.models import domain_warning

    loaded = {}
    for index in dict.fromkeys(indices):
        path = files[index]
        try:
            loaded[index] = load_image(path)
        except ImageError as error:
            reason, prefix = str(error), f"{path}: "
            run.reporter.error(path, reason[len(prefix):] if reason.startswith(prefix) else reason)
            continue
        warning = domain_warning(run.setup.model, loaded[index])
        if warning is not None:
            run.outside_domain.append(path)
            run.warning = warning
    return loaded


def _explain(setup: _PairSetup, rgbs: Sequence[np.ndarray], texts: Sequence[str], target: Any = None):
    """(geometries, explanation) of the images against ``texts`` (pairs, or prompts picked by ``target``)."""
    import relevance
    from relevance.images import prepare

    batch = prepare(list(rgbs), setup.model.data_config)
    start = {} if setup.start_layer is None else {"start_layer": setup.start_layer}
    explanation = relevance.explain(setup.model, batch.pixels, texts=list(texts), method=setup.method, target=target,
                                    **start, **setup.options)
    return batch.geometries, explanation


def _write_pair(run: _PairRun, rgb: np.ndarray, geometry: Any, explanation: Any, index: int, stem: str,
                label: str | None) -> bool:
    """The overlay and the token heatmap of sample ``index`` under ``OUT/<stem>__<method>``; False when not written."""
    from PIL import Image

    base = run.out_dir / f"{stem}__{explanation.method}"
    try:
        picture = draw_overlay(rgb, explanation.maps["image"].values[index], geometry, run.args, label)
        Image.fromarray(picture).save(base.with_name(base.name + ".png"))
        write_heatmaps(explanation, index, base.with_name(base.name + "__text"), label,
                       heatmap_options(explanation.method, run.args))
    except OSError as error:
        run.reporter.error(base, f"cannot write ({error})")
        return False
    return True


def _caption_batch(run: _PairRun, files: Sequence[Path], captions: Sequence[str],
                   pairs: Sequence[tuple[int, int]]) -> int:
    """Explain one batch of (image, caption) pairs in one call; returns the number of pairs written."""
    images = _load_images(run, files, [i for i, _ in pairs])
    pairs = [(i, c) for i, c in pairs if i in images]
    if not pairs:
        return 0
    try:
        geometries, explanation = _explain(run.setup, [images[i] for i, _ in pairs], [captions[c] for _, c in pairs])
    except (RuntimeError, ValueError, TypeError) as error:
        for i, c in pairs:
            run.reporter.error(files[i], f"{text_name(c + 1, captions[c])}: explanation failed ({error})")
        return 0
    written = 0
    for k, (i, c) in enumerate(pairs):
        logit = float(explanation.scores[k])
        run.reporter.info(f"{files[i]}: {text_name(c + 1, captions[c])}: logit {logit:.2f}")
        stem = _unique(f"{run.stems[i]}__{text_slug(captions[c])}", run.used)
        label = pair_label(captions[c], logit, explanation.method) if run.args.label else None
        written += _write_pair(run, images[i], geometries[k], explanation, k, stem, label)
    return written


def _zero_shot_batch(run: _PairRun, files: Sequence[Path], labels: Sequence[str], prompts: Sequence[str],
                     indices: Sequence[int]) -> int:
    """Rank the prompts for one batch of images and explain the best (``--top-k K``: K best) of each in one call."""
    from relevance.images import prepare
    from relevance.models.clip import similarity_matrix

    images = _load_images(run, files, indices)
    indices = [i for i in indices if i in images]
    if not indices:
        return 0
    setup, top_k = run.setup, run.args.top_k or 1
    rgbs = [images[i] for i in indices]
    try:
        if top_k == 1:  # the adapter ranks the prompts and picks each image's best
            geometries, explanation = _explain(setup, rgbs, prompts, target="best")
            logits = explanation.extras["prompt_logits"].float().cpu()
            chosen = explanation.extras["prompt_index"].view(-1, 1).cpu()
        else:  # rank (no gradient), then explain the K best prompts of each image in one call
            pixels = prepare(rgbs, setup.model.data_config).pixels
            logits = similarity_matrix(setup.model, pixels, list(prompts)).float().cpu()
            chosen = logits.argsort(dim=-1, descending=True)[:, :top_k]
            repeated = [rgb for rgb in rgbs for _ in range(top_k)]
            geometries, explanation = _explain(setup, repeated, prompts, target=chosen.reshape(-1).tolist())
    except (RuntimeError, ValueError, TypeError) as error:
        for i in indices:
            run.reporter.error(files[i], f"explanation failed ({error})")
        return 0
    probabilities = logits.softmax(dim=-1)
    order = logits.argsort(dim=-1, descending=True)
    shown = min(len(labels), max(3, top_k))
    written = 0
    for b, i in enumerate(indices):
        ranking = ", ".join(f"{labels[j]} {float(probabilities[b, j]):.1%}" for j in order[b, :shown].tolist())
        run.reporter.info(f"{files[i]}: {ranking}")
        for k in range(top_k):
            j, sample = int(chosen[b, k]), b * top_k + k
            rank = int((order[b] == j).nonzero()[0, 0]) + 1
            stem = _unique(f"{run.stems[i]}__{rank}_{slugify(labels[j])}", run.used)
            label = (pair_label(labels[j], float(explanation.scores[sample]), explanation.method, rank,
                                float(probabilities[b, j])) if run.args.label else None)
            written += _write_pair(run, images[i], geometries[sample], explanation, sample, stem, label)
    return written


def run(args: argparse.Namespace) -> int:
    """Run ``relevance explain IMAGE... --text CAPTION`` or ``--labels``; returns 0, 1 (some inputs failed) or 2."""
    import relevance

    out_dir = Path(args.out)
    files, problems = collect_images(args.paths, exclude=out_dir)
    try:
        setup = _setup(args)
        if args.labels is not None:
            labels, prompts = parse_labels(setup, args.labels, args.template, args.top_k)
            pairs: list[tuple[int, int]] = []
        else:
            captions = list(args.text)
            pairs = pairs_of(len(files), len(captions)) if files else []
        out_dir.mkdir(parents=True, exist_ok=True)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"error: {out_dir}: cannot create the output folder ({error})", file=sys.stderr)
        return EXIT_USAGE
    if (args.top_k or 1) > 1 and not relevance.METHODS[setup.method].class_specific:
        print(f"note: {setup.method} is not class-specific: every prompt gets the same image map", file=sys.stderr)
    used: dict[str, int] = {}
    stems = [_unique_stem(path, used) for path in files]
    total = len(files) if args.labels is not None else len(pairs)
    reporter = _Reporter(total=total, unit="image" if args.labels is not None else "pair")
    state = _PairRun(setup=setup, args=args, reporter=reporter, out_dir=out_dir, stems=stems)
    for path, reason in problems:
        reporter.error(path, reason)
    written = 0
    try:
        if args.labels is not None:
            for start in range(0, len(files), args.batch_size):
                chunk = list(range(start, min(start + args.batch_size, len(files))))
                written += _zero_shot_batch(state, files, labels, prompts, chunk)
                reporter.advance(len(chunk))
        else:
            bad = {}
            for number, caption in enumerate(captions, start=1):
                problem = check_caption(setup, caption)
                if problem is not None:
                    reporter.error(text_name(number, caption), problem)
                    bad[number - 1] = problem
            usable = [(i, c) for i, c in pairs if c not in bad]
            reporter.advance(len(pairs) - len(usable))
            for start in range(0, len(usable), args.batch_size):
                chunk = usable[start:start + args.batch_size]
                written += _caption_batch(state, files, captions, chunk)
                reporter.advance(len(chunk))
    finally:
        reporter.close()
    if state.outside_domain:
        count = len(state.outside_domain)
        names = ", ".join(p.name for p in state.outside_domain[:3]) + (", ..." if count > 3 else "")
        print(f"warning: {count} of {len(files)} images ({names}): {state.warning}", file=sys.stderr)
    print(f"wrote {written} explained pair{'s' if written != 1 else ''} (overlay PNG, token heatmap HTML and PNG) "
          f"to {out_dir}")
    return EXIT_SOME_FAILED if reporter.failures or not written else EXIT_OK
