"""The state a training run resumes from: ``checkpoint.pt`` in the run directory.

Written with ``torch.save`` through :func:`digits.files.atomic_write` at the end of every epoch, read
with ``weights_only=True`` (tensors and plain data only, never code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from digits.errors import ModelFileError
from digits.files import atomic_write


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise ModelFileError(f"cannot read the training checkpoint {path}: {exc}") from exc
