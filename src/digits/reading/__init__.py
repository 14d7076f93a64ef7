"""Reading digits in real pictures: load, segment, normalise, run a model, calibrate, say when unsure.

    from digits.reading import Recognizer
    Recognizer.load().read("meter.jpg").text      # "2026"

One module per step, each used by the next:

    load.py         any picture (path, bytes, PIL, numpy) -> gray float32 in [0, 1]
    segment.py      ink, lighting and polarity -> one Glyph per digit, in reading order
    normalize.py    a digit's ink -> 28x28 the way MNIST was made
    pipeline.py     prepare(): the three above in one call; save_debug() shows what the model saw
    backends.py     onnxruntime or torch: (N, 1, 28, 28) -> (N, 10) logits; which file each runs
    calibration.py  softmax temperature and the digit-shape check behind "uncertain"
    results.py      Prediction, Reading, FileResult and the reasons for doubt
    recognizer.py   Recognizer: all of the above behind predict() and read()

Needs numpy, Pillow and OpenCV, and onnxruntime or torch to run the model; never the training code or
MNIST, and no torch on the onnxruntime path (tests/test_layout.py checks both). Importing this package
imports nothing: each name below is loaded on first use (``segment`` is the module; its function is
``digits.reading.segment.segment``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits._lazy import lazy_exports

__all__ = [
    "BACKENDS",
    "DEFAULT_THRESHOLD",
    "DigitShapes",
    "FileResult",
    "Glyph",
    "ImageSource",
    "Prediction",
    "Prepared",
    "Reading",
    "Recognizer",
    "find_model",
    "load_image",
    "prepare",
    "save_debug",
    "stroke_width",
    "to_mnist",
]

_HOMES = {
    "BACKENDS": "digits.reading.backends",
    "find_model": "digits.reading.backends",
    "DigitShapes": "digits.reading.calibration",
    "ImageSource": "digits.reading.load",
    "load_image": "digits.reading.load",
    "stroke_width": "digits.reading.normalize",
    "to_mnist": "digits.reading.normalize",
    "Prepared": "digits.reading.pipeline",
    "prepare": "digits.reading.pipeline",
    "save_debug": "digits.reading.pipeline",
    "Recognizer": "digits.reading.recognizer",
    "DEFAULT_THRESHOLD": "digits.reading.results",
    "FileResult": "digits.reading.results",
    "Prediction": "digits.reading.results",
    "Reading": "digits.reading.results",
    "Glyph": "digits.reading.segment",
}

if TYPE_CHECKING:
    from digits.reading.backends import BACKENDS, find_model
    from digits.reading.calibration import DigitShapes
    from digits.reading.load import ImageSource, load_image
    from digits.reading.normalize import stroke_width, to_mnist
    from digits.reading.pipeline import Prepared, prepare, save_debug
    from digits.reading.recognizer import Recognizer
    from digits.reading.results import DEFAULT_THRESHOLD, FileResult, Prediction, Reading
    from digits.reading.segment import Glyph


# the CLI reads BACKENDS and DEFAULT_THRESHOLD without loading OpenCV.
__getattr__ = lazy_exports(__name__, _HOMES)
