"""The torch-free contract every part of digits agrees on: image size, classes, pixel scale, file names.

Every model in digits sees an image as float32 in [0, 1]: the uint8 MNIST byte divided by 255, light
ink on a dark background, shape (B, 1, 28, 28). This is the article's scaling, and :func:`to_model_input`
is the one conversion; training, evaluation, the Recognizer (torch or onnxruntime) and export all use it.
What a run directory holds, what an exported graph's input and output are called and where the shipped
model lives are named here too, so the training side writes what the reading side reads without either
importing the other. Only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28
PIXEL_SCALE = 255.0
NUM_CLASSES = 10

# Images per forward pass when only predicting (evaluation, ensembles, the torch Recognizer). Small enough
# that a batch's activations stay in the CPU's caches and under glibc's mmap threshold: 12,000 validation
# images through the seed net took 0.37 s at 256 or 500, 1.1 s at 1,000 (each 1,000-batch page-faulted
# ~86 MB of fresh memory).
EVAL_BATCH_SIZE = 256

# The most pixels (width x height) a picture to read may have: 50 MP, a large phone photo, whose float copy
# alone takes 200 MB. A bigger one is refused before it is decoded (a decompression bomb declares billions).
MAX_PIXELS = 50_000_000

# A run directory (digits.train writes it, digits.reading and digits.export read it).
WEIGHTS_NAME = "model.safetensors"  # the weights; the network's name and options are in its metadata
META_NAME = "run.json"  # resolved config, metrics, history, provenance
CHECKPOINT_NAME = "checkpoint.pt"  # the state to resume from; removed when the run finishes
ONNX_NAME = "model.onnx"  # `digits export RUN` writes it beside the weights
ONNX_INT8_NAME = "model.int8.onnx"

# Version of the weight layout. 2: the seed network flattens in (height, width, channel) order (FlattenHWC);
# files without a version were written before, when it flattened channel-first.
WEIGHTS_FORMAT = 2

# The exported graph: (B, 1, 28, 28) float32 in [0, 1] named "images" -> (B, 10) float32 named "logits".
ONNX_INPUT = "images"
ONNX_OUTPUT = "logits"

# The model and the digit-shape model shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_ONNX = SHIPPED_DIR / "default.onnx"
SHIPPED_SAFETENSORS = SHIPPED_DIR / "default.safetensors"
SHIPPED_SHAPES = SHIPPED_DIR / "digit_shapes.npz"


def to_model_input(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 1, 28, 28) float32 in [0, 1]: the one conversion to model input.

    A single (28, 28) image gives a batch of one. Anything but uint8 of that shape raises ValueError.
    """
    batch = np.asarray(images) if len(images) else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3 or batch.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or batch.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {batch.dtype} {batch.shape}"
        )
    return (batch.astype(np.float32) / np.float32(PIXEL_SCALE))[:, None]
