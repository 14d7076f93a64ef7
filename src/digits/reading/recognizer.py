"""Read digits in pictures: ``Recognizer.load().predict(img)`` for one digit, ``.read(img)`` for numbers.

The Recognizer joins three things, each with its own home:

* :mod:`digits.reading.pipeline` finds the digits in a picture and makes each look like MNIST (28x28);
* a trained network turns each 28x28 into logits, run by onnxruntime (an ``.onnx`` file, no torch
  needed) or by torch (a ``.safetensors`` file or a run directory);
* :mod:`digits.reading.calibration` turns logits into honest probabilities (the temperature stored with the
  model) and says whether the shape looks like a handwritten digit at all.

It answers only when it can: a picture with no ink gives no digit ("no digit found"), and a digit
whose calibrated confidence is below ``threshold``, or whose shape is unlike any handwritten digit
of that class (a letter, a scribble), is reported but marked ``uncertain``.

Nothing here imports torch unless the torch backend is used, nor any training or MNIST code.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digits.errors import ConfigError, ImageError, ModelFileError
from digits.files import decode_metadata
from digits.reading.calibration import DigitShapes, softmax
from digits.reading.pipeline import Glyph, ImageSource, prepare
from digits.spec import (
    IMAGE_SIZE,
    NUM_CLASSES,
    ONNX_INPUT,
    ONNX_NAME,
    ONNX_OUTPUT,
    SHIPPED_DIR,
    SHIPPED_ONNX,
    SHIPPED_SAFETENSORS,
    SHIPPED_SHAPES,
    WEIGHTS_NAME,
    to_model_input,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_THRESHOLD",
    "FileResult",
    "ModelFileError",
    "Prediction",
    "Reading",
    "Recognizer",
]

BACKENDS = ("auto", "onnx", "torch")
# Below this calibrated probability a digit is reported as uncertain. For the shipped model, 0.6% of
# MNIST test digits fall below it (most of them wrong answers), and answers between 0.5 and 0.9 are
# right about 80% of the time.
DEFAULT_THRESHOLD = 0.7

# A picture with at least this many shapes, most of them doubtful, is read as texture, not writing.
_TEXTURE_SHAPES = 4

NO_DIGIT = "no digit found"
LOW_CONFIDENCE = "low confidence"
UNLIKE_A_DIGIT = "unlike a handwritten digit"
TEXTURE = "most shapes in the picture are doubtful: noise or texture, not writing"


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Prediction:
    """One digit: what it is, how sure, and what the model saw.

    digit: the most probable digit, or None when the picture holds no digit at all.
    confidence: the calibrated probability of ``digit`` (0.0 when there is none).
    probabilities: (10,) float32 calibrated probabilities; all zero when there is no digit.
    uncertain: True when the answer should not be trusted; ``reason`` says why ("no digit found",
        "low confidence", "unlike a handwritten digit", or several of these joined by "; ").
    image28: (28, 28) uint8, light ink on black: exactly what the model saw (None without a digit).
    box: (x, y, w, h) of the digit's ink in the picture; line: its line of text, 0 at the top.
    """

    digit: int | None
    confidence: float
    probabilities: np.ndarray
    uncertain: bool
    reason: str = ""
    image28: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    line: int = 0

    def top(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable digits with their probabilities, most probable first."""
        if self.digit is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        """Plain JSON-ready values; with ``top_k``, also the k most probable digits."""
        out: dict[str, Any] = {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "uncertain": self.uncertain,
            "reason": self.reason,
            "box": list(self.box) if self.box is not None else None,
        }
        if top_k is not None:
            out["top"] = [{"digit": d, "probability": round(p, 6)} for d, p in self.top(top_k)]
        return out


@dataclass(frozen=True, eq=False)
class Reading:
    """The digits of a picture in reading order (top line first, left to right).

    text: the digits as a string, one line of text per line of the picture, joined by newlines;
        an uncertain digit is written "?", and a picture without digits reads "".
    digits: one :class:`Prediction` per digit, with its box and line.
    """

    text: str
    digits: tuple[Prediction, ...]

    @property
    def uncertain(self) -> bool:
        """True when some digit is uncertain or nothing was found."""
        return not self.digits or any(d.uncertain for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "digits": [
                {
                    "digit": d.digit,
                    "confidence": round(d.confidence, 6),
                    "box": list(d.box) if d.box is not None else None,
                    "line": d.line,
                    "uncertain": d.uncertain,
                    "reason": d.reason,
                }
                for d in self.digits
            ],
        }


@dataclass(frozen=True, eq=False)
class FileResult:
    """What became of one input of a batch: its result, or the error that stopped it."""

    file: str
    result: Prediction | Reading | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        if self.result is None:
            return {"file": self.file, "error": self.error}
        body = self.result.to_dict(top_k) if isinstance(self.result, Prediction) else self.result.to_dict()
        return {"file": self.file, **body}


# --------------------------------------------------------------------------------------------------
# Backends: (N, 1, 28, 28) float32 in [0, 1] -> (N, 10) float32 logits


class _Backend(Protocol):
    name: str
    meta: dict[str, Any]

    def logits(self, x: np.ndarray) -> np.ndarray: ...


class _OnnxBackend:
    """onnxruntime on the CPU: no torch needed."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base but Exception
            raise ModelFileError(f"{path} is not a readable ONNX model ({e}); was it truncated?") from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [ONNX_INPUT] or outputs[0].name != ONNX_OUTPUT:
            raise ModelFileError(
                f"{path} is not a digits model: it maps {[i.name for i in inputs]} to {[o.name for o in outputs]}, "
                f"not ['{ONNX_INPUT}'] to ['{ONNX_OUTPUT}']; export one with `digits export`"
            )
        self.meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0], dtype=np.float32)


class _TorchBackend:
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


# --------------------------------------------------------------------------------------------------
# The Recognizer


class Recognizer:
    """A loaded model that reads digits in pictures. Build it with :meth:`Recognizer.load`.

    Pictures may be a path, the bytes of an image file, a PIL image or a numpy array (see
    :func:`digits.reading.pipeline.load_image`); a picture that cannot be read raises
    :class:`digits.reading.pipeline.ImageError`.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        source: Path,
        threshold: float = DEFAULT_THRESHOLD,
        shapes: DigitShapes | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        temperature = float(backend.meta.get("temperature", 1.0))
        if not temperature > 0:
            raise ModelFileError(f"{source} stores a temperature of {temperature}; it must be positive")
        self._backend = backend
        self.source = source
        self.threshold = threshold
        self.temperature = temperature
        self.shapes = shapes

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        threshold: float = DEFAULT_THRESHOLD,
        shape_check: bool = True,
        threads: int | None = None,
    ) -> Recognizer:
        """Load a model: None for the one shipped in the package, or a run directory, a
        ``.safetensors`` or an ``.onnx`` file.

        backend: "onnx" (onnxruntime, an .onnx file), "torch" (a .safetensors file or run
        directory), or "auto": onnxruntime when there is an ONNX file for the model, else torch.
        threshold: calibrated confidence below which a digit is marked uncertain.
        shape_check: also mark uncertain what does not look like a handwritten digit.
        threads: CPU threads for inference (default: the runtime's choice).
        """
        kind, path = find_model(model, backend)
        runner: _Backend = _OnnxBackend(path, threads) if kind == "onnx" else _TorchBackend(path, threads)
        shapes = None
        if shape_check:
            if not SHIPPED_SHAPES.is_file():
                raise ModelFileError(
                    f"the digit shape model {SHIPPED_SHAPES} is missing from the installation; reinstall digits "
                    "(or load with shape_check=False, and letters and scribbles will pass for digits)"
                )
            shapes = DigitShapes.load(SHIPPED_SHAPES)  # ModelFileError when it is not one
        return cls(runner, source=path, threshold=threshold, shapes=shapes)

    @property
    def backend(self) -> str:
        """The runtime that runs the model: "onnx" or "torch"."""
        return self._backend.name

    @property
    def info(self) -> dict[str, Any]:
        """What is loaded: file, backend, model name, temperature, test accuracy, threshold."""
        meta = self._backend.meta
        return {
            "model": meta.get("model"),
            "file": str(self.source),
            "backend": self.backend,
            "temperature": self.temperature,
            "test_accuracy": meta.get("test_accuracy"),
            "threshold": self.threshold,
            "shape_check": self.shapes is not None,
        }

    # -- the model on 28x28 digits --------------------------------------------------------------

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) float32 raw logits of (N, 28, 28) uint8 MNIST-style digits."""
        if len(images) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        return self._backend.logits(to_model_input(images))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) calibrated probabilities of (N, 28, 28) uint8 MNIST-style digits."""
        return softmax(self.logits(images), self.temperature)

    def classify(self, images: np.ndarray) -> list[Prediction]:
        """One :class:`Prediction` per (28, 28) uint8 MNIST-style digit, all in one model call.

        For digits already normalised as MNIST's are (light on black, fitted into 20x20, centred by
        mass); pictures go through :meth:`predict` or :meth:`read`, which normalise them first.
        """
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        probs = self.probabilities(images)
        digits = probs.argmax(axis=1)
        unlike = self.shapes.score(images, digits) > 1.0 if self.shapes is not None else np.zeros(len(images), bool)
        out = []
        for image, p, d, odd in zip(images, probs, digits, unlike):
            confidence = float(p[d])
            reasons = [LOW_CONFIDENCE] if confidence < self.threshold else []
            reasons += [UNLIKE_A_DIGIT] if odd else []
            out.append(
                Prediction(
                    digit=int(d),
                    confidence=confidence,
                    probabilities=p,
                    uncertain=bool(reasons),
                    reason="; ".join(reasons),
                    image28=image,
                )
            )
        return out

    # -- pictures --------------------------------------------------------------------------------

    def predict(self, img: ImageSource) -> Prediction:
        """The one digit in a picture (a picture of several gives the biggest, marked uncertain)."""
        return self._predict_prepared([_prepare(img)])[0]

    def read(self, img: ImageSource) -> Reading:
        """All the digits in a picture, in reading order, and the text they make."""
        return self._read_prepared([_prepare(img)])[0]

    def predict_batch(self, sources: Sequence[ImageSource]) -> list[FileResult]:
        """:meth:`predict` for many pictures; a picture that cannot be read gives an error, not an exception."""
        return self._batch(sources, self._predict_prepared)

    def read_batch(self, sources: Sequence[ImageSource]) -> list[FileResult]:
        """:meth:`read` for many pictures; a picture that cannot be read gives an error, not an exception."""
        return self._batch(sources, self._read_prepared)

    @staticmethod
    def _batch(sources: Sequence[ImageSource], run: Any) -> list[FileResult]:
        """Prepare every picture, run ``run`` once on the readable ones, and put errors back in place."""
        names, prepared, errors = _prepare_all(sources)
        results = iter(run([p for p in prepared if p is not None]))
        return [
            FileResult(name, next(results) if p is not None else None, err)
            for name, p, err in zip(names, prepared, errors)
        ]

    def _predict_prepared(self, pictures: Sequence[tuple[Glyph, ...]]) -> list[Prediction]:
        # The biggest shape is the digit; anything else found beside it makes the answer doubtful.
        chosen = [max(glyphs, key=lambda g: g.box[2] * g.box[3]) if glyphs else None for glyphs in pictures]
        found = self.classify(
            np.stack([g.image for g in chosen if g is not None]) if any(g is not None for g in chosen) else _EMPTY
        )
        answers = iter(found)
        out = []
        for glyphs, glyph in zip(pictures, chosen):
            if glyph is None:
                out.append(_nothing())
                continue
            p = next(answers)
            reason = p.reason
            if len(glyphs) > 1:
                reason = "; ".join(filter(None, [reason, f"{len(glyphs)} shapes found: `read` reads numbers"]))
            out.append(_place(p, glyph, reason))
        return out

    def _read_prepared(self, pictures: Sequence[tuple[Glyph, ...]]) -> list[Reading]:
        every = [g for glyphs in pictures for g in glyphs]
        answers = iter(self.classify(np.stack([g.image for g in every]) if every else _EMPTY))
        out = []
        for glyphs in pictures:
            digits = tuple(_place(next(answers), g, None) for g in glyphs)
            doubtful = sum(d.uncertain for d in digits)
            if len(digits) >= _TEXTURE_SHAPES and doubtful > len(digits) / 2:
                # Most shapes are doubtful: this is texture or noise (pepper, grain), not writing, and
                # the few that look like digits do so by chance.
                digits = tuple(_place(d, g, d.reason or TEXTURE) for d, g in zip(digits, glyphs))
            lines: dict[int, str] = {}
            for d in digits:
                lines[d.line] = lines.get(d.line, "") + ("?" if d.uncertain else str(d.digit))
            out.append(Reading(text="\n".join(lines[k] for k in sorted(lines)), digits=digits))
        return out


_EMPTY = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def _nothing() -> Prediction:
    return Prediction(
        digit=None,
        confidence=0.0,
        probabilities=np.zeros(NUM_CLASSES, np.float32),
        uncertain=True,
        reason=NO_DIGIT,
    )


def _place(p: Prediction, glyph: Glyph, reason: str | None) -> Prediction:
    """``p`` with the glyph's box and line (and another reason, when given)."""
    reason = p.reason if reason is None else reason
    return dataclasses.replace(p, box=glyph.box, line=glyph.line, reason=reason, uncertain=bool(reason))


def _prepare(img: ImageSource) -> tuple[Glyph, ...]:
    return prepare(img).glyphs


def _prepare_all(
    sources: Sequence[ImageSource],
) -> tuple[list[str], list[tuple[Glyph, ...] | None], list[str | None]]:
    names: list[str] = []
    prepared: list[tuple[Glyph, ...] | None] = []
    errors: list[str | None] = []
    for i, src in enumerate(sources):
        names.append(str(src) if isinstance(src, (str, os.PathLike)) else f"#{i}")
        try:
            prepared.append(_prepare(src))
            errors.append(None)
        except (ImageError, OSError) as e:  # OSError: a file that exists but cannot be opened
            prepared.append(None)
            errors.append(str(e))
    return names, prepared, errors
