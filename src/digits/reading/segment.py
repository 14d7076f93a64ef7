"""Find the digits in a grayscale picture, in reading order, each normalised like MNIST.

The work is done at two resolutions. Finding the ink (polarity, lighting, threshold, connected
components) runs on a copy of at most a quarter megapixel, where it costs a few milliseconds whatever
the size of the photo. Each digit's pixels are then taken from the full-resolution picture, so a
digit that is small in a big photo keeps all the detail it has.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digits.errors import ImageError
from digits.reading.normalize import BOX, to_mnist
from digits.spec import IMAGE_SIZE

# Ink is found on at most this many pixels (512x512); bigger pictures are area-averaged down by an
# integer factor, which also averages away sensor noise.
_MASK_PIXELS = 512 * 512
# Lighting is estimated on an image about this many pixels on its short side.
_COARSE_SIDE = 64
# A digit's pixels are taken at up to this many on its long side: area averaging from 4 times the
# 20-pixel box gives the same digit as from any more, and costs far less.
_GLYPH_SIDE = 4 * BOX
# Ink is at least this much darker than the paper (relative) or brighter than its background, or the
# picture is blank. A faint pencil stroke is about 0.3; an erased one or a shadow is less.
_MIN_CONTRAST = 0.12
# Ink also stands this many noise deviations above the background: then a picture of pure noise
# thresholds to scattered specks rather than to shapes.
_NOISE_SIGMAS = 6.0
# A digit is at least this many picture pixels tall or wide, and this fraction of the picture's short
# side; smaller shapes are dust, grain or noise. (MNIST's digits are 20 pixels tall.)
_MIN_DIGIT_PIXELS = 16
_MIN_DIGIT_FRACTION = 0.02
# A small convex shape (its area this close to its convex hull's), not long, with no hole in it, is a
# blot or dust, never a digit: digits are curves with bays (2, 3, 5, 7), long (1), or rings with holes
# (0, 6, 8, 9).
_BLOB_SOLIDITY = 0.9
_BLOB_ASPECT = 2.0
# Shapes smaller than this fraction of the tallest are specks (dust, a decimal point)...
_SPECK_FRACTION = 0.3
# ... but a broken digit's pieces can be that small, so before they are joined only shapes smaller
# than this are dropped.
_PIECE_FRACTION = 0.15
# More shapes than this are the texture of a photograph, not digits; only the biggest are kept.
_MAX_SHAPES = 200
# Touching digits meet at a junction with at most this fraction of the ink of the fullest column on
# either side of it.
_JUNCTION = 0.6
# No digit, nor two touching ones, is this much wider than tall: such a shape is a dash or a rule.
_DASH_ASPECT = 2.5
# In a tiny picture (a 28x28 crop) the digit may be smaller than _MIN_DIGIT_PIXELS, but not smaller
# than this fraction of the picture. At 0.5, an MNIST digit shrunk to 13 pixels in its 28 (a loose crop, the
# scale corruption's zoom 0.65) was dropped as a speck 29% of the time; at 0.35 (10 pixels) none were, and on
# 2,000 corrupted validation digits read as pictures nothing else got worse (benchmarks/README.md, Robustness).
_TINY_PICTURE_DIGIT = 0.35
# Noise is measured robustly: the median absolute deviation (MAD) of a normal distribution times this
# is its standard deviation.
_MAD_TO_SIGMA = 1.4826
# Immerkaer's noise kernel ("Fast noise variance estimation", 1996) cancels anything locally planar (paper,
# lighting, the inside of a broad stroke) and passes pixel noise, so the median of its absolute response
# measures the noise whatever share of the picture is ink: only the ink's edges respond, a minority even
# in a digit that fills the frame. (The MAD of the levels themselves is blind to the ink only while the
# ink is a small minority: a digit filling the frame looked like noise, and the picture blank.) On levels
# blurred by the 3x3 Gaussian below, its gain on noise is exactly 1: both kernels' norms are 0.375.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# Below this many noise deviations above the paper a level is noise, and is set to zero ...
_FLOOR_SIGMAS = 3.0
# ... but the floor never rises above this fraction of the ink threshold.
_FLOOR_OF_THRESHOLD = 0.5
# A hole that fills at least this fraction of its shape's box holds what lies inside it (a 0 around a dot).
_HOLE_FRACTION = 0.5
# A blob is ink over at least this fraction of its outline: no hole.
_BLOB_INK = 0.95
# Merging a broken digit's parts (see _merge_broken): rows overlapping by at most this fraction of the
# shorter part make the parts stacked, one over the other ...
_STACKED = 0.5
# ... and then their columns must overlap by this fraction of the narrower part; side by side, by this.
_OVERLAP_STACKED = 0.25
_OVERLAP_SIDE = 0.5
# The vertical gap between the parts, as a fraction of the taller: with other shapes around, and alone.
_GAP = 0.3
_GAP_ALONE = 0.2
# The parts together are at most this many times the height of a digit (the tallest other shape).
_MERGED_HEIGHT = 1.5
# A shape joins a line of text when its rows overlap the line's latest shape by this fraction of the shorter.
_LINE_OVERLAP = 0.5
# A digit is at most about this fraction of its height wide (MNIST's widest, a 0 or a 2, ~0.8) ...
_DIGIT_WIDTH = 0.8
# ... so a shape wider than this many heights is touching digits, cut where a cut is expected +- this
# fraction of a digit's width.
_TOUCHING_WIDTH = 1.25
_CUT_WINDOW = 0.25
# A shape not wide enough to be cut for certain, but more than this many heights wide, may be two digits
# touching ("17", "50"): it is offered cut in two, for the model to judge. (On the dev touching pairs the
# median width is 0.77 of the height, single digits' 0.66-0.74; widths 0.5-1.0 were tried.)
_NARROW_PAIR_WIDTH = 0.8
# ... at the column with the least ink between these fractions of its width.
_NARROW_CUT_WINDOW = (0.2, 0.8)
# A shape cut in two by rule is also offered cut at these fractions of its width.
_RECUTS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
# Marks of a number, as fractions of the line's digit height: a decimal point's size (at least about a pen
# stroke, at most a third of a digit), a minus sign's length; each fills at least this share of its box.
_DOT = (0.06, 0.3)
_MINUS = (0.2, 0.9)
_MARK_SOLIDITY = 0.5
# Soft edges reach 1 / this of a digit's size beyond its thresholded ink (at least one pixel).
_SOFT_EDGE_DIVISOR = 40


Trace = dict[str, Any]  # what segment decided on the way, by name (see segment's ``trace``)


@dataclass(frozen=True, eq=False)
class Glyph:
    """One digit found in a picture.

    box: (x, y, w, h) of its ink, in pixels of the picture as loaded.
    image: (28, 28) uint8, light ink on black: exactly what the model sees.
    line: 0 for the top line of text, 1 for the next, and so on.
    symbol: with ``segment(marks=True)``, "." for a decimal point or "-" for a minus sign (its image is
        blank: the model never sees it); None for a digit.
    cutter: when asked for (``segment(halves=True)``) and the shape is wide enough to be two digits
        touching, what :meth:`cuts` calls; None otherwise.
    recutter: when asked for, on the left glyph of a shape that a rule cut in two (far wider than a digit:
        two digits touching or overlapping), the other places it could be cut, as (left, right) pairs;
        which cut reads best is for the model to say.
    """

    box: tuple[int, int, int, int]
    image: np.ndarray
    line: int
    symbol: str | None = None  # "." or "-": a mark of a number found by its size and place, not a digit
    cutter: Callable[[], tuple[tuple[Glyph, Glyph], ...]] | None = dataclasses.field(default=None, repr=False)
    recutter: Callable[[], tuple[tuple[Glyph, Glyph], ...]] | None = dataclasses.field(default=None, repr=False)

    def cuts(self) -> tuple[tuple[Glyph, Glyph], ...]:
        """The (left, right) glyphs of each candidate cut of a shape that may be two digits touching (none
        for a glyph not offered cut); whether it is two digits or one, and where they meet, is for the model
        to say (:meth:`digits.reading.Recognizer.prepare` keeps the reading it trusts most). Cut out when
        asked: a shape read as one digit with confidence has no need of them."""
        return self.cutter() if self.cutter is not None else ()


@dataclass(frozen=True, eq=False)
class _Ink:
    """Where the ink of a picture is, and how to measure it anywhere in the picture."""

    mask: np.ndarray  # (h, w) uint8 at mask resolution: 255 on ink
    factor: int  # picture pixels per mask pixel
    lighting: np.ndarray  # (ch, cw) float32 background level, one pixel per `cell` picture pixels
    cell: int
    dark: bool  # dark ink on a light background
    threshold: float  # ink level that separates ink from background
    floor: float  # ink levels up to this are background noise


@dataclass(frozen=True, eq=False)
class _Shape:
    """One or more connected components taken as one digit, in mask pixels."""

    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive
    contours: tuple[np.ndarray, ...]

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def union(self, other: _Shape) -> _Shape:
        return _Shape(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            self.contours + other.contours,
        )


def segment(
    gray: np.ndarray,
    *,
    stroke: float | None = None,
    dark: bool | None = None,
    plane_light: bool = False,
    halves: bool = False,
    marks: bool = False,
    trace: Trace | None = None,
) -> list[Glyph]:
    """Find the digits of a grayscale picture from :func:`load_image`: top line first, left to right.

    Returns an empty list when there is no ink: a blank page, a faint smudge, specks or noise. Parts
    of a broken digit are joined, touching digits are cut apart. ``stroke`` is passed on to
    :func:`to_mnist`. ``dark`` says the ink is darker (True) or lighter (False) than its background;
    None lets the picture's cues vote (see :func:`_dark_ink`). With ``halves``, a shape that may be two
    digits touching can be cut in two (:meth:`Glyph.cuts`). With ``marks``, decimal points and minus
    signs between and before a line's digits come as glyphs too (:attr:`Glyph.symbol`). Given a dict as
    ``trace``, every decision taken on the way is written into it (polarity and the cues that voted on it,
    whether they agreed, lighting, noise, threshold, shapes kept): what ``--debug-dir`` shows.
    """
    if gray.ndim != 2 or gray.size == 0 or not np.issubdtype(gray.dtype, np.floating):
        raise ImageError(
            f"segment expects a (H, W) float image from load_image, got {gray.dtype} {gray.shape}", "unsupported"
        )
    gray = np.asarray(gray, dtype=np.float32)
    trace = {} if trace is None else trace
    ink = _find_ink(gray, dark, plane_light, trace)
    if ink is None:
        return []
    absolute = min(_MIN_DIGIT_PIXELS, _TINY_PICTURE_DIGIT * max(gray.shape))
    min_extent = max(absolute, _MIN_DIGIT_FRACTION * min(gray.shape)) / ink.factor
    shapes = _merge_broken(_shapes(ink.mask, min_extent))
    # Now that broken digits are whole, what is still small is a speck, and a lone blob is dust.
    tallest = max((s.h for s in shapes), default=0)
    shapes = [s for s in shapes if max(s.w, s.h) >= _SPECK_FRACTION * tallest]
    shapes = [s for s in shapes if not _is_dust(ink.mask, s, min_extent)]
    glyphs: list[Glyph] = []
    lines = _lines(shapes)
    for number, line in enumerate(lines):
        height = float(np.median([s.h for s in line]))
        found = [g for shape in line for g in _glyphs(gray, ink, shape, height, min_extent, number, stroke, halves)]
        glyphs.extend(_with_marks(ink, found) if marks and found else found)
    trace.update(shapes=len(shapes), lines=len(lines), digits=sum(g.symbol is None for g in glyphs))
    if marks:
        trace["marks"] = "".join(g.symbol for g in glyphs if g.symbol is not None)
    return glyphs


# --------------------------------------------------------------------------------------------------
# Ink


def _find_ink(gray: np.ndarray, dark: bool | None, plane_light: bool, trace: Trace) -> _Ink | None:
    """Threshold the ink of a picture, light on dark whatever its polarity (``dark``, or the cues' vote when
    None); None when it is blank."""
    H, W = gray.shape
    factor = max(1, math.ceil(math.sqrt(H * W / _MASK_PIXELS)))
    small = gray
    if factor > 1:  # an integer factor keeps INTER_AREA on its fast path
        h, w = H // factor, W // factor
        small = cv2.resize(gray[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)  # (h, w): sensor noise is per pixel, strokes are not
    h, w = small.shape

    # Lighting varies slowly, so it is estimated on a coarse image. The kernel is a third of its
    # short side, so that even a digit filling the frame has strokes narrower than it.
    step = max(1, min(h, w) // _COARSE_SIDE)
    ch, cw = max(1, h // step), max(1, w // step)
    coarse = cv2.resize(small[: ch * step, : cw * step], (cw, ch), interpolation=cv2.INTER_AREA)
    k = max(3, (min(ch, cw) // 3) | 1)
    voted, votes = _dark_ink(small, coarse, k)
    trace.update(
        picture=[H, W],
        mask_factor=factor,
        polarity_votes=votes,
        polarity_agreed=len(set(votes.values())) == 1,
        polarity_from="the vote" if dark is None else "given",
    )
    dark = voted if dark is None else dark
    trace["polarity"] = "dark ink on a light background" if dark else "light ink on a dark background"
    if plane_light:
        lighting = _plane(coarse, dark)
        trace["lighting"] = "a plane fitted to the background"
    elif min(ch, cw) < _COARSE_SIDE // 4:
        # Too small a picture to tell strokes from lighting: take the light as even.
        lighting = np.full_like(coarse, _median(coarse))
        trace["lighting"] = "even (too small a picture to tell strokes from lighting)"
    else:
        trace["lighting"] = f"{'closing' if dark else 'opening'} of the picture at 1/{step}, {k}x{k} kernel"
        # Closing removes dark strokes and leaves the paper; opening removes light strokes and leaves
        # the dark background: either way what remains is the light falling on the picture. The
        # coarse image is extended past its edges first, or light falling off towards an edge
        # (vignetting) would be overestimated there by the slope times half the kernel.
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
        op = cv2.MORPH_CLOSE if dark else cv2.MORPH_OPEN
        lighting = cv2.morphologyEx(_extend(coarse, k), op, kernel)[k:-k, k:-k]
        # How far the estimate is from light falling evenly across the picture (a plane): ink taken for
        # light shows here, as can real shade. (Relative to the paper for dark ink, as _level measures it.)
        bend = float(np.abs(lighting - _plane(lighting, dark)).max())
        trace["lighting_bend"] = bend / max(float(lighting.max()), 0.02) if dark else bend
    cell = factor * step
    level = _level(small, _lighting(lighting, cell, 0, 0, (h, w), (factor, factor)), dark)

    sample = level[:: _stride(level), :: _stride(level)]
    median = _median(sample)
    noise = _noise(level)
    otsu, _ = cv2.threshold(_to_u8(sample), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    candidates = {"otsu": otsu / 255.0, "noise": median + _NOISE_SIGMAS * noise, "minimum contrast": _MIN_CONTRAST}
    decided = max(candidates, key=lambda name: candidates[name])
    threshold = candidates[decided]
    blank = float(level.max()) <= threshold
    trace.update(noise=noise, threshold=threshold, threshold_from=decided, blank=blank)
    if blank:
        return None
    return _Ink(
        mask=(level > threshold).astype(np.uint8) * np.uint8(255),
        factor=factor,
        lighting=lighting,
        cell=cell,
        dark=dark,
        threshold=threshold,
        floor=min(median + _FLOOR_SIGMAS * noise, _FLOOR_OF_THRESHOLD * threshold),
    )


def _noise(level: np.ndarray) -> float:
    """Standard deviation of the pixel noise in ``level``, blind to the ink however much of it there is."""
    response = cv2.filter2D(level, -1, _NOISE_KERNEL, borderType=cv2.BORDER_REPLICATE)
    s = _stride(response)
    return _MAD_TO_SIGMA * _median(np.abs(response[::s, ::s]))


def _extend(a: np.ndarray, n: int) -> np.ndarray:
    """Pad by ``n`` on every side with an odd reflection, which continues a linear ramp straight."""
    mirrored = cv2.copyMakeBorder(a, n, n, n, n, cv2.BORDER_REFLECT_101)
    edge = cv2.copyMakeBorder(a, n, n, n, n, cv2.BORDER_REPLICATE)
    return 2.0 * edge - mirrored


def _dark_ink(small: np.ndarray, coarse: np.ndarray, k: int) -> tuple[bool, dict[str, bool]]:
    """Is the ink darker than its background? Three cues vote, as none of them holds alone:

    * residue: a median filter removes dark and light strokes alike, so what is left after subtracting it
      is noise plus ink whatever the polarity; the side with more mass beyond three noise deviations is the
      ink. Fooled when the ink fills the frame, as the filter's window then holds more ink than background.
    * minority: of the two classes Otsu's threshold makes, the ink is the smaller. Fooled by a thick,
      stretched digit (a 1 that fills its square) and by a dark surround larger than the page.
    * border: the picture's outermost pixels are mostly background, even when the ink touches the frame.
      Fooled by a page photographed on a dark desk.
    On the dev halves of benchmarks/reading_sets.py the vote chose the polarity of 85-100% of frame-filling
    digits, against 77-96% for the residue alone; it kept all of the photographed and canvas digits.
    """
    s = _stride(small)
    sample = small[::s, ::s]
    background = cv2.medianBlur(_to_u8(coarse), k).astype(np.float32) / np.float32(255.0)
    background = cv2.resize(background, (sample.shape[1], sample.shape[0]), interpolation=cv2.INTER_LINEAR)
    residual = sample - background
    spread = _FLOOR_SIGMAS * _MAD_TO_SIGMA * _median(np.abs(residual - _median(residual)))
    darker = float(np.sum(np.clip(-residual - spread, 0, None)))
    lighter = float(np.sum(np.clip(residual - spread, 0, None)))

    u8 = _to_u8(_without_slope(sample))
    cut, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edge = np.concatenate([u8[0], u8[-1], u8[1:-1, 0], u8[1:-1, -1]])
    votes = {
        "residue": darker > lighter,
        "minority": float(np.mean(u8 <= cut)) < 0.5,
        "border": float(np.mean(edge > cut)) > 0.5,
    }  # True: says the ink is dark
    return sum(votes.values()) >= 2, votes


def _plane(a: np.ndarray, dark: bool) -> np.ndarray:
    """The plane (light falling evenly across the picture) that fits the background of ``a`` best: least
    squares on the half of the pixels least like ink, fitted twice (the first fit chooses the half)."""
    design, solver = _plane_fit(*a.shape)
    values = a.ravel().astype(np.float64)
    fitted = design @ (solver @ values)  # every pixel
    inkness = (fitted - values) if dark else (values - fitted)
    background = inkness <= _median(inkness)
    coef, *_ = np.linalg.lstsq(design[background], values[background], rcond=None)
    return (design @ coef).reshape(a.shape).astype(np.float32)


def _without_slope(a: np.ndarray) -> np.ndarray:
    """``a`` less the plane that fits it best (least squares), plus its mean: light falling across a page
    is taken out, ink (which is no plane) is not."""
    design, solver = _plane_fit(*a.shape)
    coef = solver @ a.ravel().astype(np.float64)
    slope = (design[:, :2] @ coef[:2]).reshape(a.shape)
    return (a - (slope - slope.mean())).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _plane_fit(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """For fitting a plane to an (h, w) image by least squares: the design, (h * w, 3) float64 (each pixel's
    x, y and 1, row by row), and its pseudo-inverse (3, h * w), which gives the coefficients of the fit of
    all the pixels as one product. Read-only, made once per shape (pictures of a kind share their shapes)."""
    ys, xs = np.mgrid[0:h, 0:w]
    design = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)], axis=1).astype(np.float64)
    solver = np.linalg.pinv(design)
    design.flags.writeable = solver.flags.writeable = False
    return design, solver


def _median(a: np.ndarray) -> float:
    """``np.median`` of an array's values without its overhead, which dominates on the small arrays here."""
    a = a.ravel()
    k = a.size // 2
    if a.size % 2:
        return float(np.partition(a, k)[k])
    low, high = np.partition(a, (k - 1, k))[k - 1 : k + 1]
    return float((low + high) / 2)


def _lighting(
    lighting: np.ndarray, cell: int, x0: float, y0: float, shape: tuple[int, int], pixel: tuple[float, float]
) -> np.ndarray:
    """The background level on a grid of ``shape`` (rows, cols) whose pixels are ``pixel`` (x, y)
    picture pixels wide and start at picture pixel (x0, y0), interpolated from the coarse lighting."""
    sx, sy = pixel[0] / cell, pixel[1] / cell
    # Pixel centres: grid pixel u is at picture x0 + (u + 0.5) * pixel, lighting pixel j at (j + 0.5) * cell.
    m = np.array(
        [[sx, 0.0, (x0 + 0.5 * pixel[0]) / cell - 0.5], [0.0, sy, (y0 + 0.5 * pixel[1]) / cell - 0.5]],
        np.float64,
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(lighting, m, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _level(gray: np.ndarray, background: np.ndarray, dark: bool) -> np.ndarray:
    """Ink level: 0 on the background, rising towards 1 for ink of full contrast, negative where the
    background is lighter (or darker, for light ink) than its estimate: kept so, noise has both
    signs and its spread can be measured.

    Dark ink is measured as darkness relative to the paper, which divides out the illumination
    (paper in a shadow is darker, and so is its ink). Light ink is measured as brightness over the
    background: dividing by a dark background would amplify its noise without bound, and dividing
    by the headroom above a bright one would amplify the errors of a picture with no ink at all.
    """
    if dark:
        level = background - gray
        level /= np.maximum(background, np.float32(0.02))
        return level
    return gray - background


def _stride(a: np.ndarray) -> int:
    """Subsampling step that leaves about 8k pixels: enough for robust statistics, and fast."""
    return max(1, int(math.sqrt(a.size / 8192)))


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------------
# Shapes and lines


def _shapes(mask: np.ndarray, min_extent: float) -> list[_Shape]:
    """Connected components of the ink, without specks, frames and the texture of a photograph."""
    # RETR_CCOMP puts the outer boundary of every component at the top level (a digit written in a
    # printed box included) and its holes below it, and is several times faster than
    # connectedComponentsWithStats.
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    parent = hierarchy[0][:, 3]
    outer = np.flatnonzero(parent < 0)
    rects = np.array([cv2.boundingRect(contours[int(i)]) for i in outer]).reshape(-1, 4)  # (N, 4): x, y, w, h
    extent = rects[:, 2:].max(axis=1)
    keep = np.flatnonzero(extent >= max(3.0, min_extent))
    keep = keep[np.argsort(-extent[keep], kind="stable")][:_MAX_SHAPES]
    if keep.size == 0:
        return []
    outer, rects, extent = outer[keep], rects[keep], extent[keep]
    x, y, w, h = rects.T

    # A printed box around a digit holds it in its hole; no digit holds a big shape in a hole.
    inside = (
        (x[:, None] <= x[None, :])
        & (y[:, None] <= y[None, :])
        & ((x + w)[:, None] >= (x + w)[None, :])
        & ((y + h)[:, None] >= (y + h)[None, :])
        & (extent[None, :] >= _SPECK_FRACTION * h[:, None])
    )
    np.fill_diagonal(inside, False)
    frame = np.zeros(len(outer), bool)
    for i, j in np.argwhere(inside):
        frame[i] = frame[i] or _holds(contours, parent, int(outer[i]), rects[i], rects[j])
    tallest = int(h[~frame].max()) if not frame.all() else 0
    return [
        _Shape(int(x[i]), int(y[i]), int(x[i] + w[i]), int(y[i] + h[i]), (contours[int(outer[i])],))
        for i in np.flatnonzero(~frame & (extent >= _PIECE_FRACTION * tallest))
    ]


def _holds(contours: Sequence[np.ndarray], parent: np.ndarray, i: int, rect: np.ndarray, other: np.ndarray) -> bool:
    """Does component ``i`` hold the box ``other`` in a hole that fills most of its own box?"""
    ox, oy, ow, oh = other
    for hole in np.flatnonzero(parent == i):
        hx, hy, hw, hh = cv2.boundingRect(contours[int(hole)])
        big = hw * hh >= _HOLE_FRACTION * rect[2] * rect[3]
        if big and hx <= ox and hy <= oy and hx + hw >= ox + ow and hy + hh >= oy + oh:
            return True
    return False


def _is_dust(mask: np.ndarray, shape: _Shape, min_extent: float) -> bool:
    """Dust, or a blot: small, and made only of blobs.

    Only shapes near the smallest digit size are looked at, so that a bold digit whose holes closed
    up is not taken for dust. Checked after joining broken digits, as a piece of one can be a blob.
    """
    if max(shape.w, shape.h) >= 3 * min_extent:
        return False
    return all(_is_blob(mask, c) for c in shape.contours)


def _is_blob(mask: np.ndarray, contour: np.ndarray) -> bool:
    """A convex, solid shape without holes."""
    x, y, w, h = cv2.boundingRect(contour)
    if max(w, h) > _BLOB_ASPECT * min(w, h):
        return False
    if cv2.contourArea(contour) < _BLOB_SOLIDITY * cv2.contourArea(cv2.convexHull(contour)):
        return False
    filled = np.zeros((h, w), np.uint8)
    cv2.drawContours(filled, [contour], -1, 255, cv2.FILLED, offset=(-x, -y))
    outline = np.count_nonzero(filled)
    ink = np.count_nonzero(filled & mask[y : y + h, x : x + w])  # inside the outline but not ink: a hole
    return bool(ink >= _BLOB_INK * outline)


def _merge_broken(shapes: list[_Shape]) -> list[_Shape]:
    """Join the parts of one digit: a 5 whose top bar was written apart, a segment display's bars.

    Two shapes are parts of one digit when they are close vertically (a gap under 0.3 of the
    taller; 0.2 when they are all there is, as two lines of one digit each are not rare either)
    and their columns overlap: by a quarter of the narrower one when one lies over the other
    (a 5's top bar, written apart, often sticks out to the right), by half when their rows overlap
    too, as side-by-side digits' do. Together they are no taller than a digit, whose height is that
    of the tallest other shape (a digit over a digit, in two lines of text, is twice as tall);
    alone, the parts are all there is. Nor is the union much wider than tall, which a digit over a
    rule or a dash would be. The closest such pair is joined, then the next, until none is left.
    """
    shapes = list(shapes)
    while len(shapes) > 1:
        x0, y0, x1, y1 = np.array([(s.x0, s.y0, s.x1, s.y1) for s in shapes]).T
        w, h = x1 - x0, y1 - y0
        overlap = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])  # (N, N)
        gap = np.maximum(y0[:, None], y0[None, :]) - np.minimum(y1[:, None], y1[None, :])  # < 0: rows overlap
        height = np.maximum(y1[:, None], y1[None, :]) - np.minimum(y0[:, None], y0[None, :])
        width = np.maximum(x1[:, None], x1[None, :]) - np.minimum(x0[:, None], x0[None, :])
        # The height of a digit for the pair (i, j): that of the tallest other shape, inf if none.
        index = np.arange(len(shapes))
        reference = np.full(overlap.shape, np.inf)
        for k in np.argsort(h, kind="stable")[-3:]:  # the three tallest, the tallest last
            reference = np.where((index[:, None] != k) & (index[None, :] != k), h[k], reference)
        stacked = -gap <= _STACKED * np.minimum(h[:, None], h[None, :])
        alone = np.isinf(reference)
        joined = (
            (overlap >= np.where(stacked, _OVERLAP_STACKED, _OVERLAP_SIDE) * np.minimum(w[:, None], w[None, :]))
            & (gap <= np.where(alone, _GAP_ALONE, _GAP) * np.maximum(h[:, None], h[None, :]))
            & (height <= _MERGED_HEIGHT * reference)
            & (width <= _DASH_ASPECT * height)
        )
        joined = np.triu(joined, k=1)
        if not joined.any():
            break
        i, j = np.unravel_index(np.argmin(np.where(joined, gap, np.iinfo(np.int64).max)), joined.shape)
        shapes[i] = shapes[i].union(shapes.pop(int(j)))
    return shapes


def _lines(shapes: list[_Shape]) -> list[list[_Shape]]:
    """Group shapes into lines of text, top to bottom, each left to right.

    Sweeping left to right, a shape joins the line whose latest shape its rows overlap most, by at
    least half the shorter of the two: this follows a sloping line, which a fixed band would not.
    """
    lines: list[list[_Shape]] = []
    for shape in sorted(shapes, key=lambda s: (s.x0, s.y0)):
        best, best_overlap = None, 0.0
        for line in lines:
            last = line[-1]
            overlap = (min(shape.y1, last.y1) - max(shape.y0, last.y0)) / min(shape.h, last.h)
            if overlap >= _LINE_OVERLAP and overlap > best_overlap:
                best, best_overlap = line, overlap
        if best is None:
            lines.append([shape])
        else:
            best.append(shape)
    return sorted(lines, key=lambda line: float(np.median([(s.y0 + s.y1) / 2 for s in line])))


# --------------------------------------------------------------------------------------------------
# Glyphs


def _glyphs(
    gray: np.ndarray,
    ink: _Ink,
    shape: _Shape,
    line_height: float,
    min_extent: float,
    line: int,
    stroke: float | None,
    halves: bool,
) -> list[Glyph]:
    """Cut a shape into digits (several when digits touch) and normalise each like MNIST; with ``halves``,
    a shape that may be two digits touching can also be cut in two (:meth:`Glyph.cuts`).

    What is left too small, or much wider than tall (a dash, a rule, a scribble with no place to
    cut), is not a digit and gives nothing.
    """
    region = np.zeros((shape.h, shape.w), np.uint8)  # (h, w) mask pixels: this shape's ink only
    cv2.drawContours(region, list(shape.contours), -1, 255, cv2.FILLED, offset=(-shape.x0, -shape.y0))
    region &= ink.mask[shape.y0 : shape.y1, shape.x0 : shape.x1]
    columns = _split_columns(region, line_height)

    def cut_out(a: int, b: int, cut: bool) -> Glyph | None:
        rows = np.flatnonzero(region[:, a:b].any(axis=1))
        if rows.size == 0:
            return None
        piece = region[rows[0] : rows[-1] + 1, a:b]
        h, w = piece.shape
        if max(h, w) < min_extent or w > _DASH_ASPECT * h:
            return None
        return _glyph(gray, ink, piece, (shape.x0 + a, shape.y0 + int(rows[0])), cut, line, stroke)

    glyphs = [g for a, b in columns if (g := cut_out(a, b, len(columns) > 1)) is not None]
    places = _pair_cuts(region, line_height) if halves and len(columns) == 1 and len(glyphs) == 1 else []
    if places:

        def cuts() -> tuple[tuple[Glyph, Glyph], ...]:
            pairs = ((cut_out(0, c, True), cut_out(c, region.shape[1], True)) for c in places)
            return tuple((a, b) for a, b in pairs if a is not None and b is not None)

        glyphs = [dataclasses.replace(glyphs[0], cutter=cuts)]
    elif halves and len(columns) == 2 and len(glyphs) == 2:
        # The rule cut at the thinnest column near the middle; overlapping digits cross there, and the
        # thinnest column can be inside either. Other cuts are offered for the model to judge.
        w = region.shape[1]
        ruled = columns[0][1]
        others = sorted({round(f * w) for f in _RECUTS} - {ruled})

        def recuts() -> tuple[tuple[Glyph, Glyph], ...]:
            pairs = ((cut_out(0, c, True), cut_out(c, w, True)) for c in others if 0 < c < w)
            return tuple((a, b) for a, b in pairs if a is not None and b is not None)

        glyphs = [dataclasses.replace(glyphs[0], recutter=recuts), glyphs[1]]
    return glyphs


def _pair_cuts(region: np.ndarray, line_height: float) -> list[int]:
    """Columns where a shape might be two narrow digits touching ("17", "50"), left to right: none when it is
    no wider than _NARROW_PAIR_WIDTH of its height; else its thinnest column between 20% and 80% of its
    width and every tenth of its width from 20% to 80% (a 1 beside a wide digit meets it far from the
    middle, and the thinnest column is often inside a digit). The model judges each cut, not a rule."""
    h, w = region.shape
    if w <= _NARROW_PAIR_WIDTH * max(float(h), line_height):
        return []
    lo, hi = int(_NARROW_CUT_WINDOW[0] * w), int(_NARROW_CUT_WINDOW[1] * w) + 1
    profile = np.convolve(np.count_nonzero(region, axis=0).astype(np.float32), np.ones(3, np.float32) / 3, "same")
    cost = profile[lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - w / 2)
    thinnest = lo + int(np.argmin(cost))
    tenths = (round(f * w) for f in np.arange(_NARROW_CUT_WINDOW[0], _NARROW_CUT_WINDOW[1] + 0.01, 0.1))
    return sorted({thinnest, *(c for c in tenths if 0 < c < w)})


def _with_marks(ink: _Ink, digits: list[Glyph]) -> list[Glyph]:
    """A line's digits (left to right) with the decimal points and minus signs among them, in place.

    A decimal point is a small, solid, roundish speck (_DOT) low in the line, between two digits; a minus
    sign a short, flat stroke (_MINUS) at mid-height, just before a digit. Both are found in the mask
    around the line, where specks and dashes were set aside as no digits. Dust on the baseline can pass
    for a point: only a speck of about a pen stroke's size, between digits, is taken.
    """
    f = ink.factor
    boxes = np.array([g.box for g in digits], np.float64)  # (N, 4) picture pixels
    top, bottom = float(np.median(boxes[:, 1])), float(np.median(boxes[:, 1] + boxes[:, 3]))
    height = bottom - top
    x0, x1 = boxes[0, 0] - height, boxes[-1, 0] + boxes[-1, 2]
    # The line's band of the mask, in mask pixels.
    mx0, mx1 = max(0, int(x0 / f)), min(ink.mask.shape[1], int(np.ceil(x1 / f)))
    my0, my1 = max(0, int((top - 0.1 * height) / f)), min(ink.mask.shape[0], int(np.ceil((bottom + 0.2 * height) / f)))
    if mx1 <= mx0 or my1 <= my0:
        return digits
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink.mask[my0:my1, mx0:mx1], connectivity=8)
    marks: list[Glyph] = []
    lefts, rights = boxes[:, 0], boxes[:, 0] + boxes[:, 2]
    for x, y, w, h, area in stats[1:]:
        bx, by, bw, bh = (mx0 + x) * f, (my0 + y) * f, w * f, h * f  # picture pixels
        cx, cy = bx + bw / 2, by + bh / 2
        if ((lefts <= cx) & (cx <= rights)).any():  # part of a digit's column
            continue
        solid = area >= _MARK_SOLIDITY * w * h
        before = np.flatnonzero(rights < cx)
        after = np.flatnonzero(lefts > cx)
        symbol = None
        if (
            solid
            and _DOT[0] * height <= max(bw, bh) <= _DOT[1] * height
            and max(bw, bh) <= 2 * min(bw, bh)
            and cy >= top + 0.7 * height
            and before.size
            and after.size
        ):
            symbol = "."
        elif (
            solid
            and _MINUS[0] * height <= bw <= _MINUS[1] * height
            and bh <= 0.4 * bw
            and top + 0.3 * height <= cy <= top + 0.7 * height
            and after.size
            and lefts[after[0]] - (bx + bw) <= 0.5 * height
        ):
            symbol = "-"
        if symbol is not None:
            box = (int(bx), int(by), max(1, int(bw)), max(1, int(bh)))
            marks.append(
                Glyph(box=box, image=np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8), line=digits[0].line, symbol=symbol)
            )
    return sorted(digits + marks, key=lambda g: g.box[0] + g.box[2] / 2)


def _split_columns(region: np.ndarray, line_height: float) -> list[tuple[int, int]]:
    """Column ranges of the digits in a shape: one, or several when it is far wider than a digit.

    A digit is at most about 0.8 of its height wide, so a shape wider than 1.25 heights is touching
    digits. Each cut goes through the column with the least ink near where an even split would put
    it, provided that column is a narrow junction between fuller ones: a bar has none, and is not
    cut. (Narrower shapes that may be two digits are offered cuts by :func:`_pair_cuts`.)
    """
    h, w = region.shape
    height = max(float(h), line_height)
    profile = np.count_nonzero(region, axis=0).astype(np.float32)
    profile = np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")
    if w <= _TOUCHING_WIDTH * height:
        return [(0, w)]
    n = max(2, round(w / (_DIGIT_WIDTH * height)))
    cuts = [0]
    for i in range(1, n):
        expected = i * w / n
        lo = max(cuts[-1] + 1, int(expected - _CUT_WINDOW * w / n))
        hi = min(w - 1, int(expected + _CUT_WINDOW * w / n) + 1)
        if lo < hi:
            # Least ink wins; among equals, the column nearest the even split.
            cost = profile[lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - expected)
            cut = lo + int(np.argmin(cost))
            left = float(profile[cuts[-1] : cut].max())
            right = float(profile[cut : min(w, cut + w // n + 1)].max())
            if profile[cut] <= _JUNCTION * min(left, right):
                cuts.append(cut)
    cuts.append(w)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _glyph(
    gray: np.ndarray,
    ink: _Ink,
    piece: np.ndarray,
    origin: tuple[int, int],
    cut: bool,
    line: int,
    stroke: float | None,
) -> Glyph:
    """Take one digit's pixels from the full-resolution picture and normalise them like MNIST.

    ``piece`` is the digit's mask, in mask pixels from ``origin``. Its gray levels keep MNIST-like
    soft edges; every pixel that is not this digit's ink (paper, noise, a neighbour) is set to zero.
    """
    crop, member, (cx0, cy0, cx1, cy1) = _crop(gray, ink.factor, piece, origin, cut)
    pixel = ((cx1 - cx0) / crop.shape[1], (cy1 - cy0) / crop.shape[0])  # picture pixels per crop pixel
    level = _level(crop, _lighting(ink.lighting, ink.cell, cx0, cy0, crop.shape, pixel), ink.dark)
    inside = member > 0

    # The ink proper, at full resolution (the mask's is coarse), gives the box.
    ys, xs = np.nonzero((level > ink.threshold) & inside)
    if ys.size == 0:  # too faint at full resolution: fall back on the mask
        ys, xs = np.nonzero(inside)
    top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1

    soft = _above_noise(level, inside, ink)
    # Soft edges reach a little beyond the thresholded ink, and no further.
    r = max(1, round(max(bottom - top, right - left) / _SOFT_EDGE_DIVISOR))
    image = to_mnist(soft[max(0, top - r) : bottom + r, max(0, left - r) : right + r], stroke=stroke)

    bx0, by0 = cx0 + int(left * pixel[0]), cy0 + int(top * pixel[1])
    bx1, by1 = cx0 + math.ceil(right * pixel[0]), cy0 + math.ceil(bottom * pixel[1])
    return Glyph(box=(bx0, by0, bx1 - bx0, by1 - by0), image=image, line=line)


def _crop(
    gray: np.ndarray, f: int, piece: np.ndarray, origin: tuple[int, int], cut: bool
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The picture around a digit (at most _GLYPH_SIDE on its long side), the mask of what may be its
    ink there, and the crop's box (x0, y0, x1, y1) in picture pixels. ``f``: picture pixels per mask pixel."""
    H, W = gray.shape
    x0, y0 = origin[0] * f, origin[1] * f
    x1, y1 = min(W, x0 + piece.shape[1] * f), min(H, y0 + piece.shape[0] * f)
    # The mask is coarse by one mask pixel, and soft edges reach below the threshold: look further.
    m = f + max(1, round(max(x1 - x0, y1 - y0) / _SOFT_EDGE_DIVISOR))
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)

    member = np.zeros((cy1 - cy0, cx1 - cx0), np.uint8)  # (rows, cols) of the crop
    up = cv2.resize(piece, (piece.shape[1] * f, piece.shape[0] * f), interpolation=cv2.INTER_NEAREST)
    up = up[: y1 - y0, : x1 - x0]
    member[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = up
    member = cv2.dilate(member, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * m + 1, 2 * m + 1)))
    if cut:  # a piece of touching digits must not take in its neighbour's stroke across the cut
        member[:, : x0 - cx0] = 0
        member[:, x1 - cx0 :] = 0

    crop = gray[cy0:cy1, cx0:cx1]
    if max(crop.shape) > _GLYPH_SIDE:  # the 20-pixel box needs no more; shrinking here saves time
        q = _GLYPH_SIDE / max(crop.shape)
        size = (max(1, round(crop.shape[1] * q)), max(1, round(crop.shape[0] * q)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        member = cv2.resize(member, size, interpolation=cv2.INTER_NEAREST)
    return crop, member, (cx0, cy0, cx1, cy1)


def _above_noise(level: np.ndarray, inside: np.ndarray, ink: _Ink) -> np.ndarray:
    """Ink levels in [0, 1] with the noise floor at 0 and everything outside ``inside`` zeroed.

    Noise at full resolution is stronger than in the averaged mask: it is measured on the paper around
    the digit, and everything at or below it is zeroed, so the digit's box is not widened by noise.
    """
    paper = level[~inside][::3]  # a third is plenty for two medians
    floor = ink.floor
    if paper.size >= 16:
        median = _median(paper)
        floor = median + _FLOOR_SIGMAS * _MAD_TO_SIGMA * _median(np.abs(paper - median))
    floor = min(floor, _FLOOR_OF_THRESHOLD * ink.threshold)
    soft = np.clip((level - np.float32(floor)) / np.float32(1.0 - floor), 0.0, 1.0)
    soft[~inside] = 0.0
    return soft
