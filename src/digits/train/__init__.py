"""Training: config and presets, augmentation, the loop, optimizers, checkpoints, evaluation, plots.

    from digits.train import fit, get_preset
    run = fit(get_preset("fast"), "runs/fast")

Importing this package is cheap (the CLI builds its flags from :mod:`digits.train.config` without torch);
``fit`` and the rest are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits._lazy import lazy_exports

__all__ = ["PRESETS", "Run", "TrainConfig", "fit", "get_preset", "override"]

_HOMES = {
    "PRESETS": "digits.train.config",
    "TrainConfig": "digits.train.config",
    "get_preset": "digits.train.config",
    "override": "digits.train.config",
    "Run": "digits.train.report",
    "fit": "digits.train.loop",
}

if TYPE_CHECKING:
    from digits.train.config import PRESETS, TrainConfig, get_preset, override
    from digits.train.loop import fit
    from digits.train.report import Run


# torch is imported when training is asked for, not when the package is.
__getattr__ = lazy_exports(__name__, _HOMES)
