"""Hand-written passes for two networks' first blocks, for speed on CPUs; same results as autograd.

At MNIST's sizes a first block (a convolution of one input channel and what follows it) is several small
PyTorch kernels, mostly overhead for a few million multiply-adds. The C kernels in ``digits/train/fast/convblocks.c``
(compiled on first use, ``digits.train.fast.native``) do each block in one pass forward and one or two back. Both
serve float32 models with a multiple of 16 channels; elsewhere, or without a C compiler, training runs
as before. With bf16 a kernel convolves in float32 and stores only its output in bfloat16, which is
closer to float32 than autocast's bfloat16 convolution. tests/test_fused.py checks them against autograd.

``SeedGradients``: the article's network. At its batch of 32 a whole training step is small kernels plus
the overhead around them (autograd's graph, autocast's casts), so this computes the loss and every
gradient without building a graph and leaves them in ``p.grad``; the optimizer step, schedules,
checkpoints and resume are unchanged. It is used only when ``seed_layers`` recognises the network.
What it does differently, none of which changes the function:
  * runs the first block (convolution, bias, ReLU, max-pool) in C where the kernel serves; otherwise
    with PyTorch operations, max-pooling before the ReLU (relu(max(x)) = max(relu(x))) so the ReLU
    runs on a quarter of the values;
  * keeps activations channels-last end to end (the model flattens in height-width-channel order);
  * skips the input gradient of the first convolution, which nothing needs.

``StemForward``: fastnet with a stride-2 stem, learned (``stem="stride"``) or fixed (``stem="dct"``, the
``fast`` preset). Its step is dominated by later convolutions that oneDNN runs well, so only the stem
(convolution, batchnorm with the batch's statistics, ReLU) runs in C, as an autograd function; the rest
of the network runs through autograd. A fixed stem has no backward pass at all.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from digits.models.layers import FlattenHWC
from digits.spec import IMAGE_SIZE
from digits.train.fast import native

Grads = tuple[torch.Tensor, torch.Tensor]  # (loss, logits)
KERNEL_CHANNELS = 16  # convblocks.c works on channels in groups of this many


@functools.cache
def convblocks() -> ctypes.CDLL | None:
    """The compiled ``digits/train/fast/convblocks.c`` with its functions typed, or None where it cannot be built."""
    lib = native.load("convblocks")
    if lib is not None:
        ptr, i64, flag, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
        lib.conv_pool_forward.argtypes = [ptr, ptr, ptr, i64, i64, ptr, flag, ptr]
        lib.conv_pool_backward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, flag, ptr, ptr]
        lib.stem_forward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, f64, ptr, ptr, flag, ptr, ptr]
        lib.stem_backward.argtypes = [ptr, ptr, ptr, ptr, ptr, f64, ptr, ptr, i64, i64, flag, ptr, ptr, ptr]
        for fn in (lib.conv_pool_forward, lib.conv_pool_backward, lib.stem_forward, lib.stem_backward):
            fn.restype = None
    return lib


def _kernel_serves(weight: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether convblocks.c computes for these first-layer weights, activations in ``dtype``."""
    return (
        weight.dtype == torch.float32
        and dtype in (torch.float32, torch.bfloat16)
        and weight.shape[0] % KERNEL_CHANNELS == 0
    )


def _check_28x28(x: torch.Tensor, network: str) -> None:  # the kernels read 28x28 images; the networks need them
    if tuple(x.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
        size = f"{IMAGE_SIZE}, {IMAGE_SIZE}"
        raise ValueError(f"the {network} network takes (batch, 1, {size}) images, got {tuple(x.shape)}")


def _one_channel_3x3(conv: nn.Conv2d, stride: int, padding: int, bias: bool) -> bool:
    """Whether ``conv`` is the plain 3x3 convolution of one input channel that convblocks.c computes."""
    return (
        conv.in_channels == 1
        and conv.kernel_size == (3, 3)
        and conv.stride == (stride, stride)
        and conv.padding == (padding, padding)
        and conv.padding_mode == "zeros"
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and (conv.bias is not None) == bias
    )


def seed_layers(model: nn.Module) -> tuple[nn.Conv2d, nn.Linear, nn.Linear, float] | None:
    """(conv, hidden, output, dropout rate) of a seed-shaped network, or None for any other model.

    Seed-shaped: Conv2d(1, C, 3) with bias -> ReLU -> MaxPool2d(2) -> FlattenHWC -> Linear -> ReLU ->
    Dropout -> Linear, which is ``create_model("seed")`` with relu, no batchnorm and the flatten head.
    """
    kinds = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, FlattenHWC, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear)
    layers = list(model.children())
    if not isinstance(model, nn.Sequential) or len(layers) != len(kinds):
        return None
    if not all(type(layer) is kind for layer, kind in zip(layers, kinds)):
        return None
    conv, pool, hidden, dropout, out = (cast(Any, layers[i]) for i in (0, 2, 4, 6, 7))  # types checked above
    plain_conv = _one_channel_3x3(conv, stride=1, padding=0, bias=True)
    plain_pool = pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))
    plain_pool = plain_pool and pool.dilation in (1, (1, 1)) and not pool.ceil_mode and not pool.return_indices
    if not (plain_conv and plain_pool):
        return None
    return conv, hidden, out, float(dropout.p)


class SeedGradients:
    """``grads(x, y)`` -> (loss, logits) for a seed-shaped ``model``, with the gradients left in ``p.grad``.

    Same contract as ``loss = cross_entropy(model(x), y, label_smoothing); loss.backward()`` in train mode,
    including dropout drawn from torch's global generator the way ``nn.Dropout`` draws it.
    ``use_kernel=False`` computes the first block with PyTorch operations even where the kernel builds.
    """

    def __init__(
        self, model: nn.Module, precision: str = "fp32", label_smoothing: float = 0.0, use_kernel: bool = True
    ) -> None:
        layers = seed_layers(model)
        if layers is None:
            raise ValueError("SeedGradients needs the seed network (relu, no batchnorm, flatten head)")
        self.model = model
        self.conv, self.hidden, self.out, self.rate = layers
        self.dtype = torch.bfloat16 if precision == "bf16" else self.conv.weight.dtype
        self.label_smoothing = label_smoothing
        self.kernel = convblocks() if use_kernel and _kernel_serves(self.conv.weight, self.dtype) else None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Grads:
        dt, pdt = self.dtype, self.conv.weight.dtype
        hidden, out = self.hidden, self.out
        n = x.shape[0]
        # Forward. Parameters stay in their dtype ``pdt`` (the optimizer's copy); the matmuls run in ``dt``.
        first_block = self._first_block_kernel if self.kernel is not None else self._first_block_torch
        flat, first_block_backward = first_block(x)  # (n, 13 * 13 * C) in height-width-channel order
        w1, w2 = hidden.weight.to(dt), out.weight.to(dt)
        a1 = torch.addmm(hidden.bias.to(dt), flat, w1.t()).relu_()
        keep = None
        if self.model.training and self.rate > 0:  # as F.dropout: bernoulli(1 - p) / (1 - p)
            keep = torch.empty_like(a1).bernoulli_(1.0 - self.rate).div_(1.0 - self.rate)
        d1 = a1 * keep if keep is not None else a1
        logits = torch.addmm(out.bias.to(dt), d1, w2.t()).to(pdt)
        # Cross-entropy (with label smoothing) and its gradient with respect to the logits.
        logp = logits.log_softmax(1)
        eps, k = self.label_smoothing, logits.shape[1]
        target = torch.full_like(logp, eps / k).scatter_(1, y[:, None], 1.0 - eps + eps / k)
        loss = -(target * logp).sum(1).mean()
        g = (logp.exp() - target).div_(n)
        # Backward, layer by layer; every gradient in the parameters' dtype, for the optimizer.
        gd = g.to(dt)
        out.weight.grad = (gd.t() @ d1).to(pdt)
        out.bias.grad = g.sum(0)
        gz1 = gd @ w2
        if keep is not None:
            gz1 = gz1 * keep
        gz1 = torch.ops.aten.threshold_backward(gz1, a1, 0)
        hidden.weight.grad = (gz1.t() @ flat).to(pdt)
        hidden.bias.grad = gz1.to(pdt).sum(0)
        first_block_backward(gz1 @ w1)
        return loss, logits

    def _first_block_kernel(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
        """Convolution, ReLU and max-pool in convblocks.c: (flat activations, their backward pass)."""
        conv, kernel, conv_bias = self.conv, self.kernel, self.conv.bias
        assert kernel is not None and conv_bias is not None  # checked by __init__ and seed_layers
        n, c = x.shape[0], conv.out_channels
        _check_28x28(x, "seed")
        x = x.float().contiguous()  # (n, 1, 28, 28): with one channel, channels-last is the same memory
        wt = conv.weight.reshape(c, 9).t().contiguous()
        bias = conv_bias.contiguous()
        bf16 = int(self.dtype == torch.bfloat16)
        h = torch.empty(n, 13 * 13 * c, dtype=self.dtype)
        arg = torch.empty(n, 13 * 13 * c, dtype=torch.uint8)
        kernel.conv_pool_forward(x.data_ptr(), wt.data_ptr(), bias.data_ptr(), n, c, h.data_ptr(), bf16, arg.data_ptr())

        def backward(gflat: torch.Tensor) -> None:
            gflat = gflat.contiguous()
            gwt, gb = torch.empty(9, c), torch.empty(c)
            kernel.conv_pool_backward(
                x.data_ptr(), h.data_ptr(), gflat.data_ptr(), arg.data_ptr(), n, c, bf16, gwt.data_ptr(), gb.data_ptr()
            )
            # contiguous: the optimizer's fused Adam reads a gradient in the parameter's memory order
            conv.weight.grad = gwt.t().contiguous().view_as(conv.weight)
            conv_bias.grad = gb

        return h, backward

    def _first_block_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
        """The same with PyTorch operations, for models and machines the kernel does not serve."""
        conv, conv_bias, dt, cl = self.conv, self.conv.bias, self.dtype, torch.channels_last
        pdt = conv.weight.dtype
        assert conv_bias is not None  # checked by seed_layers
        n = x.shape[0]
        xc = x.to(dt).contiguous(memory_format=cl)
        w0 = conv.weight.to(dt).contiguous(memory_format=cl)
        c = torch.nn.functional.conv2d(xc, w0, conv_bias.to(dt))  # (n, C, 26, 26), channels-last
        pooled, argmax = torch.ops.aten.max_pool2d_with_indices(c, [2, 2], [2, 2])
        h = pooled.relu()
        flat = h.permute(0, 2, 3, 1).reshape(n, -1)  # free: h is channels-last

        def backward(gflat: torch.Tensor) -> None:
            gh = gflat.view(n, *h.shape[2:], h.shape[1]).permute(0, 3, 1, 2)  # back to (n, C, 13, 13)
            gpooled = torch.ops.aten.threshold_backward(gh, h, 0)
            gc = torch.ops.aten.max_pool2d_with_indices_backward(
                gpooled, c, [2, 2], [2, 2], [0, 0], [1, 1], False, argmax
            )
            _, gw0, gb0 = torch.ops.aten.convolution_backward(
                gc, xc, w0, [w0.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]
            )
            conv.weight.grad = gw0.to(pdt).view_as(conv.weight)
            conv_bias.grad = gb0.to(pdt)

        return flat, backward


def stem_layers(model: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """(conv, batchnorm) of a network that starts with fastnet's stride-2 stem, or None for any other model.

    The stem: Conv2d(1, C, 3, stride=2, padding=1, bias=False) -> BatchNorm2d(C) -> ReLU, the first three
    layers of an nn.Sequential (``create_model("fastnet", stem="stride")``, or ``stem="dct"``, whose
    convolution is fixed and whose batchnorm has no scale and shift).
    """
    layers = list(model.children())[:3]
    kinds = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    if not isinstance(model, nn.Sequential) or [type(layer) for layer in layers] != kinds:
        return None
    conv, bn = cast(nn.Conv2d, layers[0]), cast(nn.BatchNorm2d, layers[1])  # types checked above
    plain_conv = _one_channel_3x3(conv, stride=2, padding=1, bias=False)
    plain_bn = bn.track_running_stats and isinstance(bn.momentum, float)
    return (conv, bn) if plain_conv and plain_bn else None


class StemForward:
    """``model(x)`` in training mode, with the stride-2 stem computed by convblocks.c.

    The same function and gradients as the model's own forward (the batchnorm normalises with the batch's
    statistics and updates its running averages as ``nn.BatchNorm2d`` does); in eval mode it is the
    model's own forward. ``stem_forward(model, precision)`` builds one where the kernel serves the model.
    """

    def __init__(self, model: nn.Module, kernel: ctypes.CDLL, precision: str = "fp32") -> None:
        layers = stem_layers(model)
        if layers is None:
            raise ValueError("StemForward needs a network that starts with fastnet's stride-2 stem")
        self.model, self.kernel = model, kernel
        self.conv, self.bn = layers
        self.rest = cast(nn.Sequential, model)[3:]  # shares the model's layers
        self.dtype = torch.bfloat16 if precision == "bf16" else self.conv.weight.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bn.training:
            return self.model(x)
        return self.rest(self.stem(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem alone, in training mode: (B, 1, 28, 28) -> (B, C, 14, 14), channels-last.

        Where nothing in it is trained (``stem="dct"``) autograd records nothing, and the backward pass
        stops at the second convolution's weights.
        """
        gamma, beta = self.bn.weight, self.bn.bias
        if gamma is None or beta is None:  # a batchnorm without scale and shift
            gamma, beta = torch.ones(self.bn.num_features), torch.zeros(self.bn.num_features)
        return cast(torch.Tensor, _StemFunction.apply(x, self.conv.weight, gamma, beta, self))


def stem_forward(model: nn.Module, precision: str = "fp32") -> StemForward | None:
    """A ``StemForward`` for ``model``, or None where it has no stride-2 stem or the kernel does not serve it."""
    layers = stem_layers(model)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if layers is None or not _kernel_serves(layers[0].weight, dtype):
        return None
    if any(p.dtype != torch.float32 for p in layers[1].state_dict().values() if p.is_floating_point()):
        return None
    kernel = convblocks()
    return StemForward(model, kernel, precision) if kernel is not None else None


class _StemFunction(torch.autograd.Function):
    """Convolution, batchnorm (batch statistics) and ReLU of the stem: (B, 1, 28, 28) -> (B, C, 14, 14)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, stem: StemForward
    ) -> torch.Tensor:
        _check_28x28(x, "fastnet")
        bn, n, c = stem.bn, x.shape[0], weight.shape[0]
        x = x.float().contiguous()  # (n, 1, 28, 28): with one channel, channels-last is the same memory
        wt = weight.reshape(c, 9).t().contiguous()
        gamma, beta = gamma.contiguous(), beta.contiguous()  # held here: the kernel reads their memory
        conv = torch.empty(n, 14, 14, c)
        h = torch.empty(n, c, 14, 14, dtype=stem.dtype, memory_format=torch.channels_last)
        mean, var = torch.empty(c), torch.empty(c)
        bf16 = int(stem.dtype == torch.bfloat16)
        stem.kernel.stem_forward(
            x.data_ptr(), wt.data_ptr(), gamma.data_ptr(), beta.data_ptr(), n, c,
            bn.eps, conv.data_ptr(), h.data_ptr(), bf16, mean.data_ptr(), var.data_ptr(),
        )  # fmt: skip
        # The running averages, as BatchNorm2d keeps them: momentum-weighted, the variance unbiased.
        # (stem_layers admits only a batchnorm that tracks them, with a float momentum.)
        running_mean, running_var, batches = (
            cast(torch.Tensor, t) for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)
        )
        momentum, count = cast(float, bn.momentum), n * 14 * 14
        running_mean.lerp_(mean, momentum)
        running_var.lerp_(var * (count / (count - 1)), momentum)
        batches.add_(1)
        ctx.save_for_backward(x, conv, gamma, mean, var, h)
        ctx.stem = stem
        return h

    @staticmethod
    def backward(ctx: Any, gh: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, conv, gamma, mean, var, h = ctx.saved_tensors
        stem, n, c = ctx.stem, x.shape[0], conv.shape[3]
        gh = gh.to(h.dtype).contiguous(memory_format=torch.channels_last)
        gwt, ggamma, gbeta = torch.empty(9, c), torch.empty(c), torch.empty(c)
        stem.kernel.stem_backward(
            x.data_ptr(), conv.data_ptr(), gamma.data_ptr(), mean.data_ptr(), var.data_ptr(),
            stem.bn.eps, h.data_ptr(), gh.data_ptr(), n, c, int(h.dtype == torch.bfloat16),
            gwt.data_ptr(), ggamma.data_ptr(), gbeta.data_ptr(),
        )  # fmt: skip
        # contiguous: the optimizer's fused Adam reads a gradient in the parameter's memory order
        grads = (None, gwt.t().contiguous().view(c, 1, 3, 3), ggamma, gbeta, None)
        return tuple(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad))
