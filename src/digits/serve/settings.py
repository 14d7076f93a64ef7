"""What a server is started with: the model, the limits on what it accepts, the workers and their threads.

Frozen dataclasses, passed explicitly: ``digits serve`` builds a :class:`ServeConfig` from its flags, and each
worker process gets it back from JSON (:meth:`ServeConfig.to_json`), so every worker runs with the same
settings. Only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from digits.errors import ConfigError
from digits.reading.results import DEFAULT_THRESHOLD

__all__ = ["Limits", "ServeConfig", "available_cores"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; beyond each, a clear 4xx error (413, or 503 for time).

    max_body_bytes: the largest request body; a larger one is refused (413) before it is read whole.
    max_pixels: the most pixels a picture may have once decoded (a decompression bomb is refused from its header).
    max_batch: the most pictures in one request to ``/v1/predict/batch``.
    timeout_s: seconds a request may take, reading its body and the work on it together, before it gets a
        timeout error.
    """

    max_body_bytes: int = 20 * MIB
    max_pixels: int = 40_000_000
    max_batch: int = 512
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_pixels", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number above 0, got {value!r}")
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s must be a number of seconds above 0, got {self.timeout_s!r}")

    def describe(self) -> str:
        """One line for the start-up message."""
        return (
            f"bodies up to {self.max_body_bytes / MIB:g} MiB, pictures up to {self.max_pixels:,} pixels, "
            f"{self.max_batch} pictures a batch, {self.timeout_s:g} s a request"
        )


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServeConfig:
    """A server: where it listens, which model it runs, how many workers, what it accepts, where corrections go.

    model: a run directory, .safetensors or .onnx file; None for the model shipped in the package.
    workers: processes, each with its own copy of the model. threads: inference threads in each (None:
    the cores shared out among the workers, at least one each), so N workers never oversubscribe the CPU.
    store: the folder corrections are kept in; None turns corrections off.
    adapt_every: with a store, adapt the model after every this many new corrections (``digits adapt`` in a
    process of its own) and serve the accepted one; 0: never. adapt_command: the command that adapts, its
    arguments following (default: ``digits adapt`` in this Python).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    backend: str = "auto"
    threshold: float = DEFAULT_THRESHOLD
    find_pages: bool = True
    workers: int = 1
    threads: int | None = None
    store: str | None = None
    adapt_every: int = 0
    adapt_command: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a whole number above 0, got {self.workers!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a whole number above 0, got {self.threads!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        if isinstance(self.adapt_every, bool) or not isinstance(self.adapt_every, int) or self.adapt_every < 0:
            raise ConfigError(f"adapt_every must be a whole number of corrections (0: never), got {self.adapt_every!r}")
        if self.adapt_every and self.store is None:
            raise ConfigError("adapting learns from the corrections kept: give a store (digits serve --store DIR)")
        if self.adapt_every and self.model is not None and self.model.endswith(".onnx"):
            raise ConfigError(
                f"adapting needs the model's weights, and {self.model} is an ONNX file: serve its run folder or "
                ".safetensors file"
            )

    @property
    def worker_threads(self) -> int:
        """Inference threads in each worker: ``threads``, or the available cores shared out among the workers."""
        return self.threads or max(1, available_cores() // self.workers)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw: dict[str, Any] = json.loads(text)
        command = tuple(raw.get("adapt_command", ()))  # JSON gives a list
        return cls(**{**raw, "adapt_command": command, "limits": Limits(**raw.get("limits", {}))})
