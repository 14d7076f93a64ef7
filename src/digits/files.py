"""Writing files so that a reader never sees half of one, and the metadata every model file carries.

One policy for every file digits writes (weights, checkpoints, run records, ONNX exports, MNIST's cached
files, compiled kernels): the bytes go to a temporary file beside the target (same file system, so the
rename is atomic), are flushed to disk, get the permissions the user's umask gives a new file (``mkstemp``
would leave them owner-only; models, data and kernels are for everyone on the machine to read), and only
then take the real name. On any failure the temporary file is removed; after a kill -9 or a power cut, the
next run removes it with :func:`remove_partial_files`. A write the file system refuses (a full disk, a quota,
a read-only mount) is a :class:`~digits.errors.WriteError` that names the file and says why.

Model files carry string-to-string metadata (safetensors and ONNX alike): :func:`encode_metadata` and
:func:`decode_metadata` are its one encoding. An ONNX file's metadata also carries the sha256 of its graph
(:func:`onnx_graph_sha256`), so that a reader can tell a damaged file without onnx installed. Only the standard
library (and :mod:`digits.errors`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from digits.errors import WriteError

__all__ = [
    "GRAPH_CHECKSUM",
    "PARTIAL_SUFFIX",
    "atomic_symlink",
    "atomic_write",
    "decode_metadata",
    "encode_metadata",
    "onnx_graph_sha256",
    "remove_partial_files",
    "write_bytes",
    "write_json",
    "write_text",
]

GRAPH_CHECKSUM = "graph_sha256"  # the ONNX metadata key of :func:`onnx_graph_sha256`
PARTIAL_SUFFIX = ".tmp"  # a temporary file is named .<target name>.<random>.tmp

# The errors by which a file system refuses the bytes themselves, whoever writes them. Any other exception of
# a writer (a compiler that is not installed, a bug) is its own and passes through unchanged.
_REFUSED = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EIO", "EROFS") if hasattr(errno, name)}
_WHY = {
    "ENOSPC": "the disk is full (ENOSPC)",
    "EDQUOT": "the disk quota is used up (EDQUOT)",
    "EFBIG": "the file is larger than this file system or process allows (EFBIG)",
    "EROFS": "the file system is read-only (EROFS)",
}


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it to ``path``; returns ``path``.

    ``path`` is either unchanged (absent, or its old content) or complete: never half-written. Raises
    :class:`~digits.errors.WriteError` (an OSError) when the file system refuses the write; ``write`` tells
    such a refusal by raising an OSError with its ``errno`` (ENOSPC and the like).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    tmp = Path(name)
    try:
        try:
            write(tmp)
        except WriteError:
            raise
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
            raise _write_error(path, exc) from exc
        try:
            with open(tmp, "rb") as f:  # the writer may have replaced the file; flush what is there now
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from exc
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


def atomic_symlink(link: str | os.PathLike[str], target: str) -> bool:
    """Make ``link`` a symbolic link to ``target`` (a path relative to the link's folder), replacing an old link.

    The link is made under a temporary name and renamed over the old one, so ``link`` never goes missing and a
    reader never sees a half-changed one. Returns False, changing nothing, where symbolic links cannot be made
    (Windows without the privilege, some file systems) or ``link`` is not a link (a folder someone made).
    """
    link = Path(link)
    if os.path.lexists(link) and not link.is_symlink():
        return False
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    try:
        os.symlink(target, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        return False
    try:
        os.replace(tmp, link)
    except OSError:  # it became a folder meanwhile
        tmp.unlink(missing_ok=True)
        return False
    return True


def _write_error(path: Path, exc: OSError) -> WriteError:
    """The :class:`~digits.errors.WriteError` for ``exc``, raised while writing ``path``: the file, why, the fix."""
    name = errno.errorcode.get(exc.errno or 0, "")  # "ENOSPC"; "" for an OSError with no errno
    why = _WHY.get(name) or (f"{exc.strerror} ({name})" if exc.strerror and name else str(exc))
    try:
        free = f", {_size(shutil.disk_usage(path.parent).free)} free there"
    except OSError:
        free = ""
    if name in ("ENOSPC", "EDQUOT"):
        fix = "free some space or write somewhere else"
    elif name in ("EROFS", "EACCES", "EPERM"):
        fix = "write somewhere you may write"
    else:
        fix = "check the disk"
    error = WriteError(
        f"could not write {path}: {why}{free}. The previous {path.name}, if any, is unchanged and no partial file "
        f"is left; {fix}, then run the command again."
    )
    error.errno = exc.errno
    return error


def _size(n: int) -> str:
    """A byte count for people: '0 bytes', '512 bytes', '3.4 MB', '12.0 GB'."""
    value, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def remove_partial_files(directory: str | os.PathLike[str], *, min_age_s: float = 0.0) -> list[str]:
    """Delete the temporary files of writes that never finished (a process killed mid-write); return their names.

    :func:`atomic_write` cleans up after itself on any exception, but nothing runs under SIGKILL or a power cut.
    Where another process may be writing into ``directory`` now, ``min_age_s`` spares the files younger than that.
    """
    names = []
    now = time.time()
    for tmp in sorted(Path(directory).glob(f".*{PARTIAL_SUFFIX}")):
        try:
            if now - tmp.stat().st_mtime < min_age_s:
                continue
            tmp.unlink()
        except OSError:  # gone meanwhile, or not ours to remove
            continue
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


def onnx_graph_sha256(model: bytes) -> str | None:
    """The sha256 of the graph (operators and weights) in the bytes of an ONNX file; None if they do not parse.

    An ONNX file is a protocol buffer ``ModelProto`` whose field 7 is the graph and field 14 the metadata, so the
    graph's checksum can be stored in the metadata of the file it describes. This walks the top level of the
    message (tag, then a varint, 8 bytes, a length-prefixed field or 4 bytes) with the standard library alone.
    """
    digest, pos, found = hashlib.sha256(), 0, False
    try:
        while pos < len(model):
            tag, pos = _varint(model, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = _varint(model, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(model, pos)
                if field == 7:
                    digest.update(model[pos : pos + size])
                    found = True
                pos += size
            else:
                return None
    except IndexError:
        return None
    return digest.hexdigest() if found and pos == len(model) else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protocol buffer varint at ``pos``: its value and the position after it (IndexError past the end)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
