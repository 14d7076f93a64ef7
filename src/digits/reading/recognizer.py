"""Read digits in pictures: ``Recognizer.load().predict(img)`` for one digit, ``.read(img)`` for numbers.

The Recognizer joins three things, each with its own home:

* :mod:`digits.reading.pipeline` finds the digits in a picture and makes each look like MNIST (28x28);
* a trained network turns each 28x28 into logits, run by :mod:`digits.reading.backends`: onnxruntime
  (an ``.onnx`` file, no torch needed) or torch (a ``.safetensors`` file or a run directory);
* :mod:`digits.reading.calibration` turns logits into honest probabilities (the temperature stored with the
  model) and says whether the shape looks like a handwritten digit at all;
* :mod:`digits.reading.results` holds what comes back: a Prediction per digit, a Reading per picture.

It answers only when it can: a picture with no ink gives no digit ("no digit found"), and a digit
whose calibrated confidence is below ``threshold``, or whose shape is unlike any handwritten digit
of that class (a letter, a scribble), is reported but marked ``uncertain``.

Nothing here imports torch unless the torch backend is used, nor any training or MNIST code.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digits.errors import ConfigError, ImageError, ModelFileError
from digits.reading.backends import Backend, find_model, open_backend
from digits.reading.calibration import DigitShapes, softmax
from digits.reading.load import ImageSource
from digits.reading.page import Page, find_page
from digits.reading.pipeline import Prepared, prepare
from digits.reading.results import (
    DEFAULT_THRESHOLD,
    LOW_CONFIDENCE,
    NO_DIGIT,
    TEXTURE,
    UNLIKE_A_DIGIT,
    FileResult,
    Prediction,
    Reading,
)
from digits.reading.segment import Glyph, Trace, segment
from digits.spec import IMAGE_SIZE, MAX_PIXELS, NUM_CLASSES, SHIPPED_SHAPES, to_model_input

__all__ = ["Recognizer"]

# The lighting estimate is doubted, and the picture read with planar light too, when the estimate bends away
# from a plane by more than this many ink thresholds. (On the dev halves of benchmarks/reading_sets.py the
# photographed digits, the fonts and the non-digits bend by at most 0.12 of a threshold, 8x8 scans by 1.4-3.6;
# 0.1-1.0 read the same within 0.2 point.)
_DOUBTED_LIGHTING = 0.5
# A digit whose shape score (digits.reading.calibration.DigitShapes: 1 at the fitted limit of its class) is
# above this is unlike a handwritten digit. At 1.0, 2.2% of the shipped model's right answers on MNIST test
# digits are doubted for their shape and 2-6% on the low-resolution dev sets; at 1.5, 0.4% and 2-3%, with
# the threshold at 0.9 to keep doubting letters (dev font letters: 84% doubted at 0.9 and 1.0, 82% at 0.9
# and 1.5; at the earlier 0.7 and 1.0, 68%).
_SHAPE_LIMIT = 1.5
_PAGE = "the page found"  # the way that reads inside a page found
# A shape is cut in two when the less trusted of its halves is at most this share as likely to be wrong as the
# whole (chances of being wrong: 1 - calibrated confidence; 0.05: twenty times less likely).
_CUT_ODDS = 0.05
# ... and a whole read with at least this confidence is kept without trying its cuts: on the dev sets no pair was
# cut from a whole above 0.998, and trying every wide shape's cuts made a read of a photo 1.5 times as slow.
_CUT_CERTAIN = 0.999
# A picture with at least this many shapes, most of them doubtful, is read as texture, not writing.
_TEXTURE_SHAPES = 4


class Recognizer:
    """A loaded model that reads digits in pictures. Build it with :meth:`Recognizer.load`.

    Pictures may be a path, the bytes of an image file, a PIL image or a numpy array (see
    :func:`digits.reading.load.load_image`); a picture that cannot be read raises
    :class:`digits.errors.ImageError`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        source: Path,
        threshold: float = DEFAULT_THRESHOLD,
        shapes: DigitShapes | None = None,
        find_pages: bool = True,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        if not max_pixels > 0:
            raise ConfigError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
        temperature = float(backend.meta.get("temperature", 1.0))
        if not temperature > 0:
            raise ModelFileError(f"{source} stores a temperature of {temperature}; it must be positive")
        self._backend = backend
        self.source = source
        self.threshold = threshold
        self.temperature = temperature
        self.shapes = shapes
        self.find_pages = find_pages
        self.max_pixels = max_pixels

    def __repr__(self) -> str:
        meta = self._backend.meta
        return (
            f"Recognizer(model={meta.get('model')!r}, backend={self.backend!r}, file={str(self.source)!r}, "
            f"threshold={self.threshold}, shape_check={self.shapes is not None})"
        )

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        threshold: float = DEFAULT_THRESHOLD,
        shape_check: bool = True,
        find_pages: bool = True,
        threads: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> Recognizer:
        """Load a model: None for the one shipped in the package, or a run directory, a
        ``.safetensors`` or an ``.onnx`` file.

        backend: "onnx" (onnxruntime, an .onnx file), "torch" (a .safetensors file or run
        directory), or "auto": onnxruntime when there is an ONNX file for the model, else torch.
        threshold: calibrated confidence below which a digit is marked uncertain.
        shape_check: also mark uncertain what does not look like a handwritten digit.
        find_pages: also read inside a page found on a darker surround (a sheet on a desk, a scanner's edge).
        threads: CPU threads for inference (default: the runtime's choice).
        max_pixels: the largest picture read (width x height); a bigger one is an ImageError.
        """
        kind, path = find_model(model, backend)
        runner = open_backend(kind, path, threads)
        shapes = None
        if shape_check:
            if not SHIPPED_SHAPES.is_file():
                raise ModelFileError(
                    f"the digit shape model {SHIPPED_SHAPES} is missing from the installation; reinstall digits "
                    "(or load with shape_check=False, and letters and scribbles will pass for digits)"
                )
            shapes = DigitShapes.load(SHIPPED_SHAPES)  # ModelFileError when it is not one
        return cls(
            runner, source=path, threshold=threshold, shapes=shapes, find_pages=find_pages, max_pixels=max_pixels
        )

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

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of what the model file records of itself: name, options, accuracy, temperature, the
        checksums of the data it was trained on (``data_sha256``)."""
        return dict(self._backend.meta)

    # -- the model on 28x28 digits --------------------------------------------------------------

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) float32 raw logits of (N, 28, 28) uint8 MNIST-style digits."""
        if len(images) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        logits = self._backend.logits(to_model_input(images))
        if logits.shape != (len(images), NUM_CLASSES):
            raise ModelFileError(
                f"{self.source} gives scores of shape {logits.shape[1:]} a picture, not one for each of the "
                f"{NUM_CLASSES} digits: it is not a digits model"
            )
        return logits

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
        if not np.isfinite(probs).all():
            raise ModelFileError(
                f"{self.source}: the model's outputs are not finite numbers (NaN or infinity): its weights are "
                "broken; train it again, or use another model"
            )
        digits = probs.argmax(axis=1)
        unlike = (
            self.shapes.score(images, digits) > _SHAPE_LIMIT if self.shapes is not None else np.zeros(len(images), bool)
        )
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

    def prepare(self, img: ImageSource, *, numbers: bool = False, trace: Trace | None = None) -> Prepared:
        """The digits found in a picture (:func:`digits.reading.pipeline.prepare`), settled by reading them.

        When the picture's polarity cues disagree (ink filling the frame, a thick stretched digit), the
        picture is segmented both ways and the way whose digits this model trusts more is kept: a
        wrong polarity finds the background's pieces, which read as doubtful blobs. With ``numbers``
        (what :meth:`read` does), a shape that may be two narrow digits touching is cut in two when the
        model trusts both halves more than the whole; :meth:`predict`, told there is one digit, never
        cuts. ``trace`` records the vote, every way's scores, the choice and the pairs cut.
        """
        trace = {} if trace is None else trace
        first = prepare(img, halves=numbers, marks=numbers, max_pixels=self.max_pixels, trace=trace)
        prepared = self._settle(first, numbers, trace)
        return self._cut_narrow_pairs(prepared, trace) if numbers else prepared

    def _cut_narrow_pairs(self, prepared: Prepared, trace: Trace) -> Prepared:
        """Each glyph offered cuts in two (:meth:`Glyph.cuts`: wider than 0.8 of its height) becomes the two
        halves of its best cut when both are digits (neither marked uncertain) and the less trusted half's chance
        of being wrong is under _CUT_ODDS of the whole's; the best cut is the one whose less trusted half is
        trusted most. "17" or "50" touching are as narrow as some single digits, and only the model can tell
        them apart. Chances of being wrong, not confidences, are compared: a "31" read whole as a 3 with 0.99
        and cut into a 3 and a 1 each read with 0.9995 is a pair, which no margin on the confidence itself
        could tell (at 0.99 the whole leaves no room above it). Chosen on the dev halves of
        benchmarks/reading_sets.py, read as numbers, against the margin rule it replaced (cut when both halves
        beat the whole's confidence by 0.05): touching pairs 91.8% -> 93.5% exact, and every set of single
        digits read as a number as well or better (odds of 0.02-0.2 were tried; benchmarks/README.md).
        One model call for the wholes, one for the candidates of those that could be beaten.
        """
        offered = [g for g in prepared.glyphs if g.cutter is not None]
        wholes = self.classify(np.stack([g.image for g in offered])) if offered else []
        # Chances of being wrong that a pair must beat, for the wholes that are not certain.
        to_beat = {
            id(g): _CUT_ODDS * (1.0 - w.confidence) for g, w in zip(offered, wholes) if w.confidence < _CUT_CERTAIN
        }
        candidates = {id(g): g.cuts() for g in offered if id(g) in to_beat}
        images = [h.image for pairs in candidates.values() for pair in pairs for h in pair]
        found = iter(self.classify(np.stack(images)) if images else [])
        glyphs: list[Glyph] = []
        cut = 0
        for g in prepared.glyphs:
            best, best_score = None, 0.0
            for pair in candidates.get(id(g), ()):
                left, right = next(found), next(found)
                score = min(left.confidence, right.confidence)
                if not (left.uncertain or right.uncertain) and score > best_score:
                    best, best_score = pair, score
            if best is None or 1.0 - best_score >= to_beat[id(g)]:
                glyphs.append(g)
            else:
                glyphs.extend(best)
                cut += 1
        trace["narrow_pairs_cut"] = cut
        glyphs, recut = self._recut(glyphs)
        trace["pairs_recut"] = recut
        return dataclasses.replace(prepared, glyphs=tuple(glyphs))

    def _recut(self, glyphs: list[Glyph]) -> tuple[list[Glyph], int]:
        """Each shape a rule cut in two (a glyph with :attr:`Glyph.recutter` and the next) becomes the pair of
        its cuts whose less trusted half is trusted most, both halves undoubted first (overlapping digits:
        the thinnest column may be inside one of them). One model call for every candidate."""
        offered = [i for i, g in enumerate(glyphs[:-1]) if g.recutter is not None]
        if not offered:
            return glyphs, 0
        options = {i: [(glyphs[i], glyphs[i + 1]), *glyphs[i].recutter()] for i in offered}  # type: ignore[misc]
        found = iter(self.classify(np.stack([h.image for pairs in options.values() for p in pairs for h in p])))
        out: list[Glyph] = []
        recut, skip = 0, False
        for i, g in enumerate(glyphs):
            if skip:
                skip = False
                continue
            if i not in options:
                out.append(g)
                continue
            scored = []
            for pair in options[i]:
                left, right = next(found), next(found)
                undoubted = not (left.uncertain or right.uncertain)
                scored.append((undoubted, min(left.confidence, right.confidence), pair))
            best = max(range(len(scored)), key=lambda k: scored[k][:2])  # ties: the rule's own cut
            out.extend(scored[best][2])
            recut += best > 0
            skip = True
        return out, recut

    def _settle(self, prepared: Prepared, numbers: bool, trace: Trace) -> Prepared:
        """``prepared``, or the picture segmented another way when a rule could not decide and that way reads
        better. Three decisions are left to reading:

        * the polarity, when its three cues disagreed: a wrong polarity finds the background's pieces;
        * the lighting, when its estimate bends away from a plane by more than half the ink threshold. The
          estimate (a morphological opening, or closing for dark ink, wider than a stroke) tells light from
          ink by size, which an upsampled low-resolution scan defeats, its blurred strokes meeting in blots
          wider than the kernel: the ink is taken for light, and the digit comes back in pieces. So the
          picture is also read with the light as a plane fitted to its background; on a photo with real
          shading, that way finds blotches, which read as doubtful;
        * the page, when :func:`digits.reading.page.find_page` finds one (a sheet on a desk, a scan with the
          scanner's bed showing, a turned page with dark corners): the page straightened, its surround
          painted paper, is read too, its digits' boxes mapped back to the picture. A light digit on
          black can pass for a page, so whether it is one is for reading to say.

        Each way's digits are read, and the way whose digits the model trusts more is kept (ties: the
        rules' own); when a page was found and read, a way that found digits beyond it is out. ``trace``
        gets every way's trust (``settled_by_reading``), the one kept (``settled``), and when a page was
        found its corners (``page``) and the ways that read beyond it (``read_beyond_the_page``).
        """
        if "polarity" not in trace:
            return prepared
        voted_dark = trace["polarity"].startswith("dark")
        darks = [voted_dark] if trace.get("polarity_agreed", True) else [voted_dark, not voted_dark]
        doubted = trace.get("lighting_bend", 0.0) > _DOUBTED_LIGHTING * trace.get("threshold", 0.0)
        ways = [(dark, plane) for plane in ((False, True) if doubted else (False,)) for dark in darks]
        page = find_page(prepared.gray) if self.find_pages else None
        if len(ways) == 1 and page is None:
            return prepared
        tried: list[tuple[str, float, Prepared, Trace]] = []
        for dark, plane in ways:
            name = f"{'dark' if dark else 'light'} ink, {'planar' if plane else 'estimated'} lighting"
            if (dark, plane) == ways[0]:  # what the rules chose: already segmented
                tried.append((name, self._trust(prepared.glyphs), prepared, trace))
                continue
            way: Trace = {}
            glyphs = tuple(
                segment(prepared.gray, dark=dark, plane_light=plane, halves=numbers, marks=numbers, trace=way)
            )
            tried.append((name, self._trust(glyphs), dataclasses.replace(prepared, glyphs=glyphs), way))
        if page is not None:
            trace["page"] = page.corners.round(1).tolist()
            way = {}
            found = segment(page.gray, dark=True, halves=numbers, marks=numbers, trace=way)
            glyphs = tuple(_on_picture(g, page) for g in found)
            tried.append((_PAGE, self._trust(glyphs), dataclasses.replace(prepared, glyphs=glyphs), way))
        eligible = tried
        if page is not None and tried[-1][2].glyphs:
            # A scanner's edge, a turned page's filled corners, a desk: what lies beyond the page is never
            # ink, however confidently it reads (an edge reads as a 1), so a way that read any is out.
            eligible = [t for t in tried if t[0] == _PAGE or all(page.holds(g.box) for g in t[2].glyphs)]
            trace["read_beyond_the_page"] = [t[0] for t in tried if t not in eligible]
        name, _, chosen, chosen_trace = max(eligible, key=lambda t: t[1])  # max keeps the first of equals
        if chosen_trace is not trace:
            trace.update({k: v for k, v in chosen_trace.items() if k not in ("polarity_votes", "polarity_agreed")})
        if len(darks) > 1:
            trace["polarity_from"] = "the cues disagreed: read both ways, kept the one whose digits are trusted more"
        trace["settled_by_reading"] = {n: round(score, 4) for n, score, _, _ in tried}
        trace["settled"] = name
        return chosen

    def _trust(self, glyphs: Sequence[Glyph]) -> float:
        """How much this model trusts the digits of one segmentation: their mean calibrated confidence
        (0 for none). Chosen on the dev halves of benchmarks/reading_sets.py' MNIST pipelines, among the
        confidence, the shape score, both, and fewer pieces: of the pictures whose cues disagreed, it
        settled 81-98% the right way, against 58-80% for the vote."""
        digits = [g.image for g in glyphs if g.symbol is None]
        if not digits:
            return 0.0
        return float(self.probabilities(np.stack(digits)).max(axis=1).mean())

    def predict(self, img: ImageSource) -> Prediction:
        """The one digit in a picture (a picture of several gives the biggest, marked uncertain)."""
        return self._predict_prepared([self.prepare(img).glyphs])[0]

    def read(self, img: ImageSource) -> Reading:
        """All the digits in a picture, in reading order, and the text they make."""
        return self._read_prepared([self.prepare(img, numbers=True).glyphs])[0]

    def predict_batch(self, sources: Sequence[ImageSource]) -> list[FileResult]:
        """:meth:`predict` for many pictures; a picture that cannot be read gives an error, not an exception."""
        return self._batch(sources, self._predict_prepared, numbers=False)

    def read_batch(self, sources: Sequence[ImageSource]) -> list[FileResult]:
        """:meth:`read` for many pictures; a picture that cannot be read gives an error, not an exception."""
        return self._batch(sources, self._read_prepared, numbers=True)

    def _batch(self, sources: Sequence[ImageSource], run: Any, *, numbers: bool) -> list[FileResult]:
        """Prepare every picture, run ``run`` once on the readable ones, and put errors back in place."""
        names, prepared, errors = self._prepare_all(sources, numbers)
        results = iter(run([p.glyphs for p in prepared if p is not None]))
        return [
            FileResult(name, next(results), notes=p.notes) if p is not None else FileResult(name, None, err)
            for name, p, err in zip(names, prepared, errors)
        ]

    def _prepare_all(
        self, sources: Sequence[ImageSource], numbers: bool
    ) -> tuple[list[str], list[Prepared | None], list[str | None]]:
        names: list[str] = []
        prepared: list[Prepared | None] = []
        errors: list[str | None] = []
        for i, src in enumerate(sources):
            names.append(str(src) if isinstance(src, (str, os.PathLike)) else f"#{i}")
            try:
                prepared.append(self.prepare(src, numbers=numbers))
                errors.append(None)
            except (ImageError, OSError) as e:  # OSError: a file that exists but cannot be opened
                prepared.append(None)
                errors.append(str(e))
        return names, prepared, errors

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
        every = [g for glyphs in pictures for g in glyphs if g.symbol is None]
        answers = iter(self.classify(np.stack([g.image for g in every]) if every else _EMPTY))
        out = []
        for glyphs in pictures:
            read = tuple(_place(next(answers), g, None) if g.symbol is None else _mark(g) for g in glyphs)
            shapes = [d for d in read if d.symbol is None]
            if len(shapes) >= _TEXTURE_SHAPES and sum(d.uncertain for d in shapes) > len(shapes) / 2:
                # Most shapes are doubtful: this is texture or noise (pepper, grain), not writing, and
                # the few that look like digits do so by chance (and its specks are no decimal points).
                read = tuple(_place(d, g, d.reason or TEXTURE) for d, g in zip(read, glyphs) if g.symbol is None)
            out.append(Reading.of(read))
        return out


_EMPTY = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def _on_picture(g: Glyph, page: Page) -> Glyph:
    """A glyph found on a straightened page, its box (and its cuts' boxes) in the picture's pixels."""

    def mapped(cutter: Callable[[], tuple[tuple[Glyph, Glyph], ...]] | None) -> Any:
        if cutter is None:
            return None
        return lambda: tuple((_on_picture(a, page), _on_picture(b, page)) for a, b in cutter())

    return dataclasses.replace(g, box=page.box_in_picture(g.box), cutter=mapped(g.cutter), recutter=mapped(g.recutter))


def _mark(g: Glyph) -> Prediction:
    """A decimal point or minus sign: found by its size and place in the line, not read by the model."""
    return Prediction(
        digit=None,
        confidence=1.0,
        probabilities=np.zeros(NUM_CLASSES, np.float32),
        uncertain=False,
        box=g.box,
        line=g.line,
        symbol=g.symbol,
    )


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
