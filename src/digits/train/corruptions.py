"""Corrupted copies of MNIST digits, at five severities: the test of how a model copes with what it was not shown.

Each corruption takes ``images`` (N, 28, 28) uint8, light ink on black as MNIST has it, a ``severity`` from 1
(mild) to 5 (severe) and a ``np.random.Generator``, and returns new (N, 28, 28) uint8 images; the same
generator state gives the same output. They are registered, in a fixed order, in :data:`CORRUPTIONS`.

The first fifteen are the MNIST-C benchmark's (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for
Computer Vision"), written here from the paper's descriptions and given five severities in the manner of
ImageNet-C (Hendrycks & Dietterich 2019); the other eleven are what real pictures of digits add: sensor
noise, focus, lighting, polarity, compression, resolution, pens, framing and the angle of a camera.
Each :class:`Corruption` carries its five parameter values (``levels``) and what they mean (``what``);
:func:`table` prints them all. Only numpy and OpenCV: this module imports no torch.

Every corruption works on the whole batch at once (numpy on (N, 28, 28) arrays, or OpenCV on the batch
stacked into one tall picture with enough black between the digits that no filter reaches from one
into the next): all 26 corruptions at all five severities of the 10,000 test digits took 30 s on one core
of the shared 2-core machine the benchmarks run on (benchmarks/robustness.py measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digits.spec import IMAGE_SIZE, PIXEL_SCALE

__all__ = ["CORRUPTIONS", "MNIST_C", "SEVERITIES", "Corruption", "corrupt", "table"]

SEVERITIES = (1, 2, 3, 4, 5)
_S = IMAGE_SIZE
_CENTRE = (IMAGE_SIZE - 1) / 2  # pixel-centre coordinates: the middle of a 28-pixel row is 13.5

Fn = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]  # (float images in [0, 1], level, rng)


@dataclass(frozen=True)
class Corruption:
    """One corruption: call it as ``corruption(images, severity, rng)``.

    ``levels[s - 1]`` is the parameter at severity ``s``; ``what`` says what that parameter is.
    """

    name: str
    what: str
    levels: tuple[Any, ...]
    fn: Fn
    mnist_c: bool  # one of the MNIST-C benchmark's fifteen

    def __call__(self, images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        """(N, 28, 28) uint8 -> (N, 28, 28) uint8, corrupted at ``severity`` (1 to 5)."""
        _check_images(images)
        if isinstance(severity, bool) or severity not in SEVERITIES:
            raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {severity!r}")
        if len(images) == 0:
            return images.copy()
        x = images.astype(np.float32) / np.float32(PIXEL_SCALE)
        out = self.fn(x, self.levels[severity - 1], rng)
        return np.clip(out * PIXEL_SCALE + 0.5, 0, 255).astype(np.uint8)


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (_S, _S):
        shape = getattr(images, "shape", None)
        raise ValueError(f"expected uint8 images of shape (N, {_S}, {_S}), got {getattr(images, 'dtype', '?')} {shape}")


# --- shared machinery ---------------------------------------------------------------------------------------------
def _stacked(x: np.ndarray, pad: int, op: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an OpenCV image operation to every image of ``x`` (N, 28, 28) in one call.

    Each image gets ``pad`` black pixels around it and the batch is stacked into one (N * (28 + 2 pad), 28 + 2 pad)
    picture; with ``pad`` at least the operation's reach, no image sees another, so this equals ``op`` on each
    image with a black surround, at the cost of one call.
    """
    n, side = len(x), _S + 2 * pad
    tall = np.pad(x, ((0, 0), (pad, pad), (pad, pad))).reshape(n * side, side)
    return op(np.ascontiguousarray(tall)).reshape(n, side, side)[:, pad : pad + _S, pad : pad + _S]


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    reach = math.ceil(4 * sigma) + 1
    return _stacked(x, reach, lambda a: cv2.GaussianBlur(a, (2 * reach + 1, 2 * reach + 1), sigma))


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each image of ``x`` convolved with ``kernel`` (odd sides), black beyond its border."""
    reach = max(kernel.shape) // 2 + 1
    return _stacked(x, reach, lambda a: cv2.filter2D(a, -1, kernel.astype(np.float32)))


def _remap(x: np.ndarray, src_x: np.ndarray, src_y: np.ndarray) -> np.ndarray:
    """Bilinear resampling: output pixel (i, j) of image n is ``x[n]`` read at (src_y, src_x)[n, i, j].

    Coordinates are in pixels (0 is the first pixel's centre); what lies outside an image reads as black.
    One ``cv2.remap`` per image (about 10 us each) is several times faster than numpy's gathers.
    """
    out = np.empty_like(x)
    map_x = np.broadcast_to(src_x, x.shape).astype(np.float32)
    map_y = np.broadcast_to(src_y, x.shape).astype(np.float32)
    for i in range(len(x)):
        out[i] = cv2.remap(x[i], map_x[i], map_y[i], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (28, 28) of x and y, relative to the image centre."""
    c = np.arange(_S, dtype=np.float64) - _CENTRE
    return np.meshgrid(c, c)


def _affine(x: np.ndarray, matrix: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Move the content of each image by ``matrix`` (N, 2, 2) about the centre, then by ``shift`` (N, 2) pixels.

    Content at p (centred, x right, y down) goes to ``matrix @ p + shift``; the output samples the input at
    ``matrix^-1 (q - shift)``.
    """
    gx, gy = _grid()
    if shift is not None:
        gx = gx[None] - shift[:, 0, None, None]
        gy = gy[None] - shift[:, 1, None, None]
    inv = np.linalg.inv(matrix)  # (N, 2, 2)
    src_x = inv[:, 0, 0, None, None] * gx + inv[:, 0, 1, None, None] * gy
    src_y = inv[:, 1, 0, None, None] * gx + inv[:, 1, 1, None, None] * gy
    return _remap(x, src_x + _CENTRE, src_y + _CENTRE)


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _upsample_matrix(n_in: int) -> np.ndarray:
    """(28, n_in) bilinear interpolation from n_in lattice points spanning the image to its 28 pixels."""
    pos = np.linspace(0, n_in - 1, _S)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((_S, n_in))
    m[np.arange(_S), lo] = 1 - frac
    m[np.arange(_S), lo + 1] = frac
    return m


def _draw(x: np.ndarray, ends: np.ndarray, value: float = 1.0, step: float = 0.3, dots: float = 0.0) -> np.ndarray:
    """Draw one-pixel segments into each image: ``ends`` (N, K, 2, 2) holds K segments' (x, y) ends per image.

    With ``dots`` > 0 only the points within every ``dots`` pixels' first half are drawn: a dotted line.
    """
    n, k = ends.shape[:2]
    length = np.linalg.norm(ends[:, :, 1] - ends[:, :, 0], axis=-1)  # (N, K)
    samples = int(np.ceil(length.max() / step)) + 1
    t = np.linspace(0.0, 1.0, samples)  # (T,)
    pts = ends[:, :, None, 0] + t[None, None, :, None] * (ends[:, :, None, 1] - ends[:, :, None, 0])  # (N, K, T, 2)
    keep = np.ones((n, k, samples), bool)
    if dots:
        along = t[None, None, :] * length[:, :, None]
        keep = (along % dots) < dots / 2
    px = np.rint(pts[..., 0]).astype(np.int64)
    py = np.rint(pts[..., 1]).astype(np.int64)
    keep &= (px >= 0) & (px < _S) & (py >= 0) & (py < _S)
    idx = np.broadcast_to(np.arange(n)[:, None, None], keep.shape)
    out = x.copy()
    out[idx[keep], py[keep], px[keep]] = value
    return out


def _edge_points(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random points (..., 2) on the image's border, in pixel coordinates."""
    side = rng.integers(0, 4, shape)
    along = rng.uniform(0, _S - 1, shape)
    x = np.select([side == 0, side == 1, side == 2], [along, _S - 1.0, along], 0.0)
    y = np.select([side == 0, side == 1, side == 2], [0.0, along, _S - 1.0], along)
    return np.stack([x, y], axis=-1)


# --- MNIST-C's fifteen --------------------------------------------------------------------------------------------
def _shot_noise(x: np.ndarray, photons: Any, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: each pixel counts Poisson(value x photons) photons."""
    c = float(photons)
    return rng.poisson(x * c).astype(np.float32) / np.float32(c)


def _impulse_noise(x: np.ndarray, amount: Any, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a share ``amount`` of the pixels set to black or white, half each."""
    hit = rng.random(x.shape) < float(amount)
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float32), x)


def _glass_blur(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    """Frosted glass: blur, scatter each pixel from a random neighbour up to ``delta`` away ``rounds`` times, blur."""
    sigma, delta, rounds = level
    out = _gaussian_blur(x, sigma)
    n = len(x)
    rows, cols = np.meshgrid(np.arange(_S), np.arange(_S), indexing="ij")
    first = (np.arange(n) * _S * _S)[:, None, None]  # where each image starts in the flat batch
    for _ in range(rounds):
        dy = rng.integers(-delta, delta + 1, (n, _S, _S))
        dx = rng.integers(-delta, delta + 1, (n, _S, _S))
        sy, sx = np.clip(rows + dy, 0, _S - 1), np.clip(cols + dx, 0, _S - 1)
        out = out.reshape(-1)[first + sy * _S + sx]
    return _gaussian_blur(out, sigma)


_ANGLES = 12  # motion blur directions: the batch is filtered once per direction


def _motion_blur(x: np.ndarray, length: Any, rng: np.random.Generator) -> np.ndarray:
    """A straight camera shake: each image averaged along a line of ``length`` pixels in a random direction."""
    size = float(length)
    which = rng.integers(0, _ANGLES, len(x))
    out = np.empty_like(x)
    k = 2 * math.ceil(size / 2) + 1
    for i in range(_ANGLES):
        chosen = which == i
        if not chosen.any():
            continue
        angle = math.pi * i / _ANGLES
        kernel = np.zeros((k, k), np.float32)
        t = np.linspace(-(size - 1) / 2, (size - 1) / 2, 64)
        for px, py in zip(k // 2 + t * math.cos(angle), k // 2 + t * math.sin(angle)):  # bilinear splats
            x0, y0 = int(math.floor(px)), int(math.floor(py))
            fx, fy = px - x0, py - y0
            for ddx, ddy, w in (
                (0, 0, (1 - fx) * (1 - fy)),
                (1, 0, fx * (1 - fy)),
                (0, 1, (1 - fx) * fy),
                (1, 1, fx * fy),
            ):
                if 0 <= x0 + ddx < k and 0 <= y0 + ddy < k:
                    kernel[y0 + ddy, x0 + ddx] += w
        out[chosen] = _convolve(x[chosen], kernel / kernel.sum())
    return out


def _shear(x: np.ndarray, amount: Any, rng: np.random.Generator) -> np.ndarray:
    """Shear along x or y (at random) by ``amount`` pixels per pixel, either sign."""
    n = len(x)
    k = float(amount) * _signs(rng, n)
    along_x = rng.random(n) < 0.5
    m = np.tile(np.eye(2), (n, 1, 1))
    m[:, 0, 1] = np.where(along_x, k, 0.0)
    m[:, 1, 0] = np.where(along_x, 0.0, k)
    return _affine(x, m)


def _scale(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    """Zoom about the centre: shrink by the first factor or enlarge by the second, half each."""
    shrink, enlarge = level
    n = len(x)
    zoom = np.where(rng.random(n) < 0.5, shrink, enlarge)
    return _affine(x, zoom[:, None, None] * np.eye(2))


def _rotation(angle_deg: np.ndarray) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # y down: counter-clockwise as shown


def _rotate(x: np.ndarray, degrees: Any, rng: np.random.Generator) -> np.ndarray:
    """Rotation about the centre by ``degrees``, either way."""
    return _affine(x, _rotation(float(degrees) * _signs(rng, len(x))))


def _brightness(x: np.ndarray, lift: Any, rng: np.random.Generator) -> np.ndarray:
    """Every pixel lifted by ``lift`` (of full scale), clipped: a brighter background, less contrast."""
    return x + float(lift)


def _translate(x: np.ndarray, pixels: Any, rng: np.random.Generator) -> np.ndarray:
    """The digit moved ``pixels`` in a random direction (part of it may leave the frame)."""
    n = len(x)
    a = rng.uniform(0, 2 * math.pi, n)
    shift = float(pixels) * np.stack([np.cos(a), np.sin(a)], -1)
    return _affine(x, np.tile(np.eye(2), (n, 1, 1)), shift)


def _stripe(x: np.ndarray, width: Any, rng: np.random.Generator) -> np.ndarray:
    """A vertical band ``width`` pixels wide, somewhere across the middle, inverted."""
    w = int(width)
    left = rng.integers(_S // 2 - 4 - w // 2, _S // 2 + 4 - w // 2 + 1, len(x))
    cols = np.arange(_S)
    band = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + w)  # (N, 28)
    return np.where(band[:, None, :], 1.0 - x, x)


def _plasma(rng: np.random.Generator, n: int, decay: float) -> np.ndarray:
    """(N, 28, 28) fractal clouds in [0, 1]: octaves of interpolated noise, each finer one ``decay`` times weaker."""
    out = np.zeros((n, _S, _S), np.float64)
    for octave in range(5):
        lattice = 2**octave + 1
        m = _upsample_matrix(lattice)
        out += (m @ rng.uniform(-1, 1, (n, lattice, lattice)) @ m.T) / decay**octave
    lo, hi = out.min(axis=(1, 2), keepdims=True), out.max(axis=(1, 2), keepdims=True)
    return ((out - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


def _fog(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    """Clouds of strength ``density`` added (fractal, finer octaves ``decay`` times weaker), rescaled to fit."""
    density, decay = level
    return (x + density * _plasma(rng, len(x), decay)) / (1 + density)


def _spatter(x: np.ndarray, cover: Any, rng: np.random.Generator) -> np.ndarray:
    """Splashes of ink: blobs covering about a share ``cover`` of the picture, of random brightness."""
    n = len(x)
    field = _gaussian_blur(rng.normal(size=(n, _S, _S)).astype(np.float32), 1.2)
    cut = np.quantile(field.reshape(n, -1), 1 - float(cover), axis=1)[:, None, None]
    spread = field.reshape(n, -1).std(axis=1)[:, None, None] + 1e-6
    blob = np.clip((field - cut) / (0.3 * spread) + 0.5, 0, 1)  # soft-edged blobs
    shade = rng.uniform(0.5, 1.0, (n, 1, 1)).astype(np.float32)
    return np.maximum(x, blob * shade)


def _dotted_line(x: np.ndarray, lines: Any, rng: np.random.Generator) -> np.ndarray:
    """``lines`` dotted white lines across the picture, between random points on its border."""
    ends = _edge_points(rng, (len(x), int(lines), 2))
    return _draw(x, ends, dots=3.0)


def _zigzag(x: np.ndarray, level: Any, rng: np.random.Generator) -> np.ndarray:
    """White zigzags (``level``: how many, how far each swings either side in px) across the picture, at random."""
    count, amplitude = level
    n, k = len(x), int(count)
    turns = 6
    start = rng.uniform(4, _S - 5, (n, k))
    slope = rng.uniform(-0.4, 0.4, (n, k))
    swing = amplitude * rng.uniform(0.75, 1.25, (n, k))
    xs = np.linspace(0, _S - 1, turns + 1)  # (T,)
    ys = start[..., None] + slope[..., None] * xs + swing[..., None] * np.where(np.arange(turns + 1) % 2, 1, -1)
    points = np.stack([np.broadcast_to(xs, ys.shape), ys], -1)  # (N, K, T, 2)
    vertical = rng.random((n, k)) < 0.5  # half the zigzags run top to bottom
    points = np.where(vertical[..., None, None], points[..., ::-1], points)
    ends = np.stack([points[:, :, :-1], points[:, :, 1:]], axis=3).reshape(n, k * turns, 2, 2)
    return _draw(x, ends)


def _canny_edges(x: np.ndarray, weight: Any, rng: np.random.Generator) -> np.ndarray:
    """Canny's edges (thresholds 50, 150) mixed in with weight ``weight``: at 1 only the outline is left."""
    u8 = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    edges = _stacked(u8, 2, lambda a: cv2.Canny(a, 50, 150)).astype(np.float32) / 255
    w = float(weight)
    return (1 - w) * x + w * edges


# --- what real pictures add -------------------------------------------------------------------------------------
def _gaussian_noise(x: np.ndarray, std: Any, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: gaussian of standard deviation ``std`` (of full scale) added to every pixel."""
    return x + rng.normal(0.0, float(std), x.shape).astype(np.float32)


def _defocus_blur(x: np.ndarray, radius: Any, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: each image averaged over a disc of ``radius`` pixels (anti-aliased edge)."""
    r = float(radius)
    k = math.ceil(r)
    fine = (np.arange(-k, k + 1, 0.125) + 0.0625)[None]  # 8 x 8 samples per pixel
    inside = (fine**2 + fine.T**2 <= r * r).astype(np.float32)
    kernel = inside.reshape(2 * k + 1, 8, 2 * k + 1, 8).mean(axis=(1, 3))
    return _convolve(x, kernel / kernel.sum())


def _contrast(x: np.ndarray, factor: Any, rng: np.random.Generator) -> np.ndarray:
    """Each image's differences from its own mean brightness multiplied by ``factor``: a faded print."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    return (x - mean) * float(factor) + mean


def _inversion(x: np.ndarray, share: Any, rng: np.random.Generator) -> np.ndarray:
    """Dark ink on a light page: the image mixed with its negative, ``share`` of the negative (1: the negative)."""
    t = float(share)
    return (1 - t) * x + t * (1 - x)


def _jpeg(x: np.ndarray, quality: Any, rng: np.random.Generator) -> np.ndarray:
    """Saved as a JPEG at ``quality`` (OpenCV's 0-100 scale) and read back."""
    u8 = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = np.empty_like(u8)
    for i, img in enumerate(u8):
        ok, data = cv2.imencode(".jpg", img, params)
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is None:
            raise RuntimeError("OpenCV could not encode and decode a JPEG")
        out[i] = decoded
    return out.astype(np.float32) / 255


def _area_matrix(n_out: int) -> np.ndarray:
    """(n_out, 28): area averaging from 28 pixels to n_out, each output the mean of the input it covers."""
    edges = np.linspace(0, _S, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(_S)[None]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _pixelate(x: np.ndarray, side: Any, rng: np.random.Generator) -> np.ndarray:
    """Seen at ``side`` x ``side`` pixels (area averages), shown back at 28 x 28 as blocks (nearest)."""
    s = int(side)
    down = _area_matrix(s)  # (s, 28)
    up = np.zeros((_S, s))
    up[np.arange(_S), np.minimum((np.arange(_S) + 0.5) * s / _S, s - 1).astype(int)] = 1
    m = (up @ down).astype(np.float32)  # (28, 28)
    return m @ x @ m.T


_ELASTIC_SIGMA = 4.0  # smoothness of the displacement field in pixels (Simard et al. 2003)


def _elastic(x: np.ndarray, alpha: Any, rng: np.random.Generator) -> np.ndarray:
    """Simard et al. 2003's elastic distortion: uniform noise smoothed by a gaussian of 4 pixels, times ``alpha``.

    As in digits.train.augment, the noise is drawn on a lattice every 2 pixels (divided by 2, which keeps the
    field's statistics) reaching 3 sigma past the borders, so the field is as strong at the edge as in the
    middle, and smoothed onto the pixels by two matrix products.
    """
    n, stride, margin = len(x), 2, 3 * math.ceil(_ELASTIC_SIGMA)
    count = (_S - 1 + 2 * margin) // stride + 1
    d = np.arange(_S)[:, None] + margin - stride * np.arange(count)[None, :]  # pixel to lattice point, px
    weights = np.exp(-(d**2) / (2 * _ELASTIC_SIGMA**2))
    m = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)  # (28, count)
    a = float(alpha) / stride
    noise = rng.uniform(-a, a, (n * 2, count, count)).astype(np.float32)
    # m @ noise @ m.T for every image, as two large products (numpy's batched small products are slow).
    half = (noise.reshape(-1, count) @ m.T).reshape(-1, count, _S)  # (2N, count, 28)
    field = (half.transpose(0, 2, 1).reshape(-1, count) @ m.T).reshape(n, 2, _S, _S).transpose(0, 1, 3, 2)
    rows, cols = np.meshgrid(np.arange(_S), np.arange(_S), indexing="ij")
    return _remap(x, cols + field[:, 0], rows + field[:, 1])


_PEN = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # one step moves a stroke's edges one pixel out or in


def _pen(x: np.ndarray, radius: float) -> np.ndarray:
    """Strokes ``radius`` pixels broader on each side (narrower for a negative radius).

    Whole pixels are steps of grey dilation or erosion by a 3 x 3 cross; a fraction f of a pixel is the mix
    (1 - f) of the last step and f of one more, which moves an anti-aliased edge by about f of a pixel.
    """
    op = cv2.MORPH_DILATE if radius > 0 else cv2.MORPH_ERODE
    whole, f = divmod(abs(radius), 1.0)
    steps = int(whole) + (1 if f > 1e-9 else 0)

    def morph(tall: np.ndarray) -> np.ndarray:
        return cv2.morphologyEx(tall, op, _PEN, iterations=steps, borderType=cv2.BORDER_CONSTANT, borderValue=0)

    if steps == 0:
        return x.copy()
    last = _stacked(x, steps + 1, morph)
    if f <= 1e-9:
        return last
    before = (
        x
        if steps == 1
        else _stacked(
            x,
            steps,
            lambda t: cv2.morphologyEx(
                t, op, _PEN, iterations=steps - 1, borderType=cv2.BORDER_CONSTANT, borderValue=0
            ),
        )
    )
    return (1 - f) * before + f * last


def _thick_strokes(x: np.ndarray, radius: Any, rng: np.random.Generator) -> np.ndarray:
    """A broader pen: every stroke ``radius`` pixels wider on each side (grey dilation)."""
    return _pen(x, float(radius))


def _thin_strokes(x: np.ndarray, radius: Any, rng: np.random.Generator) -> np.ndarray:
    """A finer pen: every stroke ``radius`` pixels narrower on each side (grey erosion); thin ones fade."""
    return _pen(x, -float(radius))


def _ink_boxes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's ink box as (x0, y0) and (x1, y1), pixel edges in centred coordinates (N, 2); the frame if no ink."""
    ink = np.asarray(x > 0.1)
    cols, rows = np.asarray(ink.any(axis=1)), np.asarray(ink.any(axis=2))  # (N, 28)
    idx = np.arange(_S)

    def extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        empty = ~mask.any(axis=1)
        first = np.where(empty, 0, np.where(mask, idx, _S).min(axis=1))
        last = np.where(empty, _S, np.where(mask, idx + 1, 0).max(axis=1))
        return first - _S / 2, last - _S / 2

    (x0, x1), (y0, y1) = extent(cols), extent(rows)
    return np.stack([x0, y0], -1).astype(np.float64), np.stack([x1, y1], -1).astype(np.float64)


_OFF_CENTRE_ZOOM = 0.8  # the digit in a loose crop: smaller than MNIST's 20-pixel box


def _off_centre(x: np.ndarray, push: Any, rng: np.random.Generator) -> np.ndarray:
    """A loose crop: the digit shrunk to 0.8 and moved in a random direction ``push`` of the way to the frame.

    At 1 its ink box meets the frame's edge; the whole digit always stays in the picture.
    """
    n, t = len(x), float(push)
    lo, hi = _ink_boxes(x)  # (N, 2) each, centred coordinates
    lo, hi = lo * _OFF_CENTRE_ZOOM, hi * _OFF_CENTRE_ZOOM  # after shrinking about the centre
    a = rng.uniform(0, 2 * math.pi, n)
    d = np.stack([np.cos(a), np.sin(a)], -1)  # (N, 2)
    room = np.where(d > 0, _S / 2 - hi, -_S / 2 - lo)  # how far the box may move along each axis, signed
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(np.abs(d) > 1e-9, room / d, np.inf)
    step = t * np.clip(reach.min(axis=1), 0, None)  # (N,) the first side meets the frame at t = 1
    return _affine(x, _OFF_CENTRE_ZOOM * np.tile(np.eye(2), (n, 1, 1)), d * step[:, None])


def _perspective(x: np.ndarray, pixels: Any, rng: np.random.Generator) -> np.ndarray:
    """A camera at an angle: the frame's four corners moved 0.5 to 1 times ``pixels`` in random directions."""
    n, p = len(x), float(pixels)
    corners = np.array([[-0.5, -0.5], [_S - 0.5, -0.5], [_S - 0.5, _S - 0.5], [-0.5, _S - 0.5]])  # (4, 2) x, y
    a = rng.uniform(0, 2 * math.pi, (n, 4))
    r = p * rng.uniform(0.5, 1.0, (n, 4))
    moved = corners + np.stack([np.cos(a), np.sin(a)], -1) * r[..., None]  # (N, 4, 2): where each corner goes
    # The homography taking the moved corners (output) back to the frame's (input): 8 unknowns, 4 point pairs.
    u, v = moved[..., 0], moved[..., 1]  # (N, 4)
    X, Y = np.broadcast_to(corners[:, 0], u.shape), np.broadcast_to(corners[:, 1], u.shape)
    zeros, ones = np.zeros_like(u), np.ones_like(u)
    rows_x = np.stack([u, v, ones, zeros, zeros, zeros, -u * X, -v * X], -1)  # (N, 4, 8)
    rows_y = np.stack([zeros, zeros, zeros, u, v, ones, -u * Y, -v * Y], -1)
    system = np.concatenate([rows_x, rows_y], axis=1)  # (N, 8, 8)
    h = np.linalg.solve(system, np.concatenate([X, Y], axis=1)[..., None])[..., 0]  # (N, 8)
    h = np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)
    cols, rows = np.meshgrid(np.arange(_S, dtype=np.float64), np.arange(_S, dtype=np.float64))
    q = np.stack([cols, rows, np.ones_like(cols)]).reshape(3, -1)  # (3, 784)
    src = h @ q  # (N, 3, 784)
    src_x = (src[:, 0] / src[:, 2]).reshape(n, _S, _S)
    src_y = (src[:, 1] / src[:, 2]).reshape(n, _S, _S)
    return _remap(x, src_x, src_y)


# --- the registry -------------------------------------------------------------------------------------------------
def _c(name: str, what: str, levels: Sequence[Any], fn: Fn, mnist_c: bool) -> tuple[str, Corruption]:
    assert len(levels) == len(SEVERITIES), name
    return name, Corruption(name, what, tuple(levels), fn, mnist_c)


CORRUPTIONS: dict[str, Corruption] = dict(
    [
        # MNIST-C (Mu & Gilmer 2019), in the paper's order
        _c("shot_noise", "photons at full brightness (Poisson)", (60, 30, 15, 8, 4), _shot_noise, True),
        _c(
            "impulse_noise",
            "share of pixels set to black or white",
            (0.03, 0.06, 0.1, 0.15, 0.22),
            _impulse_noise,
            True,
        ),
        _c(
            "glass_blur",
            "(sigma px, scatter px, rounds)",
            ((0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.8, 2, 2), (0.9, 2, 3)),
            _glass_blur,
            True,
        ),
        _c("motion_blur", "line length in px, random direction", (2.5, 3.5, 4.5, 6.0, 7.5), _motion_blur, True),
        _c("shear", "px per px, x or y, either sign", (0.15, 0.3, 0.45, 0.6, 0.75), _shear, True),
        _c(
            "scale",
            "zoom: shrink or enlarge factor, half each",
            ((0.85, 1.1), (0.75, 1.2), (0.65, 1.3), (0.55, 1.4), (0.45, 1.5)),
            _scale,
            True,
        ),
        _c("rotate", "degrees, either way", (10, 20, 30, 40, 50), _rotate, True),
        _c("brightness", "lift of every pixel (of full scale)", (0.1, 0.2, 0.3, 0.4, 0.5), _brightness, True),
        _c("translate", "px in a random direction", (2, 3, 4, 5, 6), _translate, True),
        _c("stripe", "width of an inverted vertical band, px", (1, 2, 3, 4, 5), _stripe, True),
        _c("fog", "(density, octave decay)", ((0.3, 2.0), (0.5, 1.9), (0.7, 1.8), (0.9, 1.7), (1.2, 1.6)), _fog, True),
        _c("spatter", "share of the picture splashed", (0.03, 0.06, 0.09, 0.13, 0.18), _spatter, True),
        _c("dotted_line", "dotted lines between border points", (1, 2, 3, 4, 5), _dotted_line, True),
        _c("zigzag", "(zigzags, swing px)", ((1, 1.5), (1, 2.5), (2, 1.5), (2, 2.5), (3, 2.5)), _zigzag, True),
        _c("canny_edges", "weight of Canny's edges against the image", (0.2, 0.4, 0.6, 0.8, 1.0), _canny_edges, True),
        # what real pictures add
        _c("gaussian_noise", "std (of full scale)", (0.08, 0.14, 0.2, 0.28, 0.38), _gaussian_noise, False),
        _c("defocus_blur", "disc radius, px", (1.0, 1.5, 2.0, 2.5, 3.0), _defocus_blur, False),
        _c("contrast", "factor on differences from the mean", (0.5, 0.35, 0.25, 0.15, 0.1), _contrast, False),
        _c("inversion", "share of the negative mixed in", (0.6, 0.7, 0.8, 0.9, 1.0), _inversion, False),
        _c("jpeg", "JPEG quality", (30, 20, 12, 8, 5), _jpeg, False),
        _c("pixelate", "side the digit is seen at, px", (20, 16, 13, 11, 9), _pixelate, False),
        _c("elastic", "alpha, px (sigma 4 px)", (8, 14, 20, 28, 36), _elastic, False),
        _c("thick_strokes", "px added to each side of a stroke", (0.5, 0.75, 1.0, 1.5, 2.0), _thick_strokes, False),
        _c("thin_strokes", "px taken from each side of a stroke", (0.2, 0.4, 0.6, 0.8, 1.0), _thin_strokes, False),
        _c("off_centre", "share of the way to the frame (zoom 0.8)", (0.2, 0.4, 0.6, 0.8, 1.0), _off_centre, False),
        _c("perspective", "corner displacement, px", (1.5, 3.0, 4.5, 6.0, 7.5), _perspective, False),
    ]
)

MNIST_C = tuple(name for name, c in CORRUPTIONS.items() if c.mnist_c)


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``images`` (N, 28, 28) uint8 under the corruption ``name`` at ``severity``; ValueError naming the choices."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](images, severity, rng)


def table() -> str:
    """Every corruption's parameter at each severity, one line each (the reference in benchmarks/README.md)."""

    def shown(value: object) -> str:
        return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    width = max(map(len, CORRUPTIONS))
    lines = [f"{'corruption':<{width}}  {'1':>14} {'2':>14} {'3':>14} {'4':>14} {'5':>14}  parameter"]
    for name, c in CORRUPTIONS.items():
        cells = " ".join(f"{shown(v):>14}" for v in c.levels)
        lines.append(f"{name:<{width}}  {cells}  {c.what}{' (MNIST-C)' if c.mnist_c else ''}")
    return "\n".join(lines)
