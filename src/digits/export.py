"""ONNX export: one file with a dynamic batch dimension, checked, compared with torch, optionally int8.

The exported graph maps ``images`` (B, 1, 28, 28) float32 in [0, 1] (see :mod:`digits.spec`) to
``logits`` (B, 10); the Recognizer applies the calibration temperature and the softmax. What the
Recognizer needs to know about the model travels in the file's metadata_props: the model name and
options, the temperature, the test accuracy, the data checksums, and whether it is int8.

Like timm's ``onnx_export``: export, ``onnx.checker``, then the same inputs through torch and
onnxruntime must give the same outputs. Exporting needs torch, onnx and onnxscript (torch is imported
when a network is exported or compared, so this module imports without it); running the result
(:func:`onnx_logits`) needs only onnxruntime. Nothing here reads pictures: that is :mod:`digits.reading`.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.errors import ConfigError, ParityError
from digits.files import GRAPH_CHECKSUM, decode_metadata, encode_metadata, onnx_graph_sha256, write_bytes
from digits.spec import IMAGE_SIZE, ONNX_INPUT, ONNX_OUTPUT, to_model_input

if TYPE_CHECKING:
    from torch import nn

# Opset 18 is the newest the dynamo exporter writes natively and onnxruntime's quantizer knows.
OPSET = 18
# The largest logit difference allowed between an fp32 export and torch; float32 rounding in a
# different order of operations stays well below it.
PARITY_ATOL = 1e-4
# How many training images calibrate the int8 activation ranges: the quantizer's min/max settle
# well before this, and each costs one forward pass.
CALIBRATION_IMAGES = 1000


def export_onnx(
    model_or_run: nn.Module | str | Path,
    path: str | Path,
    *,
    int8: bool = False,
    calibration_images: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model_or_run`` as a single ONNX file at ``path`` and return the path.

    ``model_or_run`` is a network, a run directory or a ``.safetensors`` file; for a file, its
    metadata (model name, options, temperature, test accuracy, data checksums) is carried over, and
    ``meta`` adds to or replaces it. With ``int8``, the weights and activations are quantized to
    8 bits by onnxruntime's static quantization, its activation ranges measured on
    ``calibration_images``: (N, 28, 28) uint8 MNIST *training* images (N of a few hundred or more).
    """
    model, file_meta = _resolve(model_or_run)
    meta = {**file_meta, **(meta or {})}
    if int8 and (calibration_images is None or len(calibration_images) == 0):
        raise ConfigError("int8 export needs calibration_images: a few hundred MNIST training images (N, 28, 28) uint8")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="digits-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_fp32(model, fp32)
        if int8:
            assert calibration_images is not None
            final = Path(tmp) / "int8.onnx"
            _quantize(fp32, final, calibration_images, Path(tmp))
        else:
            final = fp32
        _finish(final, path, {**meta, "int8": int8})
    return path


def _resolve(model_or_run: nn.Module | str | Path) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(model_or_run, (str, Path)):
        from digits.models.weights import load_weights

        return load_weights(model_or_run)
    return model_or_run, {}


def _export_fp32(model: nn.Module, path: Path) -> None:
    """Trace the network in eval mode with a dynamic batch dimension, as one self-contained file."""
    import torch

    was_training = model.training
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)  # 2, not 1: a batch of 1 may be specialised away
    batch = torch.export.Dim("batch", min=1)
    try:
        with _known_exporter_noise_hidden():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,  # the exporter otherwise prints its progress to stdout
                external_data=False,  # one file: weights inside the graph, not beside it
            )
    finally:
        model.train(was_training)


# What torch's exporter says on every export that is no news to a digits user (as of torch 2.13):
# - its op registry logs "torchvision is not installed. Skipping torchvision::nms" (and roi_align, roi_pool,
#   deform_conv2d) while it looks for torchvision's detection ops, which no digits network uses;
# - torch.export builds a pytree LeafSpec, and torch warns of LeafSpec's own deprecation (FutureWarning).
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
_SKIPPING_TORCHVISION = "torchvision is not installed. Skipping torchvision::"
_LEAFSPEC_DEPRECATED = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def _not_torchvision_skipped(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_SKIPPING_TORCHVISION)


@contextlib.contextmanager
def _known_exporter_noise_hidden() -> Iterator[None]:
    """Hide only the exporter's known, harmless messages (above); any other warning or log line still shows."""
    registry = logging.getLogger(_REGISTRY_LOGGER)
    registry.addFilter(_not_torchvision_skipped)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATED, category=FutureWarning)
            yield
    finally:
        registry.removeFilter(_not_torchvision_skipped)


class _Calibration:
    """Feeds the quantizer one batch of real digits at a time (an onnxruntime CalibrationDataReader)."""

    def __init__(self, images: np.ndarray, batch_size: int = 100) -> None:
        x = to_model_input(np.asarray(images, dtype=np.uint8))  # (N, 1, 28, 28) float32
        self._batches: Iterator[np.ndarray] = iter([x[i : i + batch_size] for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {ONNX_INPUT: batch}


def _quantize(fp32: Path, out: Path, images: np.ndarray, tmp: Path) -> None:
    """Static int8 quantization: per-channel int8 weights, uint8 activations with calibrated ranges.

    quant_pre_process runs shape inference and folds batchnorm into the convolutions first, as
    onnxruntime's quantization guide recommends: a folded conv quantizes as one operator.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Calibration, CalibrationDataReader):
        pass

    import onnx

    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    # A batchnorm left unfolded (fastnet pools between conv and BN) stays in float: its 1-D weights
    # have no channel axis to quantize along, and it costs little.
    ops = sorted({node.op_type for node in onnx.load(str(prepared)).graph.node} - {"BatchNormalization"})
    quantize_static(
        str(prepared),
        str(out),
        Reader(images),
        # QDQ keeps the float graph readable with quantize/dequantize pairs around each operator;
        # onnxruntime's CPU provider fuses each pair into its integer kernel (QLinearConv, ...).
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=ops,
    )


def _finish(source: Path, path: Path, meta: dict[str, Any]) -> None:
    """Add the metadata (with the graph's checksum), check the model, and move it into place atomically."""
    import onnx

    from digits.models.weights import CHECKSUM_KEY

    proto = onnx.load(str(source))
    proto.doc_string = "digits: (B, 1, 28, 28) float32 in [0, 1], light ink on black -> (B, 10) logits"
    del proto.metadata_props[:]
    # The torch file's checksum describes other bytes; this file carries its own.
    meta = {k: v for k, v in meta.items() if k not in (CHECKSUM_KEY, GRAPH_CHECKSUM)}
    meta[GRAPH_CHECKSUM] = onnx_graph_sha256(proto.SerializeToString())
    for key, value in sorted(encode_metadata(meta).items()):
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value
    onnx.checker.check_model(proto, full_check=True)
    write_bytes(path, proto.SerializeToString())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata_props of an exported file, JSON values decoded (the model name stays a string)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return decode_metadata({entry.key: entry.value for entry in proto.metadata_props})


def onnx_logits(path: str | Path, images: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) float32 logits of an exported model on (N, 28, 28) uint8 images, with onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = to_model_input(np.asarray(images, dtype=np.uint8))
    out = [session.run([ONNX_OUTPUT], {ONNX_INPUT: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def check_parity(
    model_or_run: nn.Module | str | Path, path: str | Path, images: np.ndarray, *, atol: float = PARITY_ATOL
) -> float:
    """Largest absolute logit difference between torch and the ONNX file on ``images``.

    ``images``: (N, 28, 28) uint8. Raises :class:`ParityError` when it exceeds ``atol``; an int8 file is
    compared by accuracy instead (:func:`int8_accuracy`), as its logits differ by design.
    """
    import torch

    model, _ = _resolve(model_or_run)
    was_training = model.training
    try:
        with torch.inference_mode():
            x = torch.from_numpy(to_model_input(np.asarray(images, dtype=np.uint8)))
            expected = model.eval()(x).numpy()
    finally:
        model.train(was_training)
    if not (np.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0, got {atol}")
    got = onnx_logits(path, images)
    if not (np.isfinite(got).all() and np.isfinite(expected).all()):
        raise ParityError(f"{path}: the logits are not finite numbers (NaN or infinity): the model is broken")
    diff = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    if not diff <= atol:
        raise ParityError(f"{path}: ONNX logits differ from torch by up to {diff:.2e} (allowed {atol:.0e})")
    return diff


def parity_images(n: int = 64) -> np.ndarray:
    """(n, 28, 28) fixed random uint8 images: they need no data and exercise every pixel value."""
    return np.random.default_rng(0).integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


def int8_accuracy(
    model_or_run: nn.Module | str | Path, int8_path: str | Path, images: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """(fp32, int8) accuracy on ``images`` (N, 28, 28) uint8 with ``labels`` (N,): what quantizing cost.

    The fp32 figure is the same network exported without quantization and run by onnxruntime too, so
    the difference is the quantization alone.
    """
    labels = np.asarray(labels, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="digits-export-") as tmp:
        fp32 = export_onnx(model_or_run, Path(tmp) / "fp32.onnx")
        accuracy_fp32 = float((onnx_logits(fp32, images).argmax(1) == labels).mean())
    accuracy_int8 = float((onnx_logits(int8_path, images).argmax(1) == labels).mean())
    return accuracy_fp32, accuracy_int8
