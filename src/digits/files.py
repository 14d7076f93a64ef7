"""Writing files so that a reader never sees half of one, and the metadata every model file carries.

One policy for every file digits writes (weights, checkpoints, run records, ONNX exports, MNIST's cached
files, compiled kernels): the bytes go to a temporary file beside the target (same file system, so the
rename is atomic), are flushed to disk, get the permissions the user's umask gives a new file (``mkstemp``
would leave them owner-only; models, data and kernels are for everyone on the machine to read), and only
then take the real name. On any failure the temporary file is removed; after a kill -9 or a power cut, the
next run removes it with :func:`remove_partial_files`.

Model files carry string-to-string metadata (safetensors and ONNX alike): :func:`encode_metadata` and
:func:`decode_metadata` are its one encoding. Only the standard library.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "PARTIAL_SUFFIX",
    "atomic_write",
    "decode_metadata",
    "encode_metadata",
    "remove_partial_files",
    "write_bytes",
    "write_json",
    "write_text",
]

PARTIAL_SUFFIX = ".tmp"  # a temporary file is named .<target name>.<random>.tmp


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it to ``path``; returns ``path``.

    ``path`` is either unchanged (absent, or its old content) or complete: never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # the writer may have replaced the file; flush what is there now
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented JSON (anything JSON cannot hold is written as its ``str``)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def remove_partial_files(directory: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files of writes that never finished (a process killed mid-write); return their names.

    :func:`atomic_write` cleans up after itself on any exception, but nothing runs under SIGKILL or a power cut.
    """
    names = []
    for tmp in sorted(Path(directory).glob(f".*{PARTIAL_SUFFIX}")):
        tmp.unlink(missing_ok=True)
        names.append(tmp.name)
    return names


def encode_metadata(meta: Mapping[str, Any], *, raw: tuple[str, ...] = ("model",)) -> dict[str, str]:
    """Metadata as strings: each value as JSON, except the string values of the keys in ``raw`` (the model name)."""
    return {k: v if k in raw and isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """The values :func:`encode_metadata` wrote (JSON decoded); a value that is not JSON stays a string."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
