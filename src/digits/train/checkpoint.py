"""The state a training run resumes from: one typed shape, written in one place and read in one.

``checkpoint.pt`` in the run directory holds a :class:`TrainState`, written at the end of every epoch with
``torch.save`` through :func:`digits.files.atomic_write` (a full disk is a WriteError naming the file; the
previous epoch's checkpoint stays) and read with ``weights_only=True`` (tensors and plain data only, never
code). The file's keys are those of :meth:`TrainState.to_file`, plus ``sha256``: the checksum of all the others,
checked on load, so that a checkpoint changed on disk is refused instead of resuming into different results.
"""

from __future__ import annotations

import errno
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from digits.errors import ConfigError, ModelFileError, RunError
from digits.files import atomic_write
from digits.models.weights import sha256_of
from digits.train.config import TrainConfig

StateDict = dict[str, Tensor]


@dataclass
class Best:
    """The best validation accuracy so far, its epoch, and (with ``select="best"``) its weights."""

    accuracy: float = -1.0
    epoch: int = 0
    state: StateDict | None = None


@dataclass
class TrainState:
    """Everything a run needs to continue after its last finished epoch."""

    config: TrainConfig
    preset: str | None
    epoch: int = 0  # epochs finished
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    model: StateDict = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    ema: StateDict | None = None
    best: Best = field(default_factory=Best)
    fonts: list[dict[str, str]] = field(default_factory=list)  # the font files the run draws from: path, sha256

    def to_file(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes: tensors, numbers, strings (config and history as JSON)."""
        return {
            "config": json.dumps(self.config.to_dict()),
            "preset": self.preset,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "history": json.dumps(self.history),
            "model": self.model,
            "optimizer": self.optimizer,
            "ema": self.ema,
            "best_accuracy": self.best.accuracy,
            "best_epoch": self.best.epoch,
            "best_state": self.best.state,
            "fonts": json.dumps(self.fonts),
        }

    @classmethod
    def from_file(cls, saved: dict[str, Any], path: Path) -> TrainState:
        try:
            return cls(
                config=TrainConfig.from_dict(json.loads(saved["config"])),
                preset=saved.get("preset"),
                epoch=saved["epoch"],
                train_seconds=saved["train_seconds"],
                history=json.loads(saved["history"]),
                model=saved["model"],
                optimizer=saved["optimizer"],
                ema=saved["ema"],
                best=Best(saved["best_accuracy"], saved["best_epoch"], saved["best_state"]),
                fonts=json.loads(saved.get("fonts", "[]")),  # none in a checkpoint written before fonts were kept
            )
        except (KeyError, TypeError, ConfigError, json.JSONDecodeError) as exc:
            raise RunError(
                f"{path} was written by another version of digits ({exc!r}); start the run again in a new --out"
            ) from exc

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically; :class:`~digits.errors.WriteError` if the disk refuses it."""
        saved = self.to_file()
        atomic_write(Path(path), lambda tmp: _torch_save({**saved, "sha256": sha256_of(saved)}, tmp))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        path = Path(path)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # torch's advice to retry with weights_only=False is never safe here
            raise ModelFileError(
                f"{path} holds more than tensors and plain data (code, or objects digits never writes), so it is "
                "not loaded: it was not written by digits or was tampered with; start the run again in a new --out"
            ) from exc
        except Exception as exc:  # torch raises several types for a damaged file
            raise ModelFileError(
                f"cannot read the training checkpoint {path} ({_first_line(exc)}): it is truncated or damaged; "
                "start the run again in a new --out"
            ) from exc
        if not isinstance(saved, dict):
            raise ModelFileError(f"{path} is not a digits training checkpoint (it holds a {type(saved).__name__})")
        expected = saved.pop("sha256", None)
        if expected is not None and expected != sha256_of(saved):
            raise ModelFileError(
                f"{path} is damaged: it no longer matches the checksum written with it, so some bytes changed after "
                "it was saved, and resuming from it would not continue the same run. Restore it from a copy, or "
                "start the run again in a new --out"
            )
        return cls.from_file(saved, path)


def _first_line(exc: BaseException) -> str:
    """The first sentence of torch's message (the rest is about how torch was built), or the exception's type."""
    text = str(exc).strip()
    return text.split(". ")[0] if len(text) > 12 else f"{type(exc).__name__} {text}"


def _torch_save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save(obj, path)``, a failed write raised as the OSError it is (ENOSPC for a full disk).

    torch reports a short write as ``RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos``.
    Through an unbuffered Python file its writes are Python's, so the OSError behind it is the RuntimeError's
    ``__context__``; where there is none (torch writing by itself), the write failed for a reason unknown: EIO.
    """
    with open(path, "wb", buffering=0) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:
            cause = exc.__context__
            if isinstance(cause, OSError) and cause.errno is not None:
                raise OSError(cause.errno, cause.strerror) from exc
            if "inline_container" in str(exc) or "PytorchStreamWriter" in str(exc):
                raise OSError(errno.EIO, f"torch.save could not write the whole file ({exc})") from exc
            raise
