"""The registered networks. Every model maps (B, 1, 28, 28) floats in [0, 1] to (B, 10) logits.

Softmax is not part of the models: the loss (cross-entropy on logits) and the Recognizer apply it,
which is numerically safer than Keras' softmax-then-log and gives the same function.
"""

from __future__ import annotations

from torch import nn

from digits.errors import ConfigError
from digits.models.choices import HEADS, STEMS
from digits.models.layers import FlattenHWC, Levels, check_rate, dct_filters, keras_init
from digits.models.layers import activation as make_act
from digits.models.registry import register_model
from digits.spec import IMAGE_SIZE, NUM_CLASSES


def _check_head(head: str) -> str:
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    return head


def _conv_block(cin: int, cout: int, k: int, act: str, batchnorm: bool, stride: int = 1, pad: int = 0) -> list:
    # With batchnorm the conv bias is redundant (BN's beta does its job), as in ResNet.
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(make_act(act))
    return layers


@register_model
def seed(
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float = 0.2,
    head: str = "flatten",
    width: int = 32,
) -> nn.Module:
    """The article's network: Conv(32,3x3)-MaxPool-Flatten-Dense(128)-Dropout(0.2)-Dense(10); 693,962 params."""
    _check_head(head)
    check_rate("dropout", dropout)
    act = activation
    layers = _conv_block(1, width, 3, act, batchnorm)  # (B, 32, 26, 26)
    layers.append(nn.MaxPool2d(2))  # (B, 32, 13, 13)
    if head == "flatten":
        layers += [FlattenHWC(), nn.Linear(width * 13 * 13, 128)]  # (B, 5408) -> (B, 128)
    else:  # global average pooling: far fewer parameters, no position-specific weights
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 128)]  # (B, 32) -> (B, 128)
    layers += [make_act(act), nn.Dropout(dropout), nn.Linear(128, NUM_CLASSES)]
    return keras_init(nn.Sequential(*layers))


@register_model
def lenet5(activation: str = "tanh", batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): two 5x5 convs with average pooling, FC 120-84-10; 61,706 params."""
    check_rate("dropout", dropout)
    act = activation
    return nn.Sequential(
        *_conv_block(1, 6, 5, act, batchnorm, pad=2),  # (B, 6, 28, 28): padding stands in for the 32x32 input
        nn.AvgPool2d(2),  # (B, 6, 14, 14)
        *_conv_block(6, 16, 5, act, batchnorm),  # (B, 16, 10, 10)
        nn.AvgPool2d(2),  # (B, 16, 5, 5)
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        make_act(act),
        nn.Dropout(dropout),
        nn.Linear(120, 84),
        make_act(act),
        nn.Linear(84, NUM_CLASSES),
    )


@register_model
def mlp(activation: str = "relu", hidden: int = 256, dropout: float = 0.2, batchnorm: bool = False) -> nn.Module:
    """A plain two-hidden-layer perceptron baseline: 784-256-256-10, no convolutions."""
    check_rate("dropout", dropout)

    def block(cin: int, cout: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Linear(cin, cout, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(cout))
        return [*layers, make_act(activation), nn.Dropout(dropout)]

    hidden_layers = [*block(IMAGE_SIZE**2, hidden), *block(hidden, hidden)]
    return nn.Sequential(nn.Flatten(), *hidden_layers, nn.Linear(hidden, NUM_CLASSES))


@register_model
def fastnet(
    activation: str = "relu",
    widths: tuple[int, int, int] = (16, 32, 64),
    dropout: float = 0.0,
    stem: str = "pool",
    levels: bool = False,
) -> nn.Module:
    """Three 3x3 conv-pool-BN blocks and a linear layer: 99% in one epoch, built for speed; 29,178 params.

    ``levels`` puts a :class:`Levels` first: each picture's background to 0 and its ink towards 1, whatever its
    brightness, contrast or polarity, so the network need not learn lighting (nothing in it is trained).

    ``stem`` is the first block:
      * ``"pool"``: a convolution at full resolution, then max-pooling, like the other two blocks;
      * ``"stride"``: a stride-2 convolution, which computes a quarter of the values and pools none
        (the first block is the largest cost of a training step at 28x28);
      * ``"dct"``: the stride-2 convolution with fixed weights, the 3x3 DCT basis and its negatives
        (``dct_filters``; at most 18 channels), and a batchnorm without scale and shift: nothing in it
        is trained, so training computes no gradient for it, nor the second convolution's input
        gradient. A learned first layer of 16 filters spans at most the same 9 dimensions of a 3x3 patch.
    """
    check_rate("dropout", dropout)
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose one of: {', '.join(STEMS)}")
    if not isinstance(levels, bool):
        raise ConfigError(f"model option levels must be true or false, got {levels!r}")
    if len(widths) != 3 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError(f"widths must be three positive channel counts such as [16, 32, 64], got {widths!r}")
    c1, c2, c3 = widths

    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        # Pool before batchnorm and activation (as airbench does): BN and ReLU then run on a quarter of
        # the pixels, which made a training step ~40% faster here; max-pool commutes with the ReLU.
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        pool = [nn.MaxPool2d(2)] if stride == 1 else []
        return [conv, *pool, nn.BatchNorm2d(cout), make_act(activation)]

    if stem == "dct":
        conv = nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False)
        conv.weight = nn.Parameter(dct_filters(c1), requires_grad=False)
        first = [conv, nn.BatchNorm2d(c1, affine=False), make_act(activation)]
    else:
        first = block(1, c1, stride=2 if stem == "stride" else 1)
    return nn.Sequential(
        *([Levels()] if levels else []),
        *first,  # (B, 16, 14, 14)
        *block(c1, c2),  # (B, 32, 7, 7)
        *block(c2, c3),  # (B, 64, 3, 3)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c3 * 9, NUM_CLASSES),
    )


@register_model
def deepnet(activation: str = "relu", dropout: float = 0.4) -> nn.Module:
    """Seven conv layers with batchnorm and dropout, the strongest simple MNIST CNN known; 325,994 params.

    After C. Deotte, "How to choose CNN architecture MNIST" (Kaggle, 2018): 32C3-32C3-32C5S2 /
    64C3-64C3-64C5S2 / 128C4, dropout 0.4 after each stage; strided 5x5 convs replace max-pooling.
    """
    check_rate("dropout", dropout)
    a = activation
    return nn.Sequential(
        *_conv_block(1, 32, 3, a, True),  # (B, 32, 26, 26)
        *_conv_block(32, 32, 3, a, True),  # (B, 32, 24, 24)
        *_conv_block(32, 32, 5, a, True, stride=2, pad=2),  # (B, 32, 12, 12)
        nn.Dropout(dropout),
        *_conv_block(32, 64, 3, a, True),  # (B, 64, 10, 10)
        *_conv_block(64, 64, 3, a, True),  # (B, 64, 8, 8)
        *_conv_block(64, 64, 5, a, True, stride=2, pad=2),  # (B, 64, 4, 4)
        nn.Dropout(dropout),
        *_conv_block(64, 128, 4, a, True),  # (B, 128, 1, 1)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(128, NUM_CLASSES),
    )
