"""MNIST's training digits as other capture pipelines would give them, read back by digits' own reader.

A model that has only seen MNIST's framing reads other scanners badly: a digit stretched to fill its
square, a low-resolution scan shown as an upsampled blur, a marker or a hairline, light ink on dark.
Augmenting the 28x28 images cannot show it what it will actually be given, because what it is given is
what :func:`digits.reading.pipeline.prepare` makes of such a picture (thresholded, cropped, refitted into
20x20, centred). So each training digit is drawn through a random capture pipeline (:func:`render`) into
a picture, and that picture is read back through ``prepare``; the 28x28 glyph it gives is the training
image. Pictures that do not come back as exactly one glyph are left out.

Every choice in :func:`render` is drawn at random from ranges wider than any one reading set
(benchmarks/reading_sets.py: optdigits' 8x8, MNIST at 8x8 and 16x16, ink at the frame), so the model
learns the family, not one pipeline. Copies are made once per (training digits, copies, seed, code) and
cached: about 1.8 ms a digit on one core, 54,000 digits in ~50 s on two.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import platformdirs

from digits.files import write_bytes
from digits.spec import IMAGE_SIZE, PIXEL_SCALE

__all__ = ["captured_digits", "render"]

# How the picture is drawn; each row is (probability it applies, range), ranges uniform.
STROKE = (0.5, (-3, 5))  # morphology radius at 4x MNIST's scale: -3 thins a stroke by ~1.5 px, +5 thickens ~2.5
FILL = (0.6, (0.0, 1.0))  # fraction of the way from the digit's aspect ratio to a filled square
MARGIN = (0.7, (0.0, 0.35))  # background around the ink, as a fraction of its size (0: the ink touches the frame)
LOW_RES = (0.7, (6, 20))  # side of the scan the digit is taken from (optdigits: 8), else 20-39
LEVELS = (0.3, (8, 32))  # of a low-resolution scan: grey levels kept (optdigits: 17)
SHOWN = (28, 96)  # side of the picture the scan is shown at
BLUR = (0.3, (0.5, 2.0))  # gaussian sigma in pixels of the picture
GAMMA = (0.6, 1.6)
CONTRAST = ((0.0, 0.35), (0.65, 1.0))  # background and ink levels, before polarity
DARK_INK = 0.5
NOISE = (0.0, 0.04)  # standard deviation of the pixel noise

_CHUNK = 1_000  # digits per task of the process pool


def render(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random capture pipeline's picture of one light-on-dark digit (uint8, any size): uint8, square."""
    a = _box(ink.astype(np.float32) / np.float32(PIXEL_SCALE))
    if a is None:
        raise ValueError("render needs a digit with some ink")
    a = cv2.resize(a, (a.shape[1] * 4, a.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    if rng.random() < STROKE[0]:
        r = int(rng.integers(STROKE[1][0], STROKE[1][1] + 1))
        if r:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
            padded = cv2.copyMakeBorder(a, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)
            changed = cv2.dilate(padded, kernel) if r > 0 else cv2.erode(padded, kernel)
            a = _box(changed) if changed.max() > 0.3 else a  # a hairline thinned to nothing stays as it was
            assert a is not None
    h, w = a.shape
    side = max(h, w)
    t = rng.uniform(*FILL[1]) if rng.random() < FILL[0] else 0.0
    nh, nw = round(h + t * (side - h)), round(w + t * (side - w))
    a = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA)
    pad = round(side * (rng.uniform(*MARGIN[1]) if rng.random() < MARGIN[0] else 0.0))
    square = max(nh, nw) + 2 * pad
    canvas = np.zeros((square, square), np.float32)
    y0, x0 = (square - nh) // 2, (square - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = a

    low = rng.random() < LOW_RES[0]
    s = int(rng.integers(LOW_RES[1][0], LOW_RES[1][1] + 1)) if low else int(rng.integers(20, 40))
    scan = cv2.resize(canvas, (s, s), interpolation=cv2.INTER_AREA)
    if low and rng.random() < LEVELS[0]:
        levels = int(rng.integers(LEVELS[1][0], LEVELS[1][1] + 1))
        scan = np.round(scan * levels) / np.float32(levels)
    shown = int(rng.integers(SHOWN[0], SHOWN[1] + 1))
    interpolation = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    picture = np.clip(cv2.resize(scan, (shown, shown), interpolation=interpolation), 0.0, 1.0)
    if rng.random() < BLUR[0]:
        picture = cv2.GaussianBlur(picture, (0, 0), rng.uniform(*BLUR[1]))
    picture = picture ** np.float32(rng.uniform(*GAMMA))
    background, pen = rng.uniform(*CONTRAST[0]), rng.uniform(*CONTRAST[1])
    picture = background + (pen - background) * picture
    if rng.random() < DARK_INK:
        picture = 1.0 - picture
    picture = picture + rng.normal(0.0, rng.uniform(*NOISE), picture.shape)
    return np.clip(picture * PIXEL_SCALE + 0.5, 0, 255).astype(np.uint8)


def _box(a: np.ndarray) -> np.ndarray | None:
    """The part of ``a`` inside the box of its ink (None for no ink)."""
    x, y, w, h = cv2.boundingRect((a > 0).astype(np.uint8))
    return a[y : y + h, x : x + w] if w and h else None


def _read_back(task: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render each digit of a chunk and read it back; (glyphs, kept) with kept False where not one glyph came back."""
    from digits.reading.pipeline import prepare

    images, seed = task
    rng = np.random.default_rng(seed)
    glyphs = np.zeros((len(images), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    kept = np.zeros(len(images), bool)
    for i, ink in enumerate(images):
        found = prepare(render(ink, rng)).glyphs
        if len(found) == 1:
            glyphs[i], kept[i] = found[0].image, True
    return glyphs, kept


def code_version() -> str:
    """A hash of the code that makes the copies: this module and the reading pipeline it reads them with."""
    from digits.reading import load, normalize, pipeline, segment

    source = "".join(inspect.getsource(m) for m in (load, normalize, pipeline, segment))
    return hashlib.sha256((inspect.getsource(render) + source).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("digits")) / "captures"


def captured_digits(
    images: np.ndarray,
    labels: np.ndarray,
    copies: int,
    *,
    seed: int = 0,
    workers: int = 0,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` captured copies of each (28, 28) uint8 digit: (M, 28, 28) uint8 glyphs and their labels.

    Deterministic in (images, copies, seed); cached under the user cache (``cache_dir``) by a key made of
    those and :func:`code_version`. ``workers`` processes render (0: one per CPU core).
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels)
    key = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    path = (cache_dir or default_cache_dir()) / f"{key}-{copies}x-seed{seed}-{code_version()}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["images"], cached["labels"]
    tasks = [
        (images[start : start + _CHUNK], seed * 1_000_003 + copy * 10_007 + start // _CHUNK)
        for copy in range(copies)
        for start in range(0, len(images), _CHUNK)
    ]
    log(f"drawing {copies} captured copies of {len(images):,} training images (cached in {path.parent})")
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        results = [_read_back(t) for t in tasks]
    else:
        # Spawned, not forked: a fork of a process whose torch or OpenCV threads are running can hang.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_read_back, tasks))
    glyphs = np.concatenate([g[k] for g, k in results])
    kept = np.concatenate([k for _, k in results])
    out_labels = np.tile(labels, copies)[kept]
    log(f"kept {len(glyphs):,} of {len(kept):,} copies (the others did not read back as one shape)")
    buffer = io.BytesIO()
    np.savez(buffer, images=glyphs, labels=out_labels)
    write_bytes(path, buffer.getvalue())
    return glyphs, out_labels
