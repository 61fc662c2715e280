"""LRP-aware modules for building models. Same parameters and names as their ``torch.nn`` counterparts, so
state dicts load unchanged; their forward passes go through :mod:`relevance.ops`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from relevance import ops


class Linear(nn.Linear):
    """``nn.Linear``; rule kind ``linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias)


class PatchConv2d(nn.Conv2d):
    """The convolution on pixels (patch embedding); rule kind ``input_conv``. No padding modes, groups or
    dilation: a patch embedding has none."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.input_conv2d(x, self.weight, self.bias, self.stride, self.padding)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis; rule kind ``normalization``."""

    def forward(self, x: Tensor) -> Tensor:
        if ops.rewriting_tape() is None:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class Activation(nn.Module):
    """An element-wise activation by name (``gelu``, ``gelu_tanh``, ``quick_gelu``, ``tanh``, ``relu``); rule
    kind ``activation``."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ops.ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; known: {', '.join(ops.ACTIVATIONS)}")
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return ops.activation(x, self.name)

    def extra_repr(self) -> str:
        return self.name


class Dropout(nn.Dropout):
    """``nn.Dropout`` that is the identity while an explanation records, so maps are deterministic."""

    def forward(self, x: Tensor) -> Tensor:
        return x if ops.explaining() else super().forward(x)


class LayerScale(nn.Module):
    """Per-channel scaling ``x * gamma`` (CaiT/DeiT-III LayerScale); rule kind ``scale``."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return ops.scale(x, self.gamma)
