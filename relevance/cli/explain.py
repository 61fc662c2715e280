"""``relevance explain PATH...``: write a relevance overlay PNG per image and explained class (``--text TEXT``: a
token heatmap per text and class, HTML and PNG, see :mod:`relevance.cli.explain_text`; images with ``--text
CAPTION`` or ``--labels L1,L2`` and an image-text model: the image-text pairs, see
:mod:`relevance.cli.explain_image_text`).

Files are named ``OUT/<image-stem>__<rank>_<class-slug>__<method>.png`` where ``rank`` is the class's
position in the model's prediction (1 = top class). The overlay is drawn on the original image at its
own resolution, with a small label band naming the class and the method (``--no-label``: none).
``--top-k K`` explains the K classes of every image in one batched call. Unreadable files are reported
on stderr (``error: <path>: <reason>``) and skipped; images outside the model's domain (a photo given
to the shapes model) are counted in one ``warning:`` line. The exit status is 1 when any input failed,
2 for usage errors (unknown method, model, class...).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch

    from relevance.explain import Explanation

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_OUT = "relevance_out"
DEFAULT_METHOD = "transformer_attribution"


class UsageError(Exception):
    """A problem with the command line itself; reported as ``error: ...`` with exit status 2."""


# ---------------------------------------------------------------------------------------- arguments


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def methods_help() -> str:
    """The methods of :func:`relevance.list_methods`, one line each, for ``relevance explain --help``."""
    import relevance

    aliases: dict[str, list[str]] = {}
    for alias, name in relevance.ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    width = max(len(name) for name in relevance.list_methods())
    lines = ["methods (--method NAME):"]
    for name in relevance.list_methods():
        method = relevance.METHODS[name]
        notes = [method.title + (" (the default)" if name == DEFAULT_METHOD else "")]
        if not method.class_specific:
            notes.append("same map for every class")
        if name in aliases:
            notes.append("alias " + ", ".join(aliases[name]))
        if method.attribution is not None:
            own = [o for o in method.attribution.options if o not in ("stream", "site")]
            notes.append("captum; --option " + ", ".join(own))
        lines.append(f"  {name:<{width}}  {'; '.join(notes)}")
    return "\n".join(lines)


def parse_options(items: Sequence[str] | None, method: str) -> dict[str, object]:
    """``--option NAME=VALUE`` items as keyword arguments of ``relevance.explain`` for ``method``: values are Python
    literals (``50``, ``0.1``, ``True``, ``(8, 8)``) or else strings (``superpixels``), checked by the method."""
    import ast

    import relevance

    options: dict[str, object] = {}
    for item in items or []:
        name, equals, text = item.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"--option takes NAME=VALUE, got {item!r}")
        try:
            options[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            options[name.strip()] = text.strip()
    if options:
        spec = relevance.get_method(method)
        if spec.attribution is None:
            raise UsageError(f"method {method} takes no --option (only the gradient and perturbation methods do)")
        try:
            spec.attribution.resolve(options)
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
    return options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``explain`` options on ``parser`` (and list the methods in its help)."""
    from relevance.render import COLORMAPS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keeps the methods one per line
    parser.epilog = methods_help()

    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files, or folders (searched recursively)")
    parser.add_argument("--text", action="append", default=None, metavar="TEXT",
                        help="explain this text with a text classifier instead of images (repeat for several); "
                             "writes an HTML and a PNG token heatmap per text and class. With images: a caption, "
                             "explained against the images by an image-text model (one image x several captions, "
                             "several images x one caption, or as many of each: pairs); per pair an overlay PNG "
                             "and the caption's heatmap")
    parser.add_argument("--labels", default=None, metavar="L1,L2,...",
                        help="images and an image-text model: rank these comma-separated labels as prompts "
                             "(--template) per image, zero-shot, and explain the best (--top-k K: the K best)")
    parser.add_argument("--template", default=None, metavar="TEXT",
                        help="with --labels: the prompt, '{}' where the label goes (default 'a photo of a {}.'; "
                             "'a photo of a {}' for shapes-clip, as it was trained)")
    parser.add_argument("--model", default=None,
                        help="shapes-vit, or a timm ViT/DeiT name (default: ImageNet ViT-B/16 when its weights are "
                             "cached or downloadable, else shapes-vit); with --text: reviews-bert or a Hugging Face "
                             "text classifier (default: the hub sentiment BERT when cached or reachable, else "
                             "reviews-bert); images with --text or --labels: shapes-clip or a CLIP name (default: "
                             "the hub CLIP when cached or reachable, else shapes-clip)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="local weights (.safetensors, or .pth loaded with weights_only=True) for --model")
    parser.add_argument("--method", default=DEFAULT_METHOD,
                        help=f"explanation method (default: {DEFAULT_METHOD}); the methods are listed below")
    parser.add_argument("--option", action="append", default=None, metavar="NAME=VALUE",
                        help="an option of a gradient or perturbation method (repeatable), e.g. --option n_steps=32 "
                             "--option features=superpixels")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--target", default=None, metavar="CLASS",
                       help="explain this class instead of the prediction: an index, a name or one of its "
                            "comma-separated synonyms, in any case (an ambiguous name is an error)")
    which.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                       help="explain each of the K top predicted classes (default: 1), in one call per batch of "
                            "B images (B x K samples: lower --batch-size if memory runs short); with --labels the K "
                            "best labels")
    parser.add_argument("--start-layer", type=_non_negative_int, default=None, metavar="N",
                        help="first block of the rollout product (default 0; the paper's benchmarks use 1; "
                             "image-text models: each method's own, the last block for gradient_rollout)")
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="B",
                        help="images (or texts, or image-text pairs) per batch (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--colormap", default=None, choices=list(COLORMAPS),
                        help="colour map (default: jet for images; reds for texts; signed maps keep a diverging one)")
    parser.add_argument("--alpha", type=_unit_float, default=0.5, metavar="A",
                        help="opacity of the colour map over the photo, 0..1 (default 0.5)")
    parser.add_argument("--no-label", dest="label", action="store_false",
                        help="leave out the label (class, probability and method) at the top of each overlay or "
                             "heatmap")
    parser.add_argument("--words", action="store_true",
                        help="texts: show whole words (the max of their pieces) instead of word pieces")


# ---------------------------------------------------------------------------------------- inputs


def collect_images(paths: Sequence[str], exclude: Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into a list of files; folders give their image files, sorted.

    Returns (files, problems) where problems are (path, reason) pairs for missing paths and folders
    without images. Explicit files are kept whatever their extension (decoding reports bad ones).
    Files under ``exclude`` (the output folder) are skipped.
    """
    from relevance.images import IMAGE_EXTENSIONS

    excluded = exclude.resolve() if exclude is not None else None
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                and not (excluded is not None and excluded in p.resolve().parents)
            )
            if not found:
                problems.append((text, "folder contains no image files"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append((text, "no such file or folder"))
    return files, problems


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------- classes


def class_label(index: int, class_names: Sequence[str] | None) -> str:
    """Display name of a class (its index when the model has no names)."""
    return class_names[index] if class_names else f"class {index}"


def slugify(text: str, max_length: int = 40) -> str:
    """File-name-safe lower-case slug: ``"tabby, tabby cat" -> "tabby-tabby-cat"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "class"


def resolve_target(text: str, class_names: Sequence[str] | None, num_classes: int) -> int:
    """A class index from ``--target`` by the shared rule of :func:`relevance.labels.resolve_class` (the demo's
    too): an index, a class name or one of its synonyms. Raises UsageError with the matcher's message otherwise."""
    from relevance.labels import ClassSpecError, resolve_class

    try:
        return resolve_class(text, class_names, num_classes)
    except ClassSpecError as error:
        raise UsageError(f"--target: {error}") from None


# ---------------------------------------------------------------------------------------- model


@dataclass
class _Setup:
    model: object
    method: str
    class_names: list[str] | None
    num_classes: int
    target: int | None
    start_layer: int
    options: dict = field(default_factory=dict)


def _check_device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use cpu or cuda") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but CUDA is not available here (no GPU or a CPU-only "
                         "PyTorch build); use --device cpu")
    return device


def _check_method(name: str) -> str:
    import relevance

    try:
        return relevance.get_method(name).name
    except ValueError:
        aliases = ", ".join(f"{a} ({m})" for a, m in relevance.ALIASES.items())
        raise UsageError(f"unknown method {name!r}; valid methods: {', '.join(relevance.list_methods())}; "
                         f"aliases: {aliases}") from None


def load_cli_model(args: argparse.Namespace, modality: str = "image") -> Any:
    """The model of ``--model`` / ``--checkpoint`` / ``--device`` (no ``--model``: the ``modality``'s default),
    every loading problem as a :class:`UsageError` that names the model.

    Parameters
    ----------
    args:
        The parsed options.
    modality:
        ``"image"``, ``"text"`` or ``"image-text"``: whose default model an absent ``--model`` means.

    Returns
    -------
    Any
        The loaded model, in eval mode.
    """
    import relevance.models as models

    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise UsageError(f"checkpoint not found: {args.checkpoint}")
    try:
        return models.load_model(args.model, checkpoint=args.checkpoint, device=args.device, modality=modality)
    except models.UnknownModelError as error:
        raise UsageError(str(error)) from None
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        default = "(default)" if modality == "image" else f"(the {modality} default)"
        raise UsageError(f"cannot load model {args.model or default}: {error}") from None


def _setup(args: argparse.Namespace) -> _Setup:
    from relevance.adapter import adapter_for

    method = _check_method(args.method)
    options = parse_options(args.option, method)
    args.device = _check_device(args.device)
    model = load_cli_model(args)
    adapter = adapter_for(model)
    name = args.model or adapter.info.name or type(model).__name__
    if "image" not in adapter.depths():
        raise UsageError(f"{name} is a text model: give --text TEXT instead of image files, or an image model "
                         "(e.g. --model shapes-vit)")
    if adapter.info.output == "pair_logits":
        raise UsageError(f"{name} is an image-text model: give the images with --text CAPTION (repeatable) or "
                         "--labels 'L1,L2,...' (zero-shot prompts)")
    start_layer = 0 if args.start_layer is None else args.start_layer
    depth = len(getattr(model, "blocks", []))
    if depth and start_layer >= depth:
        raise UsageError(f"--start-layer must be below the model's {depth} blocks, got {start_layer}")
    num_classes = int(model.num_classes)
    class_names = getattr(model, "class_names", None)
    if args.top_k is not None and args.top_k > num_classes:
        raise UsageError(f"--top-k {args.top_k} exceeds the model's {num_classes} classes")
    target = resolve_target(args.target, class_names, num_classes) if args.target is not None else None
    return _Setup(model=model, method=method, class_names=class_names, num_classes=num_classes, target=target,
                  start_layer=start_layer, options=options)


# ---------------------------------------------------------------------------------------- labels


def overlay_label(class_name: str, rank: int, probability: float, method: str) -> str:
    """The text of an overlay's label band: ``"2. tabby, tabby cat 12.5% | transformer_attribution"``."""
    return f"{rank}. {class_name} {probability:.1%} | {method}"


def draw_overlay(rgb: np.ndarray, values: torch.Tensor, geometry: object, args: argparse.Namespace,
                 label: str | None) -> np.ndarray:
    """The overlay of one map (h, w) or (H, W) on the original image (H0, W0, 3) as ``relevance explain`` draws it
    (``--colormap``, default jet; ``--alpha``), with ``label`` in a band along the top (``None``: no band)."""
    from relevance.render import annotate, overlay

    picture = overlay(rgb, values, geometry, colormap=args.colormap or "jet", alpha=args.alpha)
    return annotate(picture, label, position="top") if label else picture


# ---------------------------------------------------------------------------------------- run


class _Reporter:
    """Writes messages without breaking the tqdm bar; counts failures."""

    def __init__(self, total: int, unit: str = "image"):
        from tqdm import tqdm

        self.bar = tqdm(total=total, file=sys.stderr, unit=unit, disable=total <= 1, leave=False)
        self.failures = 0

    def error(self, path: object, reason: str) -> None:
        self.failures += 1
        self.bar.write(f"error: {path}: {reason}", file=sys.stderr)

    def info(self, text: str) -> None:
        self.bar.write(text, file=sys.stdout)

    def advance(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


@dataclass
class _Run:
    """What the batches of one ``relevance explain`` run share."""

    setup: _Setup
    args: argparse.Namespace
    reporter: _Reporter
    out_dir: Path
    used_stems: dict[str, int]
    explained_images: int = 0
    outside_domain: list[tuple[Path, str]] = field(default_factory=list)  # (image, the model's domain warning)


def _unique_stem(path: Path, used: dict[str, int]) -> str:
    stem = path.stem
    used[stem] = used.get(stem, 0) + 1
    return stem if used[stem] == 1 else f"{stem}-{used[stem]}"


def _classes_to_explain(setup: _Setup, pixels: torch.Tensor,
                        top_k: int) -> tuple[torch.Tensor, torch.Tensor, Explanation]:
    """(logits (B, C), classes (B, K), explanation) of one batch: the K top classes of each image (or the
    ``--target`` class) explained by ONE ``relevance.explain`` call, the images repeated K times in a row.
    Sample ``i * K + r`` of the explanation is image ``i``'s rank-``r`` class."""
    import torch

    import relevance

    if top_k == 1:
        explanation = relevance.explain(setup.model, pixels, method=setup.method, target=setup.target,
                                        start_layer=setup.start_layer, **setup.options)
        return explanation.logits.float(), explanation.target.cpu().view(-1, 1), explanation
    device = next(setup.model.parameters()).device
    with torch.no_grad():
        logits = setup.model(pixels.to(device)).float()
    classes = logits.argsort(dim=-1, descending=True)[:, :top_k].cpu()
    explanation = relevance.explain(setup.model, pixels.repeat_interleave(top_k, dim=0), method=setup.method,
                                    target=classes.reshape(-1), start_layer=setup.start_layer, **setup.options)
    return logits, classes, explanation


def _explain_batch(run: _Run, paths: Sequence[Path]) -> int:
    """Explain one batch; returns the number of overlays written."""
    import numpy as np
    from PIL import Image

    import relevance
    from relevance.images import ImageError, load_image, prepare
    from relevance.models import domain_warning

    setup, args, reporter = run.setup, run.args, run.reporter
    loaded: list[tuple[Path, np.ndarray]] = []
    for path in paths:
        try:
            loaded.append((path, load_image(path)))
        except ImageError as error:
            reason = str(error)
            prefix = f"{path}: "
            reporter.error(path, reason[len(prefix):] if reason.startswith(prefix) else reason)
    if not loaded:
        return 0
    batch = prepare([rgb for _, rgb in loaded], setup.model.data_config)
    top_k = args.top_k or 1
    try:
        logits, classes, explanation = _classes_to_explain(setup, batch.pixels, top_k)
    except (RuntimeError, ValueError, TypeError) as error:
        for path, _ in loaded:
            reporter.error(path, f"explanation failed ({error})")
        return 0
    run.explained_images += len(loaded)
    probabilities = relevance.class_probabilities(logits, explanation.multi_label).cpu()  # sigmoid: multi-label
    order = logits.argsort(dim=-1, descending=True).cpu()
    shown = min(setup.num_classes, max(3, top_k))
    written = 0
    for i, (path, rgb) in enumerate(loaded):
        warning = domain_warning(setup.model, rgb)
        if warning is not None:
            run.outside_domain.append((path, warning))
        top = ", ".join(f"{class_label(int(c), setup.class_names)} {float(probabilities[i, c]):.1%}"
                        for c in order[i, :shown])
        reporter.info(f"{path}: {top}")
        stem = _unique_stem(path, run.used_stems)
        for k in range(top_k):
            cls = int(classes[i, k])
            rank = int((order[i] == cls).nonzero()[0, 0]) + 1
            label = class_label(cls, setup.class_names)
            target_file = run.out_dir / f"{stem}__{rank}_{slugify(label)}__{explanation.method}.png"
            text = overlay_label(label, rank, float(probabilities[i, cls]), explanation.method) if args.label else None
            picture = draw_overlay(rgb, explanation.relevance[i * top_k + k], batch.geometries[i], args, text)
            try:
                Image.fromarray(picture).save(target_file)
            except OSError as error:
                reporter.error(target_file, f"cannot write ({error})")
                continue
            written += 1
    return written


def _domain_line(run: _Run) -> str | None:
    """One ``warning:`` line for all the images outside the model's domain (None when there are none)."""
    if not run.outside_domain:
        return None
    count = len(run.outside_domain)
    names = ", ".join(path.name for path, _ in run.outside_domain[:3]) + (", ..." if count > 3 else "")
    return f"warning: {count} of {run.explained_images} images ({names}): {run.outside_domain[0][1]}"


def run(args: argparse.Namespace) -> int:
    """Run ``relevance explain``; returns 0, 1 (some inputs failed) or 2 (usage error)."""
    if args.template is not None and args.labels is None:
        print("error: --template makes the prompts of --labels: give --labels too", file=sys.stderr)
        return EXIT_USAGE
    if args.labels is not None or (args.text is not None and args.paths):
        from relevance.cli.explain_image_text import run as run_pairs

        return run_pairs(args)
    if args.text is not None:
        from relevance.cli.explain_text import run as run_texts

        return run_texts(args)
    if not args.paths:
        print("error: give image files or folders (with --text CAPTION or --labels for an image-text model), or "
              "--text TEXT", file=sys.stderr)
        return EXIT_USAGE
    out_dir = Path(args.out)
    files, problems = collect_images(args.paths, exclude=out_dir)
    try:
        setup = _setup(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: {out_dir}: cannot create the output folder ({error})", file=sys.stderr)
        return EXIT_USAGE

    import relevance

    if (args.top_k or 1) > 1 and not relevance.METHODS[setup.method].class_specific:
        print(f"note: {setup.method} is not class-specific: every class gets the same map", file=sys.stderr)
    reporter = _Reporter(total=len(files))
    for path, reason in problems:
        reporter.error(path, reason)
    state = _Run(setup=setup, args=args, reporter=reporter, out_dir=out_dir, used_stems={})
    written = 0
    try:
        for chunk in _batches(files, args.batch_size):
            written += _explain_batch(state, chunk)
            reporter.advance(len(chunk))
    finally:
        reporter.close()
    domain_line = _domain_line(state)
    if domain_line is not None:
        print(domain_line, file=sys.stderr)
    print(f"wrote {written} overlay{'s' if written != 1 else ''} to {out_dir}")
    return EXIT_SOME_FAILED if reporter.failures or not files else EXIT_OK
