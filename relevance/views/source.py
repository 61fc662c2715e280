"""Where a view's data comes from: a :class:`TokenAttention`, a capture, or a model and its inputs."""

from __future__ import annotations

from typing import Any

from relevance.views.capture import AttentionCapture, TokenAttention, capture

__all__ = ["as_sample"]


def as_sample(source: Any, inputs: Any = None, *, sample: int = 0, stream: str | None = None,
              query_key: bool = False, gradients: bool = False, target: Any = None) -> TokenAttention:
    """The :class:`TokenAttention` a view draws.

    Parameters
    ----------
    source:
        A :class:`TokenAttention` (used as it is), an :class:`AttentionCapture` (``sample`` of ``stream`` is taken)
        or a model, which is run on ``inputs`` with :func:`~relevance.views.capture`.
    inputs:
        The model's inputs (only with a model).
    sample, stream:
        Which sample and stream (default: the first stream).
    query_key, gradients, target:
        What to capture when ``source`` is a model (see :func:`~relevance.views.capture`).

    Returns
    -------
    TokenAttention
    """
    if isinstance(source, (TokenAttention, AttentionCapture)) and inputs is not None:
        raise ValueError("inputs are only taken with a model, not with captured attention")
    if isinstance(source, TokenAttention):
        return source
    if isinstance(source, AttentionCapture):
        return source.sample(sample, stream)
    if inputs is None:
        raise ValueError("pass captured attention (relevance.views.capture(model, inputs)) or a model and inputs")
    return capture(source, inputs, query_key=query_key, gradients=gradients, target=target).sample(sample, stream)
