"""Realistic pictures of digits, made from 28x28 MNIST-style digits, for testing image reading.

Every function takes digits as MNIST has them (uint8, light ink on black, the ink in a 20x20 box) and
returns what a user would send: a photo of paper with uneven light and sensor noise, a drawing on a
transparent web canvas, a JPEG. The scenes also say where each digit was put, so a test can check
not only that something was read but that the right thing was read in the right place.

Only numpy, OpenCV and Pillow are used, and nothing here depends on the code under test.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# Hershey fonts that OpenCV can draw; together they give some variety of digit shapes.
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


def font_digit(digit: int, *, font: int = cv2.FONT_HERSHEY_SIMPLEX, thickness: int = 14) -> np.ndarray:
    """Draw ``digit`` with an OpenCV font and normalise it like MNIST: (28, 28) uint8, light on dark.

    The digit is drawn large (about 110 pixels tall, strokes ``thickness`` pixels) and shrunk with
    area averaging, so its edges are anti-aliased as MNIST's are.
    """
    canvas = np.zeros((220, 220), np.uint8)
    cv2.putText(canvas, str(digit), (40, 170), font, 5.0, 255, thickness, cv2.LINE_AA)
    return mnist_like(canvas)


def stroke_digit(strokes: Sequence[Sequence[tuple[int, int]]], *, thickness: int = 12) -> np.ndarray:
    """Draw polylines (points on a 200x200 canvas) with a round pen and normalise like MNIST."""
    canvas = np.zeros((200, 200), np.uint8)
    for points in strokes:
        pts = np.array(points, np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 255, thickness, cv2.LINE_AA)
    return mnist_like(canvas)


def mnist_like(ink: np.ndarray) -> np.ndarray:
    """Fit light-on-dark ink into 20x20 keeping its aspect ratio and centre it by mass in 28x28.

    A plain reference version of MNIST's normalisation, independent of digits.reading.pipeline.
    """
    x, y, w, h = cv2.boundingRect((ink > 0).astype(np.uint8))
    crop = ink[y : y + h, x : x + w].astype(np.float32)
    f = 20.0 / max(w, h)
    small = cv2.resize(crop, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape
    ys, xs = np.mgrid[0:sh, 0:sw]
    ox = int(np.clip(round(14 - (small * xs).sum() / small.sum()), 0, 28 - sw))
    oy = int(np.clip(round(14 - (small * ys).sum() / small.sum()), 0, 28 - sh))
    out = np.zeros((28, 28), np.float32)
    out[oy : oy + sh, ox : ox + sw] = small
    return np.clip(out * (255.0 / out.max()), 0, 255).round().astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Scene:
    """A synthetic picture and the ground truth of what is in it."""

    image: np.ndarray  # (H, W) or (H, W, 3) uint8, as a scanner or camera gives it
    boxes: tuple[tuple[int, int, int, int], ...]  # (x, y, w, h) of each digit's ink, in placing order
    lines: tuple[int, ...]  # line of each digit, 0 at the top


def paper(
    digits: Sequence[np.ndarray] | Sequence[Sequence[np.ndarray]],
    *,
    size: tuple[int, int] = (1000, 1000),
    height: int = 150,
    origin: tuple[int, int] = (100, 100),
    gap: int | Sequence[int] = 40,
    line_gap: int = 60,
    stroke: int = 0,
    ink: float = 0.12,
    background: float = 0.9,
    gradient: float = 0.4,
    noise: float = 0.02,
    blur: float = 0.0,
    rgb: bool = False,
    seed: int = 0,
) -> Scene:
    """Dark digits on light paper, photographed: the digits scaled up and placed in lines.

    digits: one line of 28x28 digits, or several lines (a sequence of sequences).
    size: (width, height) of the picture. height: height of a 20-pixel MNIST box once scaled.
    origin: top-left (x, y) of the first line. gap: pixels between the ink of neighbouring digits,
    one value or one per gap in each line; negative makes digits overlap (touching digits).
    stroke: pixels to thicken (positive) or thin (negative) strokes, after scaling.
    ink, background: reflectance of ink and paper. gradient: fraction of the light lost across the
    picture, in a random direction. noise: standard deviation of Gaussian sensor noise. blur: sigma
    of a Gaussian blur (focus). rgb: return 3 channels with a slightly warm paper tint.
    """
    rng = np.random.default_rng(seed)
    lines = [list(digits)] if isinstance(digits[0], np.ndarray) else [list(line) for line in digits]
    width, total_height = size
    coverage = np.zeros((total_height, width), np.float32)  # 0 paper .. 1 ink
    boxes, line_of = [], []
    y = origin[1]
    for number, line in enumerate(lines):
        x = origin[0]
        gaps = [gap] * len(line) if isinstance(gap, int) else list(gap)
        for i, digit in enumerate(line):
            big = _enlarge(digit, height / 20.0, stroke)
            h, w = big.shape
            top = y + (height - h) // 2
            if top < 0 or x < 0 or top + h > total_height or x + w > width:
                raise ValueError(f"digit {i} of line {number} does not fit in a {size} picture")
            region = coverage[top : top + h, x : x + w]
            np.maximum(region, big, out=region)
            boxes.append((x, top, w, h))
            line_of.append(number)
            x += w + (gaps[i] if i < len(gaps) else 0)
        y += height + line_gap

    reflectance = background - (background - ink) * coverage
    image = reflectance * _lighting(total_height, width, gradient, rng)
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    gray = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rgb:
        tint = np.array([1.0, 0.97, 0.9], np.float32)
        gray = np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
    return Scene(image=gray, boxes=tuple(boxes), lines=tuple(line_of))


def _enlarge(digit: np.ndarray, factor: float, stroke: int) -> np.ndarray:
    """Scale a 28x28 digit up, change its stroke width, and crop it to its ink: (h, w) float in [0, 1]."""
    size = round(28 * factor)
    big = cv2.resize(digit.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big, 0.0, 1.0)
    if stroke:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(stroke) + 1, 2 * abs(stroke) + 1))
        big = cv2.dilate(big, kernel) if stroke > 0 else cv2.erode(big, kernel)
    big[big < 0.05] = 0.0  # cubic interpolation rings faintly far from the strokes
    x, y, w, h = cv2.boundingRect((big > 0).astype(np.uint8))
    return big[y : y + h, x : x + w]


def _lighting(height: int, width: int, gradient: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling off linearly by ``gradient`` across the picture in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    return (1.0 - gradient * t).astype(np.float32)


def specks(image: np.ndarray, count: int, *, radius: int = 3, value: int = 30, seed: int = 0) -> np.ndarray:
    """Sprinkle ``count`` round specks of gray ``value`` (dust, pepper noise) over a copy of an image."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    h, w = out.shape[:2]
    for _ in range(count):
        centre = (int(rng.integers(radius, w - radius)), int(rng.integers(radius, h - radius)))
        cv2.circle(out, centre, radius, (value, value, value), -1, cv2.LINE_AA)
    return out


def break_stroke(digit: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
    """Erase rows [start, stop) of a 28x28 digit: a pen skip cutting every stroke that crosses them."""
    out = digit.copy()
    out[rows[0] : rows[1]] = 0
    return out


def rgba_drawing(digit: np.ndarray, *, size: int = 280, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A digit drawn on a transparent web canvas: (size, size, 4) uint8 RGBA.

    Like a browser's canvas, untouched pixels are (0, 0, 0, 0) and stroke pixels have the pen colour
    with the stroke's coverage in alpha.
    """
    alpha = cv2.resize(digit, (size, size), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((size, size, 4), np.uint8)
    out[alpha > 0, :3] = color
    out[..., 3] = alpha
    return out


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """The bytes of ``image`` saved as ``fmt`` (PNG, JPEG, GIF, TIFF, WEBP, BMP)."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_roundtrip(image: np.ndarray, quality: int = 75) -> np.ndarray:
    """``image`` after being saved as a JPEG of the given quality and decoded again."""
    with Image.open(io.BytesIO(encode(image, "JPEG", quality=quality))) as im:
        return np.asarray(im.convert(Image.fromarray(image).mode))


# --------------------------------------------------------------------------------------------------
# Paper in a bigger picture: what a camera or a scanner adds around a page


def rotated(image: np.ndarray, degrees: float, *, fill: int = 20) -> np.ndarray:
    """``image`` (a page, grayscale uint8) turned by ``degrees`` counter-clockwise about its centre, the
    corners it uncovers filled with ``fill`` (a scanner's or an editor's dark fill), the same size."""
    h, w = image.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_LINEAR, borderValue=fill)


def scanner_edge(image: np.ndarray, *, sides: str = "l", width: int = 6, value: int = 25) -> np.ndarray:
    """``image`` with a dark band ``width`` pixels wide along the given sides ("l", "t", "r", "b"): the lid's
    shadow or the scanner bed beyond the page."""
    out = image.copy()
    for side in sides:
        band = {"l": np.s_[:, :width], "r": np.s_[:, -width:], "t": np.s_[:width, :], "b": np.s_[-width:, :]}[side]
        out[band] = value
    return out


def on_desk(
    page: np.ndarray,
    *,
    size: tuple[int, int] = (1600, 1200),
    degrees: float = 0.0,
    tilt: float = 0.0,
    desk: int = 60,
    seed: int = 0,
) -> np.ndarray:
    """A photo of ``page`` (grayscale uint8) lying on a darker, wood-grained desk, filling about half of a
    ``size`` (width, height) picture, turned by ``degrees`` and seen at a ``tilt`` (0: from straight above;
    0.2: its far edge a fifth shorter than its near one)."""
    rng = np.random.default_rng(seed)
    width, height = size
    ph, pw = page.shape[:2]
    scale = 0.6 * min(width / pw, height / ph)
    w, h = pw * scale, ph * scale
    cx, cy = width / 2 + rng.uniform(-0.05, 0.05) * width, height / 2 + rng.uniform(-0.05, 0.05) * height
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float32)
    corners[:2, 0] *= 1.0 - tilt  # the far edge looks shorter
    a = np.deg2rad(degrees)
    turn = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32)
    corners = corners @ turn.T + np.array([cx, cy], np.float32)
    source = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    warp = cv2.getPerspectiveTransform(source, corners)
    grain = cv2.resize(rng.normal(0, 1, (height // 8, 4)).astype(np.float32), (width, height))
    wood = desk + 12 * np.sin(np.linspace(0, 40, width, dtype=np.float32))[None, :] * 0.3 + 10 * grain
    wood += rng.normal(0, 3, (height, width)).astype(np.float32)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), warp, (width, height), flags=cv2.INTER_LINEAR)
    paper_ = cv2.warpPerspective(page.astype(np.float32), warp, (width, height), flags=cv2.INTER_LINEAR)
    return np.clip(mask * paper_ + (1 - mask) * wood, 0, 255).round().astype(np.uint8)
