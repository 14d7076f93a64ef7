"""digits: handwritten digit recognition — verified MNIST, fast CPU training, honest evaluation.

    from digits import Recognizer
    r = Recognizer.load()            # the model shipped in the package
    r.predict("digit.png").digit     # one digit (None when there is none)
    r.read("number.jpg").text        # all the digits, e.g. "2026"

    from digits import fit, get_preset
    run = fit(get_preset("fast"), "runs/fast")   # 99% in a few seconds on a laptop CPU

The package, by what each part does (dependencies point down the list, never up):

    cli.py      the ``digits`` command: parses, calls the library, prints
    serve/      the HTTP API and the drawing page, on the Recognizer (corrections.py keeps what people correct)
    export.py   ONNX export (fp32, int8) and its parity with torch
    train/      config and presets, augmentation, the loop, optimizers, checkpoints, evaluation, plots
    reading/    pictures -> digits: load, segment, normalise, backends, calibration, Recognizer
    models/     the registry of networks, their weights files, inference
    data/       where MNIST comes from: sources, checksums, IDX parsing, cache
    spec.py, errors.py, files.py   the contract (sizes, scale, names), the exception tree, file writing

Importing ``digits`` is cheap and needs no torch: every name below but the errors is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits._lazy import lazy_exports
from digits.errors import (
    ConfigError,
    DataError,
    DigitsError,
    ImageError,
    ModelFileError,
    ParityError,
    RunError,
    UsageError,
    WriteError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DigitsError",
    "ImageError",
    "ModelFileError",
    "ParityError",
    "Recognizer",
    "RunError",
    "TrainConfig",
    "UsageError",
    "WriteError",
    "__version__",
    "create_model",
    "fit",
    "get_preset",
    "load_mnist",
]

_HOMES = {
    "Recognizer": "digits.reading.recognizer",
    "TrainConfig": "digits.train.config",
    "get_preset": "digits.train.config",
    "fit": "digits.train.loop",
    "create_model": "digits.models.registry",
    "load_mnist": "digits.data",
}

if TYPE_CHECKING:
    from digits.data import load_mnist
    from digits.models.registry import create_model
    from digits.reading.recognizer import Recognizer
    from digits.train.config import TrainConfig, get_preset
    from digits.train.loop import fit


# ``digits.Recognizer`` imports the reading code (numpy, OpenCV) only when asked for, ``digits.fit`` torch.
__getattr__ = lazy_exports(__name__, _HOMES)
