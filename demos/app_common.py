"""Pieces every tab of the demo shares: error messages for users, class names, download files.

Kept apart from the tabs so that every tab (image and text classification, the image-text tab planned
next) uses the same rules: a user sees a clear message and never a traceback, class names are matched by
the same rule as on the command line (:mod:`relevance.labels`), and each download gets a fresh file.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import shutil
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import gradio as gr
import numpy as np
from PIL import Image

from demos.app_engine import ImageError
from demos.app_models import UnknownModelError
from relevance.labels import ClassSpecError, resolve_class

__all__ = [
    "DemoError",
    "OverlayFiles",
    "class_name_placeholder",
    "class_names_of",
    "display_names",
    "match_class_name",
    "safe_filename_part",
    "uploaded_file",
    "user_facing_errors",
]

logger = logging.getLogger(__name__)


class DemoError(ValueError):
    """A problem with the user's input, shown in the page as it is."""


Handler = TypeVar("Handler", bound=Callable[..., Any])


def user_facing_errors(handler: Handler) -> Handler:
    """Turn every failure of ``handler`` into a ``gr.Error`` with a readable message, never a traceback.

    Input problems (bad file, unknown class, ...) show their own message; anything unexpected is
    logged on the server with its traceback and shown as a short generic message.
    """

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (DemoError, ImageError, UnknownModelError) as error:
            raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None
        except Exception:
            logger.exception("internal error in %s", handler.__name__)
            raise gr.Error(
                "The explanation failed because of an internal error (details are in the server log).",
                print_exception=False,
            ) from None

    return wrapper  # type: ignore[return-value]


def uploaded_file(value: Any) -> tuple[Path, str]:
    """The server-side path and the user's file name of an image input's raw value.

    ``value`` is the image component's file record (a dict with ``path`` and ``orig_name``), or a
    path string when a handler is called directly from Python.
    """
    if value is None or value == "":
        raise DemoError("Upload an image or pick an example first.")
    if isinstance(value, (str, Path)):
        return Path(value), Path(value).name
    if isinstance(value, dict) and value.get("path"):
        path = Path(value["path"])
        return path, str(value.get("orig_name") or path.name)
    raise DemoError("The image input is not an uploaded file; upload an image or pick an example.")


def class_names_of(model: Any) -> list[str]:
    """The model's class names, or "class <i>" when it has none."""
    names = getattr(model, "class_names", None)
    if names:
        return [str(n) for n in names]
    return [f"class {i}" for i in range(int(model.num_classes))]


def display_names(names: Sequence[str]) -> list[str]:
    """Class names made unique for display (ImageNet repeats a few): duplicates get their index."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name} (#{i})" for i, name in enumerate(names)]


def _sentence(message: str) -> str:
    """A matcher message as a sentence for the page: capital first letter, final period."""
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


def match_class_name(names: Sequence[str], text: str) -> int:
    """The index of the class typed as ``text``, by the command line's rule (:func:`relevance.labels.resolve_class`):
    an index, a class name or one of its comma-separated synonyms, in any case.

    Raises :class:`DemoError` with the matcher's message, as a sentence: close names for an unknown class, the
    candidates with their indices for an ambiguous one.
    """
    try:
        return resolve_class(text, names)
    except ClassSpecError as error:
        raise DemoError(_sentence(str(error))) from None


def class_name_placeholder(names: Sequence[str]) -> str:
    """The class box's placeholder for a model with these class names: a name and an index that both work,
    e.g. ``"e.g. cross or 4"`` for the shapes model."""
    middle = len(names) // 2
    for index in [*range(middle, len(names)), *range(middle)]:  # a class from the middle, not the first
        name = str(names[index]).split(",")[0].strip()
        try:
            if name and not name.isdigit() and resolve_class(name, names) == index:
                return f"e.g. {name} or {(index + 1) % len(names)}"
        except ClassSpecError:
            continue
    return f"e.g. {len(names) - 1}"


def safe_filename_part(text: str) -> str:
    """``text`` reduced to letters, digits and dashes, for a download's file name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "image"


class OverlayFiles:
    """Writes downloads (overlay PNGs, heatmap pages), one fresh folder per request, pruning old ones."""

    def __init__(self, root: str | Path | None = None, *, max_age_s: float = 3600.0) -> None:
        if root is None:  # a private folder, removed when this object goes away or at exit
            self.root = Path(tempfile.mkdtemp(prefix="relevance-demo-"))
            weakref.finalize(self, shutil.rmtree, self.root, True)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def write(self, overlay: np.ndarray, filename: str) -> str:
        """Save ``overlay`` (uint8 RGB) as ``filename`` (PNG) and return its path."""
        self._prune()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        path = folder / filename
        Image.fromarray(overlay).save(path, format="PNG")
        return str(path)

    def write_text(self, document: str, filename: str) -> str:
        """Save ``document`` (e.g. a standalone HTML page) as ``filename`` (UTF-8) and return its path."""
        self._prune()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        path = folder / filename
        path.write_text(document, encoding="utf-8")
        return str(path)

    def _prune(self) -> None:
        cutoff = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:  # pruned by a concurrent request
                pass


def domain_notice(warnings: Sequence[str]) -> str:
    """The Markdown notice of a model used outside its domain (the engine's warnings, each once, capitalised), or
    ``""`` when there is none."""
    unique = list(dict.fromkeys(w for w in warnings if w))
    if not unique:
        return ""
    text = "; ".join(w[:1].upper() + w[1:] for w in unique)
    return f"⚠️ **Outside the model's domain:** {html.escape(text, quote=False)}."


def unavailable_note(catalog: Any) -> str:
    """Markdown list of a :class:`~demos.app_models.ModelCatalog`'s models that could not be offered, with why."""
    if not catalog.unavailable:
        return ""
    lines = [f"- {html.escape(label)}: {html.escape(reason)}" for label, reason in catalog.unavailable.items()]
    return "**Not available:**\n" + "\n".join(lines)
