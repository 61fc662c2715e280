"""The model registry: one ``create(name)`` for embedded models and hub names of every family.

Each family registers itself with :func:`register_family`: a predicate that recognises its names, a creator, and
the curated names it lists. Embedded models (trained by this project, shipped in ``relevance.assets``) register
with :func:`register_embedded`. ``create(None)`` picks the default model of a modality: the hub model when its
weights are cached or the hub answers within seconds, else the embedded one, saying so in one line.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Family:
    """A model family: which names it recognises, how it creates them, and the names it lists."""

    name: str
    recognizes: Callable[[str], bool]
    create: Callable[..., nn.Module]
    listed: Callable[[], list[str]]
    description: str = ""
    suggestions: Callable[[str], list[str]] = lambda name: []


@dataclass(frozen=True)
class Embedded:
    """A model shipped with the package: offline, small, trained by this project."""

    name: str
    modality: str
    load: Callable[..., nn.Module]
    description: str


_FAMILIES: dict[str, Family] = {}
_EMBEDDED: dict[str, Embedded] = {}
#: Per modality: (hub name, embedded name) of the default model.
_DEFAULTS: dict[str, tuple[str | None, str]] = {}


class UnknownModelError(ValueError):
    """A name no family and no embedded model recognises."""


def register_family(family: Family) -> None:
    _FAMILIES[family.name] = family


def register_embedded(model: Embedded) -> None:
    _EMBEDDED[model.name] = model


def register_default(modality: str, hub_name: str | None, embedded_name: str) -> None:
    _DEFAULTS[modality] = (hub_name, embedded_name)


def _ensure_registered() -> None:
    # importing a family's module registers it; the families import their libraries lazily
    from relevance.models import bert, clip, embedded, reviews, shapes_clip, vit  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Names ``create`` accepts: embedded models first, then each family's curated hub names (families accept
    more: any timm ViT/DeiT name, for one). ``pattern`` filters with shell wildcards (``"*deit*"``)."""
    _ensure_registered()
    names = sorted(_EMBEDDED, key=_listing_order)  # the same order whichever family module was imported first
    for family in _FAMILIES.values():
        names.extend(n for n in family.listed() if n not in names)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


#: Embedded models are listed by modality in this order (then by name).
_MODALITY_ORDER = ("image", "text", "image-text")


def _listing_order(name: str) -> tuple[int, str]:
    modality = _EMBEDDED[name].modality
    return (_MODALITY_ORDER.index(modality) if modality in _MODALITY_ORDER else len(_MODALITY_ORDER), name)


def embedded_models() -> dict[str, Embedded]:
    _ensure_registered()
    return dict(_EMBEDDED)


def create(name: str | None = None, *, pretrained: bool = True, checkpoint: str | Path | None = None,
           device: str = "cpu", modality: str = "image", quiet: bool = False, **kwargs) -> nn.Module:
    """An LRP-aware model by name, in evaluation mode on ``device``.

    ``name``: an embedded model (``"shapes-vit"``, see :func:`list_models`), a hub name of a family (any timm
    ViT/DeiT name; weights from the local cache, or downloaded after a hub probe answered within seconds, or from
    ``checkpoint``), or ``None``: the ``modality``'s default hub model when its weights are cached or the hub
    answers, else its embedded model (one line on stderr says so). ``pretrained=False`` gives random weights.
    ``kwargs`` go to the family's creator (e.g. ``num_classes`` for timm).
    """
    _ensure_registered()
    if name is None:
        if checkpoint is not None:
            raise ValueError("a checkpoint needs the name of its architecture (e.g. a timm model name)")
        name = _default_name(modality, quiet)
    if name in _EMBEDDED:
        if checkpoint is not None:
            raise ValueError(f"--checkpoint cannot be combined with the embedded model {name!r}")
        return _EMBEDDED[name].load(device=device).eval()
    for family in _FAMILIES.values():
        if family.recognizes(name):
            model = family.create(name, pretrained=pretrained, checkpoint=checkpoint, **kwargs)
            return model.to(device).eval()
    known = list_models()
    candidates = known + [n for family in _FAMILIES.values() for n in family.suggestions(name)]
    close = list(dict.fromkeys(difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)))
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise UnknownModelError(f"unknown model {name!r}; valid models: {', '.join(known)}, or another name of a "
                            f"family ({', '.join(f.description for f in _FAMILIES.values())}){hint}")


def _default_name(modality: str, quiet: bool) -> str:
    from relevance.models import hub

    if modality not in _DEFAULTS:
        raise UnknownModelError(f"no default model for modality {modality!r}; modalities: {', '.join(_DEFAULTS)}")
    hub_name, embedded_name = _DEFAULTS[modality]
    if hub_name is not None:
        available, reason = hub.weights_available(hub_name)
        if available:
            return hub_name
        if not quiet:
            print(f"relevance: {reason}; using the embedded model {embedded_name!r} "
                  f"({_EMBEDDED[embedded_name].description})", file=sys.stderr)
    return embedded_name
