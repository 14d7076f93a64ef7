"""Every error digits raises for something the user can fix, in one tree (this module imports nothing).

    DigitsError                 anything digits tells a user; the message says what went wrong and how to fix it
     ├── DataError              MNIST could not be fetched, verified or parsed
     ├── ConfigError            a training config, model option or setting that is not valid  (also a ValueError)
     ├── RunError               a run directory that cannot be used as asked: nothing to resume, already a run,
     │                          a checkpoint from another config or version
     ├── ModelFileError         a model file that is missing, unreadable, not a digits model, or whose runtime
     │                          is not installed                                            (also a ValueError)
     ├── ImageError             a picture that cannot be read                              (also a ValueError)
     ├── ParityError            an exported model that does not compute what the torch model computes
     ├── WriteError             a file that could not be written: the disk is full, read-only or failed
     │                          (also an OSError)
     └── UsageError             a command line that does not make sense (the CLI exits with 2)

The command line prints a ``DigitsError`` as one ``error: ...`` line; any other exception is a bug in
digits and keeps its traceback. ``ConfigError``, ``ModelFileError`` and ``ImageError`` are also
``ValueError``s, as they were before this tree existed, so ``except ValueError`` keeps working; ``WriteError`` is
also an ``OSError``, as a failed write was before it had a name, so ``except OSError`` keeps working too.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DigitsError",
    "ImageError",
    "ModelFileError",
    "ParityError",
    "RunError",
    "UsageError",
    "WriteError",
]


class DigitsError(Exception):
    """The base of every error digits raises for something the user can fix."""


class DataError(DigitsError):
    """MNIST could not be fetched, verified or parsed (which file, which source, which hash, and the fix)."""


class ConfigError(DigitsError, ValueError):
    """A training config, model option or setting that is not valid; the message names the valid choices."""


class RunError(DigitsError):
    """A run directory that cannot be used as asked: nothing to resume, already a run there, another config."""


class ModelFileError(DigitsError, ValueError):
    """A model that cannot be used: missing, unreadable, not a digits model, or its runtime is not installed."""


class ImageError(DigitsError, ValueError):
    """A picture that cannot be read: not an image, an unsupported format, empty, or too big.

    ``kind`` says which, for a caller that answers each differently (the server's 4xx): "not_an_image" (no
    format digits reads), "corrupt" (truncated, or not decodable as what it claims to be), "too_big" (over the
    pixel limit), "empty" (no bytes, or no pixels), "unsupported" (a pixel mode, array shape or dtype digits
    does not read) or "missing" (no such file).
    """

    KINDS = ("not_an_image", "corrupt", "too_big", "empty", "unsupported", "missing")

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"ImageError kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled across processes with its kind
        return type(self), (str(self), self.kind)


class ParityError(DigitsError):
    """An exported model whose outputs differ from the torch model's by more than allowed."""


class WriteError(DigitsError, OSError):
    """A file that could not be written (which file, why: ENOSPC is a full disk); the old file is left as it was.

    ``errno`` is the underlying error's, where there was one.
    """


class UsageError(DigitsError):
    """A command line that does not make sense; the CLI prints it and exits with status 2."""
