"""A hand-written forward and backward pass for the article's network, for speed on CPUs.

At the article's batch of 32, a training step of the seed network is small kernels plus the overhead
around them (autograd's graph, autocast's casts). ``SeedGradients`` computes the same loss and the same
gradients as autograd, without building a graph and with fewer tensor operations, and leaves them in
``p.grad``, so the optimizer step, schedules, checkpoints and resume are unchanged. It is used only when
``seed_layers`` recognises the network; everything else trains through autograd. tests/test_fused.py
checks the gradients against autograd's in float64.

What it does differently, none of which changes the function:
  * max-pools before the ReLU (relu(max(x)) = max(relu(x))), so the ReLU runs on a quarter of the values;
  * keeps activations channels-last end to end (the model flattens in height-width-channel order);
  * skips the input gradient of the first convolution, which nothing needs.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from digits.models.layers import FlattenHWC

Grads = tuple[torch.Tensor, torch.Tensor]  # (loss, logits)


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
    plain_conv = (
        conv.in_channels == 1
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.bias is not None
    )
    plain_pool = pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))
    plain_pool = plain_pool and pool.dilation in (1, (1, 1)) and not pool.ceil_mode and not pool.return_indices
    if not (plain_conv and plain_pool):
        return None
    return conv, hidden, out, float(dropout.p)


class SeedGradients:
    """``grads(x, y)`` -> (loss, logits) for a seed-shaped ``model``, with the gradients left in ``p.grad``.

    Same contract as ``loss = cross_entropy(model(x), y, label_smoothing); loss.backward()`` in train mode,
    including dropout drawn from torch's global generator the way ``nn.Dropout`` draws it.
    """

    def __init__(self, model: nn.Module, precision: str = "fp32", label_smoothing: float = 0.0) -> None:
        layers = seed_layers(model)
        if layers is None:
            raise ValueError("SeedGradients needs the seed network (relu, no batchnorm, flatten head)")
        self.model = model
        self.conv, self.hidden, self.out, self.rate = layers
        self.dtype = torch.bfloat16 if precision == "bf16" else self.conv.weight.dtype
        self.label_smoothing = label_smoothing

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Grads:
        dt, pdt, cl = self.dtype, self.conv.weight.dtype, torch.channels_last
        conv, hidden, out = self.conv, self.hidden, self.out
        n = x.shape[0]
        assert conv.bias is not None  # checked by seed_layers
        # Forward. Parameters stay in their dtype ``pdt`` (the optimizer's copy); the matmuls run in ``dt``.
        xc = x.to(dt).contiguous(memory_format=cl)
        w0 = conv.weight.to(dt).contiguous(memory_format=cl)
        w1, w2 = hidden.weight.to(dt), out.weight.to(dt)
        c = torch.nn.functional.conv2d(xc, w0, conv.bias.to(dt))  # (n, C, 26, 26), channels-last
        pooled, argmax = torch.ops.aten.max_pool2d_with_indices(c, [2, 2], [2, 2])
        h = pooled.relu()
        flat = h.permute(0, 2, 3, 1).reshape(n, -1)  # free: h is channels-last
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
        gh = (gz1 @ w1).view(n, *h.shape[2:], h.shape[1]).permute(0, 3, 1, 2)  # back to (n, C, 13, 13)
        gpooled = torch.ops.aten.threshold_backward(gh, h, 0)
        gc = torch.ops.aten.max_pool2d_with_indices_backward(
            gpooled, c, [2, 2], [2, 2], [0, 0], [1, 1], False, argmax
        )
        _, gw0, gb0 = torch.ops.aten.convolution_backward(
            gc, xc, w0, [w0.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]
        )
        conv.weight.grad = gw0.to(pdt).view_as(conv.weight)
        conv.bias.grad = gb0.to(pdt)
        return loss, logits
