"""Make a user's picture look like MNIST: the one preprocessing path for every way of reading digits.

The CLI, the Python API, the HTTP API and the web page all call :func:`prepare` (or the steps it is
made of), so a digit is normalised the same way wherever it comes from:

1. ``load.load_image`` decodes a path, bytes, a PIL image or an array into grayscale float32 in [0, 1],
   applying EXIF orientation and putting transparency on a background that contrasts with the ink.
2. ``segment.segment`` finds the ink whatever its polarity (dark on paper, light on a dark background),
   divides out unplanar lighting, thresholds above the noise, groups connected components into digits
   (joining broken strokes, cutting touching digits apart, dropping specks) and orders them line by
   line, left to right. A blank picture gives no digits, never a guess.
3. ``normalize.to_mnist`` turns each digit into what the model saw in training: light ink on black,
   fitted into 20x20 with its aspect ratio kept, centred by mass in 28x28, as MNIST itself was made.
4. :func:`digits.spec.to_model_input` is the single conversion from those bytes to the model's input.

Only numpy, Pillow and OpenCV are used: reading digits needs no torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from digits.files import write_json
from digits.reading.load import ImageSource, load_image
from digits.reading.segment import Glyph, Trace, segment
from digits.spec import IMAGE_SIZE, MAX_PIXELS

__all__ = ["Prepared", "prepare", "save_debug"]


@dataclass(frozen=True, eq=False)
class Prepared:
    """A loaded picture and the digits found in it, in reading order."""

    gray: np.ndarray  # (H, W) float32 in [0, 1], as loaded, either polarity
    glyphs: tuple[Glyph, ...]
    notes: tuple[str, ...] = ()  # what a user should know about how the picture was read (only its first frame)

    @property
    def is_blank(self) -> bool:
        """True when no ink was found: there is nothing to read, so nothing should be guessed."""
        return not self.glyphs

    @property
    def images(self) -> np.ndarray:
        """(N, 28, 28) uint8: the glyph images, ready for :func:`digits.spec.to_model_input`."""
        if not self.glyphs:
            return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return np.stack([g.image for g in self.glyphs])


def prepare(
    src: ImageSource,
    *,
    stroke: float | None = None,
    dark: bool | None = None,
    halves: bool = False,
    marks: bool = False,
    max_pixels: int = MAX_PIXELS,
    trace: Trace | None = None,
) -> Prepared:
    """Load a picture and find its digits: the whole preprocessing path in one call.

    ``stroke``, ``dark`` (the ink's polarity; None: decided from the picture), ``halves`` and ``marks`` are
    passed on to :func:`~digits.reading.segment.segment`; ``trace``, a dict, receives every decision it took.

    Raises :class:`digits.errors.ImageError` when ``src`` is not a readable image (see :func:`load_image`).
    """
    notes: list[str] = []
    gray = load_image(src, max_pixels=max_pixels, notes=notes)
    glyphs = segment(gray, stroke=stroke, dark=dark, halves=halves, marks=marks, trace=trace)
    return Prepared(gray=gray, glyphs=tuple(glyphs), notes=tuple(notes))


def save_debug(
    glyphs: Sequence[Glyph],
    directory: str | os.PathLike[str],
    *,
    gray: np.ndarray | None = None,
    trace: Trace | None = None,
) -> list[Path]:
    """Write what the model sees as PNGs, so that a wrong reading can be traced to its input.

    Writes glyph_<index>_line<line>.png for every glyph (its 28x28 image, enlarged 4 times with
    nearest neighbour so the pixels stay visible); when the loaded picture ``gray`` is given,
    boxes.png with every glyph's box and index drawn on it (and the page found, if the trace has one);
    when a ``trace`` of :func:`prepare` is given, decisions.json: the polarity and the cues that voted on
    it, lighting, noise, threshold and the shapes kept. Returns the paths written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if trace is not None:
        paths.append(write_json(out / "decisions.json", trace))
    for i, g in enumerate(glyphs):
        path = out / f"glyph_{i:02d}_line{g.line}.png"
        Image.fromarray(np.kron(g.image, np.ones((4, 4), np.uint8))).save(path)
        paths.append(path)
    if gray is not None:
        canvas = cv2.cvtColor(np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
        thickness = max(1, min(gray.shape) // 300)
        if trace is not None and "page" in trace:  # the page found, in green
            corners = np.round(np.asarray(trace["page"], np.float32)).astype(np.int32)
            cv2.polylines(canvas, [corners.reshape(-1, 1, 2)], True, (0, 200, 0), thickness)
        for i, g in enumerate(glyphs):
            x, y, w, h = g.box
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (255, 0, 0), thickness)
            cv2.putText(canvas, str(i), (x, max(10, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (255, 0, 0))
        path = out / "boxes.png"
        Image.fromarray(canvas).save(path)
        paths.append(path)
    return paths
