"""Learning-rate schedules: the multiplier of ``cfg.lr`` at each optimizer step."""

from __future__ import annotations

import math

from digits.train.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at optimizer step ``step`` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    t = step / total
    if cfg.schedule == "step":
        return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_every)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":  # linear up from lr/10, then linear down to 0 (Smith & Topin 2017)
        if t < cfg.warmup:
            return 0.1 + 0.9 * t / cfg.warmup
        return max(0.0, (1.0 - t) / (1.0 - cfg.warmup))
    return 1.0
