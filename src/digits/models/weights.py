"""A network's weights in one ``.safetensors`` file that is enough to rebuild it.

The file's metadata names the network and its options (``create_model(name, **options)``), the layout
version (:data:`digits.spec.WEIGHTS_FORMAT`) and whatever the run adds (temperature, test accuracy,
evaluation precision, data checksums). safetensors holds tensors only: loading it never unpickles code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from digits.errors import ModelFileError
from digits.files import atomic_write, decode_metadata, encode_metadata
from digits.models.layers import FlattenHWC
from digits.models.registry import create_model
from digits.spec import WEIGHTS_FORMAT, WEIGHTS_NAME


def save_weights(model: nn.Module, path: Path, model_name: str, model_options: dict[str, Any], **meta: Any) -> None:
    """Write ``model``'s state with its name, options and ``meta`` in the file's metadata (atomically).

    Raises :class:`~digits.errors.WriteError` when the disk refuses the file; an older file at ``path`` stays.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = encode_metadata({"model": model_name, "model_options": model_options, "format": WEIGHTS_FORMAT, **meta})
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
    try:
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
