"""A layer table like Keras' ``model.summary()``: layer, output shape, parameter count."""

from __future__ import annotations

import torch
from torch import nn

from digits.spec import IMAGE_SIZE


def summary(model: nn.Module, input_shape: tuple[int, ...] = (1, IMAGE_SIZE, IMAGE_SIZE)) -> str:
    """Run one dummy image through ``model`` and tabulate every leaf layer's output shape and parameters."""
    rows: list[tuple[str, str, int]] = []
    listed: set[str] = set()
    hooks = []
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # containers: their leaves are listed instead

        def hook(mod: nn.Module, _inp: object, out: torch.Tensor, name: str = name) -> None:
            if name in listed:
                return  # called again in one pass (a ShiftAverage runs its network once per view): one row
            listed.add(name)
            shape = "(None, " + ", ".join(str(d) for d in out.shape[1:]) + ")"
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append((f"{name} ({type(mod).__name__})", shape, params))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    w0 = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
    w1 = max(len("Output Shape"), *(len(r[1]) for r in rows)) + 2
    line = "-" * (w0 + w1 + 12)
    out = [line, f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>10}", "=" * len(line)]
    out += [f"{a:<{w0}}{b:<{w1}}{c:>10,}" for a, b, c in rows]
    out += [
        "=" * len(line),
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        line,
    ]
    return "\n".join(out)
