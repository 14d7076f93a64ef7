"""The runtimes that turn (N, 1, 28, 28) float32 in [0, 1] into (N, 10) float32 logits, and which file each runs.

onnxruntime runs an ``.onnx`` file with no torch at all; torch runs a ``.safetensors`` file or a run
directory, and is imported only when that backend is built.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digits.errors import ConfigError, ModelFileError
from digits.files import GRAPH_CHECKSUM, decode_metadata, onnx_graph_sha256
from digits.spec import (
    NUM_CLASSES,
    ONNX_INPUT,
    ONNX_NAME,
    ONNX_OUTPUT,
    SHIPPED_DIR,
    SHIPPED_ONNX,
    SHIPPED_SAFETENSORS,
    WEIGHTS_NAME,
)

BACKENDS = ("auto", "onnx", "torch")


class Backend(Protocol):
    """What the Recognizer needs of a runtime: its name, the model file's metadata, and logits."""

    name: str
    meta: dict[str, Any]

    def logits(self, x: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    """onnxruntime on the CPU: no torch needed."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelFileError(f"cannot read the model file {path}: {e.strerror or e}") from e
        try:
            self.session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base but Exception
            raise ModelFileError(f"{path} is not a readable ONNX model ({e}); was it truncated?") from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [ONNX_INPUT] or outputs[0].name != ONNX_OUTPUT:
            raise ModelFileError(
                f"{path} is not a digits model: it maps {[i.name for i in inputs]} to {[o.name for o in outputs]}, "
                f"not ['{ONNX_INPUT}'] to ['{ONNX_OUTPUT}']; export one with `digits export`"
            )
        classes = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(classes, int) and classes != NUM_CLASSES:
            raise ModelFileError(
                f"{path} gives {classes} scores a picture, not one for each of the {NUM_CLASSES} digits: it is "
                "not a digits model; export one with `digits export`"
            )
        self.meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        expected = self.meta.get(GRAPH_CHECKSUM)
        if expected is not None and expected != onnx_graph_sha256(data):
            raise ModelFileError(
                f"{path} is damaged: its graph no longer matches the checksum written with it ({GRAPH_CHECKSUM} in "
                "its metadata), so some bytes changed after it was exported. Do not use it: restore it from a "
                "copy, or export it again with `digits export`"
            )

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0], dtype=np.float32)


class TorchBackend:
    """torch on the CPU, for a .safetensors model; imports torch only when used."""

    name = "torch"

    def __init__(self, path: Path, threads: int | None) -> None:
        import torch

        from digits.models.weights import load_weights

        if threads:
            torch.set_num_threads(threads)  # torch has no per-model setting: this is process-wide
        self.model, self.meta = load_weights(path)  # raises ModelFileError with the reason
        self.model = self.model.to("cpu").eval()

    def logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        from digits.models.inference import predict_logits

        return predict_logits(self.model, torch.from_numpy(x), device="cpu").numpy()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def find_model(model: str | os.PathLike[str] | None, backend: str = "auto") -> tuple[str, Path]:
    """Which backend runs which file: ("onnx" | "torch", path).

    ``model`` is None (the model shipped in the package), a run directory, a ``.safetensors`` file
    or an ``.onnx`` file. ``backend`` "auto" prefers onnxruntime when there is an ONNX file and
    onnxruntime is installed, then torch. Raises :class:`ModelFileError` saying what is missing.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if model is None:
        where = f"the default model in {SHIPPED_DIR}"
        files = {"onnx": SHIPPED_ONNX, "torch": SHIPPED_SAFETENSORS}
    else:
        path = Path(model)
        where = str(path)
        if path.is_dir():
            files = {"onnx": path / ONNX_NAME, "torch": path / WEIGHTS_NAME}
        elif path.suffix == ".onnx":
            files = {"onnx": path}
        elif path.suffix == ".safetensors":
            files = {"torch": path}
        elif not path.exists():
            raise ModelFileError(f"no model at {path}: give a run directory, a .safetensors or an .onnx file")
        else:
            raise ModelFileError(f"{path} is not a model file: give a run directory, a .safetensors or an .onnx file")
    runtime = {"onnx": "onnxruntime", "torch": "torch"}
    kinds = ["onnx", "torch"] if backend == "auto" else [backend]
    present = [k for k in kinds if k in files and files[k].is_file()]
    for kind in present:
        if _installed(runtime[kind]):
            return kind, files[kind]
    if present:
        kind = present[0]
        raise ModelFileError(
            f"{files[kind]} needs {runtime[kind]}, which is not installed: pip install {runtime[kind]}"
        )
    if backend == "onnx" and "onnx" not in files:
        raise ModelFileError(
            f"the onnx backend needs an .onnx file, and {where} is not one; "
            "make one with: digits export RUN --format onnx -o model.onnx"
        )
    if backend == "torch" and "torch" not in files:
        raise ModelFileError(f"the torch backend needs a .safetensors file or a run directory, and {where} is neither")
    wanted = " or ".join(str(files[k]) for k in kinds if k in files)
    if model is None:
        raise ModelFileError(f"no model installed: {wanted} is missing; train one with `digits train` and pass it")
    raise ModelFileError(f"no model file at {wanted}")


def open_backend(kind: str, path: Path, threads: int | None = None) -> Backend:
    """The runtime ``kind`` ("onnx" or "torch", as :func:`find_model` says) with ``path`` loaded."""
    return OnnxBackend(path, threads) if kind == "onnx" else TorchBackend(path, threads)
