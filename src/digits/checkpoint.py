"""Writing and reading models and training state, atomically and without unpickling code.

* ``model.safetensors``: the weights, with the model name and options in the file's metadata, so a
  weights file alone is enough to rebuild the network.
* ``checkpoint.pt``: the state needed to resume (optimizer, history); written with
  ``torch.save`` to a temp file and renamed, read with ``weights_only=True`` (tensors and plain data only).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digits.errors import ModelFileError
from digits.models import create_model
from digits.models.layers import FlattenHWC

WEIGHTS_NAME = "model.safetensors"
META_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` then rename tmp to ``path``: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; a model file is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_files(directory: Path) -> list[str]:
    """Delete the temporary files of writes that never finished (a process killed mid-write); returns their names.

    ``atomic_write`` cleans up after itself on any exception, but nothing runs under SIGKILL or a power cut.
    """
    names = []
    for tmp in Path(directory).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        names.append(tmp.name)
    return names


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


# Version of the weight layout. 2: the seed network flattens in (height, width, channel) order (FlattenHWC);
# files without a version were written before, when it flattened channel-first.
WEIGHTS_FORMAT = 2


def save_weights(model: nn.Module, path: Path, model_name: str, model_options: dict[str, Any], **meta: Any) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"model": model_name, "model_options": json.dumps(model_options), "format": str(WEIGHTS_FORMAT)}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=metadata))


def load_weights(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a ``.safetensors`` file (or a run directory holding one)."""
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
    meta: dict[str, Any] = {"model": raw_meta["model"]}
    for k, v in raw_meta.items():
        if k != "model":
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
    try:
        model = create_model(meta["model"], **meta.get("model_options", {}))
        model.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} does not match the network it names ({meta['model']}): {exc}") from exc
    if meta.get("format", 1) < 2 and any(isinstance(m, FlattenHWC) for m in model.modules()):
        # Same shapes, so load_state_dict accepts it, but the dense weights would be read in the wrong order.
        raise ModelFileError(
            f"{path} was saved before digits flattened the {meta['model']} network in (height, width, channel) "
            "order; its dense weights no longer line up. Retrain it with this version of digits."
        )
    model.eval()
    return model, meta


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise ModelFileError(f"cannot read the training checkpoint {path}: {exc}") from exc
