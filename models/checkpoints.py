"""Reading local checkpoints safely, for every family: safetensors, or ``torch.load(weights_only=True)`` (never an
arbitrary pickle), and loading them so that any mismatch with the architecture is an error naming the keys."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

#: Keys under which training scripts wrap a state dict (timm, Lightning, open_clip); the first present is used.
WRAPPER_KEYS = ("model", "state_dict", "model_ema")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict stored at ``path``.

    Parameters
    ----------
    path:
        A ``.safetensors`` file, or a file ``torch.load(weights_only=True)`` reads, holding a state dict or one
        wrapped under a key of :data:`WRAPPER_KEYS`.

    Returns
    -------
    dict
        Parameter name -> tensor.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not readable with ``weights_only=True`` (a pickle of arbitrary objects, say), or holds no state
        dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - report any unpickling failure the same way
        raise ValueError(f"cannot read checkpoint {path} with weights_only=True: {error}") from error
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} does not hold a state dict")
    return state


def load_exactly(module: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """Load ``state`` into ``module``; a missing or unexpected key is an error naming the first of them.

    Parameters
    ----------
    module:
        The model.
    state:
        Its state dict (e.g. from :func:`read_state_dict`).
    path:
        Where the state came from, for the message.
    """
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match the architecture: missing {sorted(missing)[:8]}, "
                         f"unexpected {sorted(unexpected)[:8]}")
