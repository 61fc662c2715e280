"""Hub weights without hanging: the local cache first, then a download only after a probe answered quickly.

The libraries' own downloads hang for good on a network that accepts connections and never answers, unless
``HF_HUB_OFFLINE=1``. So before any download, :func:`probe` sends one HEAD request to the Hugging Face endpoint
(``HF_ENDPOINT``, default ``https://huggingface.co``) in a daemon thread and gives up after a few seconds,
whatever stage (DNS, connect, TLS, reading) hangs.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from torch import nn

#: Seconds the probe waits for the hub, in all.
PROBE_TIMEOUT_S = 4.0


class HubUnavailableError(RuntimeError):
    """Hub weights are neither cached nor downloadable right now."""


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def probe(timeout_s: float | None = None) -> tuple[bool, str]:
    """(reachable, reason): whether the hub answered a HEAD request within ``timeout_s`` seconds
    (default :data:`PROBE_TIMEOUT_S`)."""
    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    if _offline():
        return False, "HF_HUB_OFFLINE is set"
    url = _endpoint() + "/api/models"
    outcome: dict[str, str] = {}

    def request() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
                outcome["ok"] = ""
        except urllib.error.HTTPError:
            outcome["ok"] = ""  # the server answered, with an error status: it is reachable
        except Exception as error:  # noqa: BLE001 - any failure means unreachable; keep its text
            outcome["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=request, daemon=True, name="relevance-hub-probe")
    thread.start()
    thread.join(timeout_s)
    if "ok" in outcome:
        return True, f"{_endpoint()} answered"
    return False, outcome.get("error", f"{_endpoint()} did not answer within {timeout_s:g} s")


@lru_cache(maxsize=1)
def probe_once() -> tuple[bool, str]:
    """:func:`probe`, remembered for the life of the process (demos and CLI ask several times)."""
    return probe()


def _hub_source(name: str) -> tuple[str, list[str]] | None:
    """(repo id, candidate file names) of a timm model's pretrained weights on the Hugging Face hub."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    repo = cfg.hf_hub_id.split("@")[0]
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
    return repo, files + ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]


def cached_weights(name: str) -> Path | None:
    """The locally cached weight file of timm model ``name``, or ``None``. Never touches the network."""
    source = _hub_source(name)
    if source is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, files = source
    for filename in files:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


#: Weight files of a Hugging Face ``transformers`` repository, in order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def cached_hf_repo(repo: str) -> bool:
    """Whether a Hugging Face ``transformers`` repository (``owner/name``) has its config and weights in the local
    cache. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        found = try_to_load_from_cache(repo, filename)
        return isinstance(found, str) and Path(found).is_file()

    return cached("config.json") and any(cached(f) for f in HF_WEIGHT_FILES)


def weights_available(name: str) -> tuple[bool, str]:
    """(available, reason) for the hub weights of ``name`` (a timm model, a ``transformers`` repository
    ``owner/name``): cached, or the hub answers quickly."""
    if "/" in name and ":" not in name:  # a transformers repository id; timm names have no slash
        if cached_hf_repo(name):
            return True, "cached locally"
        reachable, reason = probe_once()
        return (True, "hub reachable") if reachable else (False, f"no model hub reachable ({reason})")
    if cached_weights(name) is not None:
        return True, "cached locally"
    if _hub_source(name) is None:
        return False, f"timm has no hub weights for {name!r}"
    reachable, reason = probe_once()
    return (True, "hub reachable") if reachable else (False, f"no model hub reachable ({reason})")


def offline_hint(name: str) -> str:
    return (f"To work offline, pass a local checkpoint: models.vit.create({name!r}, checkpoint='weights.safetensors')"
            f" or `relevance explain --model {name} --checkpoint FILE`; or use the embedded model "
            "(`--model shapes-vit`). Set HF_HUB_OFFLINE=1 to skip hub probes.")


def create_pretrained(name: str, **timm_kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=True)`` from the cache, or downloaded when the hub answers;
    otherwise :class:`HubUnavailableError` within seconds, saying how to work offline."""
    import timm

    cached = cached_weights(name)
    if cached is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **timm_kwargs)
    if _hub_source(name) is None:
        raise HubUnavailableError(f"timm has no hub weights for {name!r}. " + offline_hint(name))
    reachable, reason = probe()
    if not reachable:
        raise HubUnavailableError(f"cannot download weights for {name!r}: no model hub reachable ({reason}). "
                                  + offline_hint(name))
    return timm.create_model(name, pretrained=True, **timm_kwargs)


# ------------------------------------------------------------------------------ Hugging Face repositories
def require_hf_repository(repo: str) -> None:
    """Return when ``repo``'s weights are cached or the hub answers within seconds; else
    :class:`HubUnavailableError`, saying how to work offline."""
    if cached_hf_repo(repo):
        return
    reachable, reason = probe()
    if not reachable:
        raise HubUnavailableError(f"cannot download {repo!r}: no model hub reachable ({reason}). To work offline, "
                                  "use the embedded image-text model (`shapes-clip`), or convert a model you have "
                                  "with relevance.models.clip.from_hf / from_open_clip.")


def require_open_clip_weights(architecture: str, tag: str) -> None:
    """As :func:`require_hf_repository`, for open_clip's pretrained weights ``architecture``/``tag``."""
    from open_clip.pretrained import get_pretrained_cfg

    config = get_pretrained_cfg(architecture, tag)
    if not config:
        raise HubUnavailableError(f"open_clip has no pretrained weights {architecture}/{tag}")
    repo = str(config.get("hf_hub", "")).strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str) and Path(found).is_file():
                return
    reachable, reason = probe()
    if not reachable:
        raise HubUnavailableError(f"cannot download open_clip weights {architecture}/{tag}: no model hub reachable "
                                  f"({reason}). To work offline, use the embedded image-text model (`shapes-clip`), "
                                  f"or pass checkpoint= with a local file.")
