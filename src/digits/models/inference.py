"""Running a network on images: :func:`predict_logits`, shared by evaluation, ensembles and the Recognizer."""

from __future__ import annotations

import torch
from torch import nn

from digits.spec import EVAL_BATCH_SIZE, NUM_CLASSES, to_model_input


def as_model_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 images (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], as every model expects.

    uint8 images go through :func:`digits.spec.to_model_input`, the one conversion (a tensor on the CPU
    shares its memory with numpy, so this costs no copy beyond the result); float images are taken as
    already converted.
    """
    if images.dtype == torch.uint8:
        pixels = images.reshape(-1, *images.shape[-2:]).cpu().numpy()
        x = torch.from_numpy(to_model_input(pixels)).to(images.device)
    else:
        x = (images.unsqueeze(1) if images.dim() == 3 else images).float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: str = "fp32",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits (N, 10) in float32 for uint8 or float images, in eval mode, batch by batch."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = as_model_input(images[start : start + batch_size], channels_last=device.type == "cpu").to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out.append(model(x).float())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)
