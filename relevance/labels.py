"""Class specs: what a user types to name a class (``"tabby cat"``, ``"281"``, ``"Tabby, Tabby Cat"``), as an index.

One matcher for the command line (``relevance explain --target``) and the demo's class box, so that both give the
same answer, or the same error, for the same input. :func:`resolve_class` tries these readings in order; the first
one that fits at least one class decides:

1. an index: an ``int``, or a string of digits such as ``"281"`` (it must lie in ``0..num_classes - 1``);
2. a whole class name, in the same case (``"tabby, tabby cat"``);
3. one of a name's comma-separated synonyms, in the same case (``"tabby cat"``; ImageNet names list several);
4. a whole class name, in any case (``"TABBY, Tabby Cat"``);
5. a synonym, in any case (``"Tabby Cat"``).

Spaces never matter: around the text, repeated, or around commas (``"tabby ,tabby  cat"``). A reading that fits
several classes is an error, never a silent pick: ImageNet-1k calls both 134 (the bird) and 517 (the machine)
"crane", so ``"crane"`` raises :class:`AmbiguousClassError` naming both with their indices, and the user gives the
index. A whole name beats a synonym (``"maillot"`` is class 638 "maillot", not 639 "maillot, tank suit"), and the
exact case beats any case (``"Cardigan"`` is 264 "Cardigan, Cardigan Welsh corgi", ``"cardigan"`` 474 the
sweater). Text that fits nothing raises :class:`UnknownClassError` listing close names (``difflib``) with their
indices.

This module is part of the engine: it imports no model code, no demo and no Gradio.
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

__all__ = ["AmbiguousClassError", "ClassSpecError", "UnknownClassError", "resolve_class"]

#: How many close names an :class:`UnknownClassError` suggests.
MAX_SUGGESTIONS = 5
#: Models with at most this many classes list them all when nothing close matches.
LIST_ALL_UP_TO = 20
_SHOWN_SPEC_LENGTH = 80


class ClassSpecError(ValueError):
    """A class spec that names no class of the model (out-of-range index, empty text, no class names...)."""

    def __init__(self, message: str, candidates: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.candidates: tuple[int, ...] = tuple(candidates)


class AmbiguousClassError(ClassSpecError):
    """A name that fits several classes; ``candidates`` holds their indices, in increasing order."""


class UnknownClassError(ClassSpecError):
    """A name that fits no class; ``candidates`` holds the indices of the close names suggested."""


def _spaced(text: str) -> str:
    """Spaces made canonical: stripped, single, none before a comma and one after: ``"a ,b  c" -> "a, b c"``."""
    parts = (" ".join(part.split()) for part in text.split(","))
    return ", ".join(part for part in parts if part)


def _synonyms(name: str) -> list[str]:
    """The comma-separated synonyms of a (canonically spaced) name: ``"tabby, tabby cat" -> ["tabby", "tabby cat"]``."""
    return list(dict.fromkeys(part for part in name.split(", ") if part))


def _shown(spec: str) -> str:
    text = spec if len(spec) <= _SHOWN_SPEC_LENGTH else spec[: _SHOWN_SPEC_LENGTH - 3] + "..."
    return repr(text)


def _index(value: int, num_classes: int) -> int:
    if not 0 <= value < num_classes:
        raise ClassSpecError(f"class index {value} is out of range: the model has classes 0..{num_classes - 1}")
    return value


def _readings(names: Sequence[str]) -> list[dict[str, list[int]]]:
    """For each reading of the module's rule (2..5), a lookup key -> class indices."""
    tables: list[dict[str, list[int]]] = [{}, {}, {}, {}]
    for index, raw_name in enumerate(names):
        name = _spaced(str(raw_name))
        keys = ([name], _synonyms(name), [name.casefold()], [s.casefold() for s in _synonyms(name)])
        for table, table_keys in zip(tables, keys):
            for key in dict.fromkeys(table_keys):
                table.setdefault(key, []).append(index)
    return tables


def _listed(indices: Sequence[int], names: Sequence[str]) -> str:
    return ", ".join(f"{i} ({_spaced(str(names[i]))})" for i in indices)


def _unknown(spec: str, query: str, names: Sequence[str]) -> UnknownClassError:
    """The error for a name that fits nothing, with close names: names holding it as whole words ("cat" in
    "tabby cat"), then similar ones (difflib), then names holding it anywhere; one name per class."""
    spelled: dict[str, str] = {}  # casefolded name or synonym -> its spelling in the class names
    indices: dict[str, list[int]] = {}
    for index, raw_name in enumerate(names):
        name = _spaced(str(raw_name))
        for key in dict.fromkeys([name, *_synonyms(name)]):
            spelled.setdefault(key.casefold(), key)
            classes = indices.setdefault(key.casefold(), [])
            if index not in classes:
                classes.append(index)
    as_words = re.compile(rf"(?<!\w){re.escape(query)}(?!\w)")
    ranked = sorted((key for key in spelled if as_words.search(key)), key=lambda key: ", " in key)  # synonyms first
    ranked += difflib.get_close_matches(query, list(spelled), n=MAX_SUGGESTIONS, cutoff=0.6)
    ranked += [key for key in spelled if query in key]
    chosen: dict[tuple[int, ...], str] = {}  # the first-ranked name of each class (or set of classes)
    for key in ranked:
        chosen.setdefault(tuple(indices[key]), key)
        if len(chosen) == MAX_SUGGESTIONS:
            break
    if chosen:
        hint = "; close matches: " + ", ".join(
            f"{spelled[key]!r} ({', '.join(map(str, classes))})" for classes, key in chosen.items())
    elif len(names) <= LIST_ALL_UP_TO:
        hint = "; the model's classes are: " + ", ".join(_spaced(str(n)) for n in names)
    else:
        hint = f"; give one of the model's {len(names)} class names or an index 0..{len(names) - 1}"
    return UnknownClassError(f"unknown class {_shown(spec)}{hint}", sorted({i for c in chosen for i in c}))


def resolve_class(spec: int | str, class_names: Sequence[str] | None, num_classes: int | None = None) -> int:
    """The index of the class ``spec`` names, by the rule of this module.

    Parameters
    ----------
    spec:
        An index (``int`` or a string of digits) or a class name or synonym, as typed by a user.
    class_names:
        The model's class names (index -> name), or ``None`` when it has none (then only indices work).
    num_classes:
        The model's number of classes (default ``len(class_names)``).

    Raises
    ------
    AmbiguousClassError
        The spec fits several classes (the message names them with their indices).
    UnknownClassError
        The spec fits no class (the message lists close names).
    ClassSpecError
        An index out of range, an empty spec, or a name for a model without class names.
    TypeError
        A spec that is neither ``int`` nor ``str``.
    """
    if num_classes is None:
        if class_names is None:
            raise ValueError("resolve_class needs class_names or num_classes")
        num_classes = len(class_names)
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise TypeError(f"a class spec is an int index or a str, got {type(spec).__name__}")
    if isinstance(spec, int):
        return _index(spec, num_classes)
    text = _spaced(spec)
    if not text:
        raise ClassSpecError("no class given: type a class name or an index")
    if re.fullmatch(r"[+-]?\d+", text):
        return _index(int(text), num_classes)
    if not class_names:
        raise ClassSpecError(f"the model has no class names: give the class as an index 0..{num_classes - 1}")
    for key, table in zip((text, text, text.casefold(), text.casefold()), _readings(class_names)):
        matches = table.get(key)
        if matches and len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousClassError(f"{_shown(spec.strip())} is ambiguous: it names classes "
                                      f"{_listed(matches, class_names)}; give the index", matches)
    raise _unknown(spec.strip(), text.casefold(), class_names)
