"""An exponential moving average of a network's weights (Polyak averaging), evaluated in its place."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` to hold the average; it starts as the model itself."""
    return copy.deepcopy(model)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for the parameters; buffers (batchnorm statistics) are copied."""
    ema_p: list[torch.Tensor] = list(ema.parameters())
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
