"""A network's weights in one ``.safetensors`` file that is enough to rebuild it.

The file's metadata names the network and its options (``create_model(name, **options)``), the layout
version (:data:`digits.spec.WEIGHTS_FORMAT`), the sha256 of the tensors (:data:`CHECKSUM_KEY`) and whatever
the run adds (temperature, test accuracy, evaluation precision, data checksums). safetensors holds tensors
only: loading it never unpickles code.

Loading checks, in this order, before any real network is built: the tensors against their checksum (a file
changed after it was written: flipped bytes still parse), then the metadata against the tensors, on a network
built on torch's ``meta`` device, which allocates nothing (edited ``widths`` would otherwise allocate
gigabytes before the mismatch shows).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from digits.errors import ModelFileError
from digits.files import atomic_write, decode_metadata, encode_metadata
from digits.models.layers import FlattenHWC
from digits.models.registry import create_model
from digits.spec import WEIGHTS_FORMAT, WEIGHTS_NAME

CHECKSUM_KEY = "tensors_sha256"  # the metadata key of the tensors' checksum (:func:`sha256_of` the state dict)


def sha256_of(value: Any) -> str:
    """A sha256 of tensors and plain data, nested in dicts, lists and tuples: the same value, the same digest.

    Each tensor counts with its dtype, shape and bytes; dict entries in the order of their keys' ``repr`` (a
    state dict's names, an optimizer's parameter numbers). A list and a tuple of the same items are the same
    (a file read back may give either).
    """
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"tensor {t.dtype} {list(t.shape)}:".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, whatever the dtype
    elif isinstance(value, Mapping):
        digest.update(f"dict {len(value)}:".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}=".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"list {len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:  # None, bool, int, float, str: their repr is exact (a float's repr round-trips)
        digest.update(f"{type(value).__name__} {value!r};".encode())


def save_weights(model: nn.Module, path: Path, model_name: str, model_options: dict[str, Any], **meta: Any) -> None:
    """Write ``model``'s state with its name, options and ``meta`` in the file's metadata (atomically).

    Raises :class:`~digits.errors.WriteError` when the disk refuses the file; an older file at ``path`` stays.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"model": model_name, "model_options": model_options, "format": WEIGHTS_FORMAT, **meta}
    metadata = encode_metadata({**meta, CHECKSUM_KEY: sha256_of(state)})
    atomic_write(Path(path), lambda tmp: _save_file(state, tmp, metadata))


def _save_file(state: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors' ``save_file``, a failed write raised as the OSError it is (ENOSPC for a full disk).

    safetensors reports one as ``SafetensorError: Error while serializing: I/O error: No space left on device
    (os error 28)``: the errno is only in the text.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path), metadata=metadata)
    except SafetensorError as exc:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from exc


def load_weights(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a ``.safetensors`` file (or a run directory holding one), in eval mode.

    Returns the network and the file's metadata. Raises :class:`ModelFileError` saying what is wrong.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}: give a run directory or a .safetensors file")
    if path.suffix == ".onnx":  # what onnxruntime runs holds no network torch can rebuild
        raise ModelFileError(
            f"{path} is an ONNX file, which only reads; give the weights: a run directory or .safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a readable safetensors model file ({exc}); was it truncated?") from exc
    if "model" not in raw_meta:
        raise ModelFileError(f"{path} has no model name in its metadata: it was not written by digits")
    meta = {**decode_metadata(raw_meta), "model": raw_meta["model"]}  # the name is a string, whatever it looks like
    options = meta.get("model_options", {})
    if not isinstance(options, dict):
        raise ModelFileError(
            f"{path} has model_options {options!r} in its metadata, not a mapping of option names to values: "
            "the file was edited or damaged; train or export it again"
        )
    expected = meta.get(CHECKSUM_KEY)
    if expected is not None and expected != sha256_of(state):
        raise ModelFileError(
            f"{path} is damaged: its tensors no longer match the checksum written with them ({CHECKSUM_KEY} in its "
            "metadata), so some bytes changed after it was saved. Do not use it: restore it from a copy, or train "
            "or export it again"
        )
    try:
        with torch.device("meta"):  # shapes only, no memory: the metadata may ask for an absurd network
            skeleton = create_model(meta["model"], **options)
        _check_shapes(skeleton.state_dict(), state)
        model = create_model(meta["model"], **options)
        model.load_state_dict(state)
    except (ValueError, RuntimeError, TypeError) as exc:  # TypeError: an option the network does not take
        raise ModelFileError(f"{path} does not match the network it names ({meta['model']}): {exc}") from exc
    if meta.get("format", 1) < 2 and any(isinstance(m, FlattenHWC) for m in model.modules()):
        # Same shapes, so load_state_dict accepts it, but the dense weights would be read in the wrong order.
        raise ModelFileError(
            f"{path} was saved before digits flattened the {meta['model']} network in (height, width, channel) "
            "order; its dense weights no longer line up. Retrain it with this version of digits."
        )
    model.eval()
    return model, meta


def _check_shapes(wanted: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> None:
    """Raise ValueError naming the tensors that a network (``wanted``) and a file (``got``) disagree on."""
    problems = [f"{k} is missing" for k in wanted if k not in got]
    problems += [f"{k} is not one of the network's" for k in got if k not in wanted]
    problems += [
        f"{k} is {list(got[k].shape)}, not {list(v.shape)}"
        for k, v in wanted.items()
        if k in got and got[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError("; ".join(problems[:3]) + more)
