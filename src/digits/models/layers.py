"""Small building blocks shared by the registered networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from digits.errors import ConfigError
from digits.models.choices import ACTIVATIONS

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}") from None


def dct_filters(n: int) -> torch.Tensor:
    """(n, 1, 3, 3): the 3x3 DCT-II basis, lowest frequencies first, each filter followed by its negative.

    Nine orthonormal filters (local brightness, then horizontal and vertical change, ...) span every 3x3
    patch; with the negatives a ReLU after them keeps both signs. n may be at most 18.
    """
    if not 1 <= n <= 18:
        raise ConfigError(f"a 3x3 DCT filter bank has 1 to 18 filters (9 and their negatives), asked for {n}")

    def basis(u: int, v: int) -> torch.Tensor:
        cu = torch.tensor([math.cos(math.pi * (2 * i + 1) * u / 6) for i in range(3)])
        cv = torch.tensor([math.cos(math.pi * (2 * j + 1) * v / 6) for j in range(3)])
        f = torch.outer(cu, cv)
        f = torch.where(f.abs() < 1e-9, 0.0, f)  # cos(pi/2) is 6e-17 in floating point, not 0
        return f / f.norm()

    by_frequency = sorted(((u, v) for u in range(3) for v in range(3)), key=lambda uv: (uv[0] + uv[1], uv))
    filters = [sign * basis(u, v) for u, v in by_frequency for sign in (1.0, -1.0)]
    return torch.stack(filters[:n]).unsqueeze(1)


# Test-time augmentation: the image itself and one-pixel shifts. Never flips: a flipped 2 is not a 2.
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move (N, ..., H, W) images by (dy, dx) pixels, filling with background (0) instead of wrapping around."""
    if dy == 0 and dx == 0:
        return images
    h, w = images.shape[-2:]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


class ShiftAverage(nn.Module):
    """``net`` while training; in eval mode, ``net``'s prediction averaged over the image and its shifts.

    Eval mode returns the log of the mean softmax probability over ``TTA_SHIFTS`` (the image and its four
    one-pixel shifts): a softmax of it gives the averaged probabilities, so whatever reads logits
    (evaluation, temperature scaling, the reader, ONNX export) works unchanged, at five times the cost of
    a prediction. ``create_model(..., tta=True)`` wraps any network in one. It starts in ``net``'s mode.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        return mean_probability_logits([self.net(shift_images(x, dy, dx)) for dy, dx in TTA_SHIFTS])


def mean_probability_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """Logits whose softmax is the mean of the softmaxes of ``logits`` (several predictions of one batch): the log
    of the mean probability, so whatever reads logits (evaluation, temperature scaling, the reader, ONNX export)
    reads the average unchanged."""
    log_p = torch.stack([z.float().log_softmax(dim=1) for z in logits])
    return torch.logsumexp(log_p, dim=0) - math.log(len(logits))


class Levels(nn.Module):
    """Sets a picture's levels as MNIST's before the network sees it: background 0, ink rising to 1.

    Per image, from its sorted pixels: the background is the median (a digit covers a fifth of its picture),
    the ink is whichever of the 1st and 99th percentiles lies farther from it (dark ink on a light page is
    turned negative), and the levels are stretched so that the background goes to 0 and that ink to 1,
    clipped to [0, 1]. An MNIST digit (background 0, ink 1) passes unchanged; the same digit on a grey or
    light page, at low contrast or negative comes out as it. Nothing in it is trained. Sorting exports to
    ONNX (TopK), so the shipped ONNX file does the same.
    """

    LOW, HIGH = 0.01, 0.99  # the percentiles the ink is looked for at
    MIN_CONTRAST = 0.05  # a picture whose ink is fainter than this is stretched by at most 1 / MIN_CONTRAST

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        ordered = flat.sort(dim=1).values
        n = ordered.shape[1]
        low, mid, high = (ordered[:, round(q * (n - 1))] for q in (self.LOW, 0.5, self.HIGH))
        dark = (mid - low) > (high - mid)  # the ink is darker than the background
        ink = torch.where(dark, low, high)
        span = (ink - mid).abs().clamp_min(self.MIN_CONTRAST)
        sign = torch.where(dark, -1.0, 1.0).to(x.dtype)
        scale = (sign / span).view(-1, *([1] * (x.dim() - 1)))
        return ((x - mid.view_as(scale)) * scale).clamp(0.0, 1.0)


class FlattenHWC(nn.Module):
    """Flatten (B, C, H, W) in height-width-channel order, as Keras flattens its NHWC tensors.

    The order is only a permutation of the next layer's weights, but it is the one that matches a
    channels-last tensor's memory: flattening is then free, where channel-first order copies every batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def check_rate(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")
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
