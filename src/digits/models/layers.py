"""Small building blocks shared by the registered networks."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}") from None


class FlattenHWC(nn.Module):
    """Flatten (B, C, H, W) in height-width-channel order, as Keras flattens its NHWC tensors.

    The order is only a permutation of the next layer's weights, but it is the one that matches a
    channels-last tensor's memory: flattening is then free, where channel-first order copies every batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def check_rate(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def keras_init(model: nn.Module) -> nn.Module:
    """Keras' defaults for Conv2D and Dense: glorot-uniform weights, zero biases.

    PyTorch's default (kaiming-uniform with a=sqrt(5)) is a different distribution; an exact
    reproduction of a Keras recipe needs Keras' initial weights. Batchnorm keeps gamma=1, beta=0.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
