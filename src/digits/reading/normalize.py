"""MNIST's own normalisation of a digit: fitted into 20x20, centred by mass in 28x28.

LeCun, Cortes and Burges, "The MNIST database": the bilevel NIST digits "were size normalized to fit
in a 20x20 pixel box while preserving their aspect ratio", which left grey levels from anti-aliasing,
and were "centered in a 28x28 image by computing the center of mass of the pixels".
"""

from __future__ import annotations

import cv2
import numpy as np

from digits.errors import ImageError
from digits.spec import IMAGE_SIZE, PIXEL_SCALE

BOX = 20  # side of the box the ink is fitted into
# Where the centre of mass goes, in pixel-index coordinates (row, col): MNIST's test digits average
# (13.99, 14.00).
_CENTRE = IMAGE_SIZE / 2
# Ink fainter than this fraction of the brightest does not count towards the box: interpolation or
# JPEG ringing, a smudge. (MNIST's own faint edge pixels, inside the box, are kept.)
_HAZE = 0.05


def to_mnist(ink: np.ndarray, *, stroke: float | None = None) -> np.ndarray:
    """Normalise light-on-dark ink the way MNIST was made; returns (28, 28) uint8.

    ``ink`` is a 2-D array of light ink on a black background, uint8 or float in [0, 1]: an MNIST
    image, a canvas, or a crop from :func:`digits.reading.pipeline.segment`. Pictures of paper (dark ink,
    uneven light) go through :func:`digits.reading.pipeline.prepare` instead. The ink's bounding box is
    fitted into 20x20 keeping the aspect ratio (area averaging when shrinking), the typical stroke
    brightness is stretched to 255, and the result is pasted into 28x28 with its centre of mass at
    the centre. With ``stroke`` set, strokes are first thickened or thinned towards that width in
    pixels at the 20-pixel scale: by :func:`stroke_width`, MNIST's test digits have a median of 2.7,
    half of them between 2.3 and 3.1. All-black input gives all-black output.
    """
    if ink.ndim != 2 or ink.size == 0:
        raise ImageError(f"to_mnist expects a non-empty 2-D image, got shape {ink.shape}", "unsupported")
    if ink.dtype == np.uint8:
        a = ink.astype(np.float32) / np.float32(PIXEL_SCALE)
    elif np.issubdtype(ink.dtype, np.floating) or ink.dtype == np.bool_:
        a = np.clip(ink.astype(np.float32), 0.0, 1.0)
    else:
        raise ImageError(f"to_mnist expects uint8 or float in [0, 1], got {ink.dtype}", "unsupported")
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    cropped = _crop_to_ink(a)
    if cropped is not None and stroke is not None:
        cropped = _crop_to_ink(_set_stroke(cropped, stroke * max(cropped.shape) / BOX))
    if cropped is None:
        return out

    h, w = cropped.shape
    f = BOX / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    # Area averaging when shrinking gives MNIST's anti-aliased edges; INTER_AREA would copy pixels
    # when enlarging, so a small crop is interpolated instead.
    small = cv2.resize(cropped, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)

    # MNIST's strokes come from bilevel scans, so their cores are saturated. Stretch the median of
    # the stroke cores (pixels above half the peak) to full brightness, rather than the brightest
    # pixel, which a single speck or glint would decide.
    core = small[small > 0.5 * float(small.max())]
    small = np.clip(small / np.float32(np.median(core)), 0.0, 1.0)

    # Whole-pixel translation, so the ink stays inside the 28x28 field when its mass is lopsided.
    # (cv2.moments would take an (N, 1) array for a list of points, so numpy does the sums.)
    sh, sw = small.shape
    mass = float(small.sum())
    cx = float(small.sum(axis=0) @ np.arange(sw, dtype=np.float32)) / mass
    cy = float(small.sum(axis=1) @ np.arange(sh, dtype=np.float32)) / mass
    ox = min(max(round(_CENTRE - cx), 0), IMAGE_SIZE - sw)
    oy = min(max(round(_CENTRE - cy), 0), IMAGE_SIZE - sh)
    out[oy : oy + sh, ox : ox + sw] = (small * np.float32(PIXEL_SCALE) + np.float32(0.5)).astype(np.uint8)
    return out


def _crop_to_ink(a: np.ndarray) -> np.ndarray | None:
    """The box of the ink, None for none."""
    peak = float(a.max())
    if peak <= 0:
        return None
    rows = np.flatnonzero(a.max(axis=1) > _HAZE * peak)
    band = a[rows[0] : rows[-1] + 1]
    cols = np.flatnonzero(band.max(axis=0) > _HAZE * peak)
    return band[:, cols[0] : cols[-1] + 1]


def stroke_width(ink: np.ndarray) -> float:
    """Typical stroke width in pixels of light-on-dark ink (uint8 or float); 0.0 when there is none.

    A stroke of width w and length L covers w*L pixels and has about 2*L of them on its boundary,
    so the width is twice the area over the boundary: the mean of a distance transform, without it.
    """
    a = ink.astype(np.float32)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        return 0.0
    binary = cv2.copyMakeBorder((a > 0.5 * peak).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    area = int(np.count_nonzero(binary))
    inner = int(np.count_nonzero(cv2.erode(binary, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))))
    return 2.0 * area / max(1, area - inner)


def _set_stroke(a: np.ndarray, target: float) -> np.ndarray:
    """Thicken or thin ink so its strokes are about ``target`` pixels wide.

    The ink is made bilevel first (at half its peak), like the NIST scans MNIST was made from: gray
    morphology would leave the gray blur between two thick strokes as a gray blot. The area
    averaging of the resize to 20x20 then anti-aliases it again.
    """
    width = stroke_width(a)
    binary = (a > 0.5 * float(a.max())).astype(np.float32)
    radius = round((target - width) / 2)
    if radius < 0:
        radius = -min(-radius, round((width - 1) / 2))  # thin, but never to nothing
    if radius == 0:
        return binary
    r = abs(radius)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    if radius > 0:
        return cv2.dilate(cv2.copyMakeBorder(binary, r, r, r, r, cv2.BORDER_CONSTANT, value=0), kernel)
    return cv2.erode(binary, kernel)
