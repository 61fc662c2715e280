"""The forward function captum sees, and baselines.

:class:`SiteForward` computes the explained score of each row from the values of one input site of one stream: the
rows' samples are taken from the batch (:meth:`relevance.adapter.Adapter.select_rows`), the model runs as usual
(a plain autograd graph: no LRP rule nodes, dropout off), and :func:`relevance.ops.mark_input` hands the model the
given values at that site (:attr:`relevance.tape.Tape.substitutes`). So the other embeddings and the attention
mask of a text, or the other tower of an image-text model, stay what the batch makes them. Positions that must
never change (special tokens, padding) are held at their own values, so no method perturbs them and their
gradient is zero. Nothing is kept on the model.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from relevance.adapter import Adapter, Batch, TextInputs, check_finite
from relevance.tape import TokenSpace, recording
from relevance.targets import Target

#: Embedding-space baselines of text streams: the stream's tokens replaced by this token of the tokenizer.
TOKEN_BASELINES = ("pad", "mask", "unk")


def reference_pass(adapter: Adapter, batch: Batch, stream: str, site: str | None,
                   preferred: str | None = None) -> tuple[Tensor, str, Tensor, TokenSpace | None]:
    """One plain forward pass without gradients, recording the input sites.

    Parameters
    ----------
    adapter, batch:
        The model's adapter and a prepared batch.
    stream:
        The token stream whose site is read.
    site:
        The input site's name; ``None``: ``preferred`` when the stream has it, else the stream's first site.
    preferred:
        The family's site for the method (:attr:`relevance.methods.Conventions.input_site`), or ``None``.

    Returns
    -------
    tuple
        The model output, the site's name, its values (B, ...) and the stream's token space (or ``None``).
    """
    with recording() as tape:
        try:
            with torch.no_grad():
                output = adapter.forward(batch)
            sites = tape.inputs.get(stream, {})
            if not sites:
                raise ValueError(f"the {stream!r} stream marked no input site (relevance.ops.mark_input): gradient "
                                 "and perturbation methods need one")
            name = site or (preferred if preferred in sites else None) or next(iter(sites))
            if name not in sites:
                raise ValueError(f"the {stream!r} stream has no input site {name!r}; its sites: {', '.join(sites)}")
            values, space = sites[name].detach(), tape.spaces.get(stream)
        finally:
            tape.clear()
    return output.detach(), name, values, space


class SiteForward:
    """``forward(values (B', ...), rows (B',)) -> scores (B',)``: the score of sample ``rows[j]`` when its site holds
    ``values[j]`` (see the module docstring). Values shorter than the input along the token axis (a sample's own
    tokens without the batch's padding) are completed with the input's values."""

    def __init__(self, adapter: Adapter, batch: Batch, stream: str, site: str, target: Target, original: Tensor,
                 fixed: Tensor | None):
        self.adapter, self.batch, self.stream, self.site, self.target = adapter, batch, stream, site, target
        self.original = original
        self.fixed = None if fixed is None else fixed.reshape(*fixed.shape, *[1] * (original.dim() - fixed.dim()))

    def __call__(self, values: Tensor, rows: Tensor) -> Tensor:
        """The explained scores.

        Parameters
        ----------
        values:
            (B', ...) values at the site, or (B', L', ...) with L' <= L for texts (the rest is the input's).
        rows:
            (B',) the sample of each row (captum expands it as it expands the inputs).

        Returns
        -------
        Tensor
            (B',) the target's score of each row.
        """
        rows = rows.to(device=self.original.device, dtype=torch.long)
        if values.shape[0] != rows.shape[0]:
            raise RuntimeError(f"{values.shape[0]} input rows but {rows.shape[0]} sample indices")
        original = self.original[rows]
        if values.shape[1:] != original.shape[1:]:
            values = torch.cat([values, original[:, values.shape[1]:]], dim=1)
        if self.fixed is not None:
            values = torch.where(self.fixed[rows], original, values)
        whole = rows.shape[0] == self.batch.size and bool((rows == torch.arange(len(rows), device=rows.device)).all())
        batch = self.batch if whole else self.adapter.select_rows(self.batch, rows)
        key = (self.stream, self.site)
        with recording() as tape:
            try:
                tape.substitutes[key] = values
                output = self.adapter.forward(batch)
                if key not in tape.substituted:
                    raise RuntimeError(f"the model did not mark input site {self.site!r} of stream {self.stream!r} "
                                       "in this forward pass")
            finally:
                tape.clear()
        return self.target.select(rows).score(output)


def resolve_baseline(value: Any, *, adapter: Adapter, batch: Batch, stream: str, site: str, original: Tensor,
                     fixed: Tensor | None) -> Tensor:
    """The baseline values of the option ``baseline`` (Sundararajan et al. 2017 call them the baseline input x').

    Parameters
    ----------
    value:
        ``"zero"``, a number, a tensor broadcastable to the values (one per sample, or one for all), a function
        ``values (B, ...) -> baseline``, or for text streams ``"pad"``, ``"mask"``, ``"unk"``: the site's values with
        the stream's tokens replaced by that token of the tokenizer (embedding-space baselines).
    adapter, batch, stream, site:
        Where the values come from.
    original:
        (B, ...) the input values at the site.
    fixed:
        (B, L) text positions that never change (they keep the input's values), or ``None``.

    Returns
    -------
    Tensor
        (B, ...) like ``original``.
    """
    if isinstance(value, str):
        if value == "zero":
            base = torch.zeros_like(original)
        elif value in TOKEN_BASELINES:
            base = token_baseline(value, adapter, batch, stream, site, fixed)
        else:
            raise ValueError(f"unknown baseline {value!r}: use 'zero', {', '.join(map(repr, TOKEN_BASELINES))} "
                             "(texts), a number, a tensor or a function")
    elif isinstance(value, numbers.Real):
        base = torch.full_like(original, float(value))
    else:
        base = value(original.clone()) if callable(value) and not isinstance(value, (Tensor, np.ndarray)) else value
        base = torch.as_tensor(base).to(device=original.device, dtype=original.dtype)
        try:
            base = torch.broadcast_to(base, original.shape)
        except RuntimeError:
            raise ValueError(f"the baseline of shape {tuple(base.shape)} does not broadcast to the input values "
                             f"{tuple(original.shape)} of site {site!r}") from None
    base = base.to(dtype=original.dtype).contiguous()
    check_finite(base, "the baselines")
    if fixed is not None:
        base = torch.where(fixed.reshape(*fixed.shape, *[1] * (original.dim() - 2)), original, base)
    return base


def token_baseline(name: str, adapter: Adapter, batch: Batch, stream: str, site: str, fixed: Tensor) -> Tensor:
    """Embedding-space baseline: the site's values when every token of ``stream`` that may change is the
    tokenizer's ``name`` token.

    Parameters
    ----------
    name:
        ``"pad"``, ``"mask"`` or ``"unk"``: the tokenizer's ``{name}_token_id``.
    adapter, batch, stream, site:
        The model (:meth:`~relevance.adapter.Adapter.with_token_ids` swaps the ids; the attention mask, token
        types and other streams stay), the batch and the site read.
    fixed:
        (B, L) positions kept (special tokens, padding).

    Returns
    -------
    Tensor
        (B, L, ...) the site's values, e.g. the [PAD] embeddings.
    """
    inputs = batch.streams.get(stream)
    if not isinstance(inputs, TextInputs):
        raise ValueError(f"baseline {name!r} replaces tokens: the {stream!r} stream holds no text (explain one "
                         "stream with stream=...)")
    token = getattr(adapter.info.tokenizer, f"{name}_token_id", None)
    if token is None:
        raise ValueError(f"baseline {name!r}: the model's tokenizer has no {name}_token_id")
    ids = torch.where(fixed.to(inputs.input_ids.device), inputs.input_ids, torch.full_like(inputs.input_ids, token))
    _, _, values, _ = reference_pass(adapter, adapter.with_token_ids(batch, stream, ids), stream, site)
    return values
