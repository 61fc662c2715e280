"""Which models the demo serves: a fixed list, loaded once at start, looked up by label.

A web user only ever picks a *label* from a fixed dropdown; the server maps it to a model object
that was loaded before the app started (:class:`ModelCatalog`). No name or path coming from the
browser is ever passed to a loader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

__all__ = [
    "CHECK_FAILED_REASON",
    "EMBEDDED_LABEL",
    "HubModel",
    "LOAD_FAILED_REASON",
    "ModelCatalog",
    "NO_HUB_WEIGHTS_REASON",
    "OFFLINE_REASON",
    "UnknownModelError",
    "hub_models",
    "hub_weights_available",
    "load_cached_catalog",
    "load_catalog",
]

logger = logging.getLogger(__name__)

#: Dropdown label of the embedded shapes model.
EMBEDDED_LABEL = "Shapes ViT (embedded, offline)"

#: What the page says about a hub model it cannot offer; the technical detail goes to the server log only.
OFFLINE_REASON = ("no model hub reachable (offline) and no cached weights: use the embedded model, or a local "
                  "checkpoint with `relevance explain --model NAME --checkpoint FILE`")
NO_HUB_WEIGHTS_REASON = "no downloadable weights for this model"
CHECK_FAILED_REASON = "the model hub could not be checked (details in the server log)"
LOAD_FAILED_REASON = "its weights could not be loaded (details in the server log)"


@dataclass(frozen=True)
class HubModel:
    """An ImageNet model whose weights come from the model hub (or its local cache).

    Attributes
    ----------
    label:
        The dropdown label.
    name:
        The name passed to :func:`models.load_model` and the hub availability check.
    """

    label: str
    name: str


def hub_models() -> tuple[HubModel, ...]:
    """The hub models the demo offers when their weights are reachable or cached (``models.HUB_MODELS``)."""
    from relevance.models import HUB_MODELS

    return tuple(HubModel(label, name) for label, name in HUB_MODELS.items())


class UnknownModelError(ValueError):
    """A model label that is not one of the loaded models."""


@dataclass
class ModelCatalog:
    """The models the app serves, loaded once and shared read-only by all requests.

    Attributes
    ----------
    models:
        Label -> loaded model, in dropdown order.
    unavailable:
        Label -> the reason the model is not offered (e.g. weights unreachable).
    hub_labels:
        The labels in ``models`` that are hub (ImageNet) models.
    """

    models: dict[str, torch.nn.Module]
    unavailable: dict[str, str] = field(default_factory=dict)
    hub_labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("the demo needs at least one model")

    @classmethod
    def from_models(cls, models: Mapping[str, torch.nn.Module]) -> "ModelCatalog":
        """A catalog of already loaded models (tests inject small ones this way)."""
        return cls(models=dict(models))

    @property
    def labels(self) -> list[str]:
        """The labels of the loaded models, in dropdown order."""
        return list(self.models)

    @property
    def default_label(self) -> str:
        """The model selected when the page opens: the first hub model, else the first one."""
        for label in self.models:
            if label in self.hub_labels:
                return label
        return self.labels[0]

    @property
    def offline(self) -> bool:
        """True when hub models were wanted but none could be loaded."""
        return not self.hub_labels and bool(self.unavailable)

    def get(self, label: str) -> torch.nn.Module:
        """The loaded model for a dropdown label; :class:`UnknownModelError` for anything else."""
        if not isinstance(label, str) or label not in self.models:
            raise UnknownModelError(
                f"Unknown model {str(label)[:80]!r}. Choose one of: {', '.join(self.models)}."
            )
        return self.models[label]


def hub_weights_available(name: str) -> tuple[bool, str]:
    """Whether the hub weights of ``name`` are cached or quickly reachable, with the reason if not.

    The reason is a sentence for the page (:data:`OFFLINE_REASON`...); the technical one (e.g. a ``URLError``) is
    logged. Uses ``models.hub.weights_available``; never downloads anything itself.
    """
    from relevance.models.hub import weights_available

    try:
        available, reason = weights_available(name)
    except Exception:  # the check must never stop the demo from starting
        logger.warning("hub availability check for %s failed", name, exc_info=True)
        return False, CHECK_FAILED_REASON
    if available:
        return True, str(reason)
    logger.info("hub weights of %s unavailable: %s", name, reason)
    if str(reason).startswith("timm has no hub weights"):
        return False, NO_HUB_WEIGHTS_REASON
    return False, OFFLINE_REASON


def load_catalog(
    device: str | torch.device = "cpu",
    *,
    hub: Sequence[HubModel] | None = None,
    availability: Callable[[str], tuple[bool, str]] = hub_weights_available,
) -> ModelCatalog:
    """Load every model the demo offers, once: the hub models that are available, then the embedded one.

    ``hub`` defaults to :func:`hub_models`. Hub models whose weights are neither cached nor
    reachable are listed in :attr:`ModelCatalog.unavailable` with the reason (asking
    ``availability``, which never downloads); the embedded shapes model ships with the package,
    so the demo starts offline within seconds.
    """
    import relevance.models as models
    from relevance.models.embedded import load_embedded

    loaded: dict[str, torch.nn.Module] = {}
    unavailable: dict[str, str] = {}
    for hub_model in hub_models() if hub is None else hub:
        available, reason = availability(hub_model.name)
        if not available:
            unavailable[hub_model.label] = reason
            continue
        try:
            loaded[hub_model.label] = models.load_model(hub_model.name, device=device)
        except Exception:
            logger.warning("could not load %s", hub_model.name, exc_info=True)
            unavailable[hub_model.label] = LOAD_FAILED_REASON
    hub_labels = frozenset(loaded)
    try:
        loaded[EMBEDDED_LABEL] = load_embedded(device=device)
    except (OSError, ValueError):  # missing or damaged assets/shapes_vit
        logger.warning("could not load the embedded model", exc_info=True)
        unavailable[EMBEDDED_LABEL] = LOAD_FAILED_REASON
    if not loaded:
        reasons = "; ".join(f"{label}: {reason}" for label, reason in unavailable.items())
        raise RuntimeError(f"no model could be loaded ({reasons})")
    return ModelCatalog(models=loaded, unavailable=unavailable, hub_labels=hub_labels)


def load_cached_catalog(hub: Mapping[str, str], *, modality: str, embedded_label: str,
                        load_embedded: Callable[[], torch.nn.Module], device: str | torch.device = "cpu",
                        cached: Callable[[str], bool] | None = None, not_cached_reason: str) -> ModelCatalog:
    """A tab's catalog, loaded once: the hub models already in the local Hugging Face cache (nothing is
    downloaded), then the embedded model, always.

    Parameters
    ----------
    hub:
        Dropdown label -> hub name of the models offered when cached.
    modality:
        ``"text"`` or ``"image-text"``: passed to :func:`relevance.models.create`.
    embedded_label, load_embedded:
        The embedded model's label and its loader.
    device:
        Where the models run.
    cached:
        Whether a hub name is in the local cache (default :func:`relevance.models.hub.cached_hf_repo`).
    not_cached_reason:
        What the page says about a hub model that is not cached.

    Returns
    -------
    ModelCatalog
        The loaded models by label, and the hub models not offered with why (a broken cache entry is logged and
        listed, it never stops the demo).
    """
    import relevance.models as models
    from relevance.models.hub import cached_hf_repo

    is_cached = cached or cached_hf_repo
    loaded: dict[str, torch.nn.Module] = {}
    unavailable: dict[str, str] = {}
    for label, name in hub.items():
        try:
            if not is_cached(name):
                unavailable[label] = not_cached_reason
                continue
            loaded[label] = models.create(name, device=str(device), modality=modality)
        except Exception:  # a broken cache entry must not stop the demo
            logger.warning("could not load the %s model %s", modality, name, exc_info=True)
            unavailable[label] = LOAD_FAILED_REASON
    hub_labels = frozenset(loaded)
    loaded[embedded_label] = load_embedded()
    return ModelCatalog(models=loaded, unavailable=unavailable, hub_labels=hub_labels)
