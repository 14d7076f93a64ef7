"""Capture pipelines other than MNIST's: the same digit as another scanner, resolution or framing gives it.

MNIST's own pipeline fitted each digit into a 20x20 box, kept its aspect ratio and left a 4-pixel margin.
Other sources do not: NIST's form reader (and scikit-learn's 8x8 digits) stretch the digit to fill its
square, low-resolution scans are upsampled into a blur, a crop may cut through the ink's margin. Each
function takes light-on-dark ink (uint8, any size) and returns a picture as such a pipeline would.

Only numpy and OpenCV, and nothing here depends on the code under test.
"""

from __future__ import annotations

import cv2
import numpy as np


def ink_box(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box, cut out (no margin left: the ink touches all four edges)."""
    x, y, w, h = cv2.boundingRect((ink > 0).astype(np.uint8))
    return ink[y : y + h, x : x + w]


def fill_square(ink: np.ndarray, side: int) -> np.ndarray:
    """The ink stretched to fill a ``side`` x ``side`` square, its aspect ratio lost (NIST's normalisation)."""
    return cv2.resize(ink_box(ink).astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).astype(np.uint8)


def low_resolution(ink: np.ndarray, source: int, shown: int = 64, *, fill: bool = True) -> np.ndarray:
    """A digit scanned at ``source`` x ``source`` pixels and shown at ``shown`` x ``shown``: an upsampled blur.

    With ``fill``, the digit fills the square first (aspect stretched); otherwise it keeps its framing.
    """
    square = fill_square(ink, 4 * source) if fill else ink
    small = cv2.resize(square.astype(np.float32), (source, source), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (shown, shown), interpolation=cv2.INTER_LINEAR)
    return np.clip(big, 0, 255).round().astype(np.uint8)


def enlarge(ink: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear enlargement by an integer ``factor`` (a small digit shown large)."""
    h, w = ink.shape
    big = cv2.resize(ink.astype(np.float32), (w * factor, h * factor), interpolation=cv2.INTER_LINEAR)
    return np.clip(big, 0, 255).round().astype(np.uint8)


def dark_on_light(ink: np.ndarray, paper: int = 235, pen: int = 30) -> np.ndarray:
    """Light-on-dark ink as dark ink on light paper (the picture's gray levels run from ``pen`` to ``paper``)."""
    a = ink.astype(np.float32) / 255.0
    return np.clip(paper + (pen - paper) * a, 0, 255).round().astype(np.uint8)


def touching(left: np.ndarray, right: np.ndarray, overlap: int) -> np.ndarray:
    """Two digits' ink side by side, cropped to their boxes, the right one pushed ``overlap`` pixels into the
    left one (0: just touching; more: their strokes cross). Heights are matched to the taller; the result
    is light-on-dark ink with a margin of a quarter of its height."""
    a, b = ink_box(left), ink_box(right)
    h = max(a.shape[0], b.shape[0])
    a = cv2.resize(a, (max(1, round(a.shape[1] * h / a.shape[0])), h), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(b, (max(1, round(b.shape[1] * h / b.shape[0])), h), interpolation=cv2.INTER_LINEAR)
    m = h // 4
    width = a.shape[1] + b.shape[1] - overlap
    out = np.zeros((h + 2 * m, width + 2 * m), np.uint8)
    out[m : m + h, m : m + a.shape[1]] = a
    x = m + a.shape[1] - overlap
    out[m : m + h, x : x + b.shape[1]] = np.maximum(out[m : m + h, x : x + b.shape[1]], b)
    return out


def slanted_writer(
    ink: np.ndarray, rng: np.random.Generator, *, slant: float = 45.0, thickness: int = 10, narrow: float = 0.8
) -> np.ndarray:
    """One writer's hand that MNIST does not cover: the digit leaning ``slant`` degrees (give or take 3), strokes
    ``thickness`` pixels thicker at 4x MNIST's scale (a broad pen), squeezed to ``narrow`` of its width; drawn
    dark on light paper, 232x232 pixels. ``ink``: a light-on-dark 28x28 digit."""
    a = cv2.resize(ink.astype(np.float32), (112, 112), interpolation=cv2.INTER_LINEAR)
    if thickness > 0:
        a = cv2.dilate(a, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * thickness + 1, 2 * thickness + 1)))
    a = cv2.copyMakeBorder(a, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=0)  # room to lean
    h, w = a.shape
    shear = np.tan(np.radians(slant + rng.uniform(-3.0, 3.0)))
    warp = np.array([[narrow, -shear, shear * h / 2 + (1 - narrow) * w / 2], [0, 1, 0]], np.float32)
    a = cv2.warpAffine(a, warp, (w, h), flags=cv2.INTER_LINEAR)
    return dark_on_light(np.clip(a, 0, 255).astype(np.uint8))
