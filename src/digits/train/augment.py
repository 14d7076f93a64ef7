"""Batched data augmentation for (B, C, H, W) image tensors in [0, 1], light ink on dark.

Every transform works on the whole batch at once, with no Python loop over images, so a 256-image
batch costs about 1 ms (affine) to 5 ms (everything) on one CPU core (benchmarks/augment_speed.py),
and it runs on whichever device the batch lives on.

Other capture pipelines first: a digit stretched towards filling its box (fill). Then geometry (rotation,
zoom, shift, shear, flips and elastic distortion) becomes ONE sampling grid per image and ONE bilinear
``grid_sample`` for the batch, so an image is interpolated once however many geometric transforms are on.
Then, in this order: a low-resolution scan (lowres), thicker or thinner strokes (stroke), blur, random
erasing, additive noise.

All randomness comes from the ``generator`` given to ``augment``: on a given device, the same
generator state and the same batch give the same output.

Geometric conventions (pixels, origin at the image centre, x to the right, y down): a positive angle
turns the digit counter-clockwise as it is displayed, a positive shift moves it right / down, a zoom
factor above 1 enlarges it, a positive shear slants its top to the right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from digits.train.config import AugmentConfig  # what to apply: with the other configs, so the CLI reads it torch-free

__all__ = ["augment", "augment_pair"]

# Random erasing: the erased area is this fraction of the image, its aspect ratio (h / w) is drawn
# log-uniformly in [ERASE_RATIO, 1 / ERASE_RATIO]. Values from Zhong et al. 2017, "Random Erasing Data
# Augmentation" (s_l = 0.02, s_h = 0.4, r_1 = 0.3). The rectangle is set to 0, the background.
ERASE_AREA = (0.02, 0.4)
ERASE_RATIO = 0.3
# Blur: the gaussian's sigma (pixels) is uniform in this range; on a 28x28 digit 0.5 softens the
# strokes and 1.0 makes them look like a scanned pencil digit, still clearly readable.
BLUR_SIGMA = (0.5, 1.0)
# Fill: the digit is stretched towards filling a square of this side, centred, by a fraction uniform in
# [0, 1] of the way (1: NIST's normalisation, as in optdigits and scikit-learn's digits, aspect ratio lost).
FILL_BOX = 20
# Low resolution: the digit as a scan this many pixels across its box would show it (optdigits: 8; a photo
# of a digit a few millimetres tall: 10-16), upsampled back, then its strokes brought back to full
# brightness as digits.reading.normalize does.
LOWRES_SIDES = (8, 10, 12, 14, 16)
# Lighting: the background and the ink each get a level in [0, 1] at least LIGHTING_CONTRAST apart, either way
# round (dark ink on a light page as often as light on dark); half the pictures also get clouds, a smooth
# field of strength up to LIGHTING_CLOUDS drawn on a LIGHTING_LATTICE x LIGHTING_LATTICE lattice.
LIGHTING_CONTRAST = 0.15
LIGHTING_CLOUDS = 1.5
LIGHTING_LATTICE = 5
# Lines: up to LINES_MAX strokes per picture, each LINES_TURNS straight pieces between two points near the
# border, swinging up to LINES_SWING pixels either side (0: a straight line), half-width LINES_WIDTH px; a
# third of them dotted. Half the chosen pictures get blots or an inverted band instead.
LINES_MAX = 3
LINES_TURNS = 6
LINES_SWING = 3.0
LINES_WIDTH = (0.4, 1.2)
# Scatter: each pixel comes from a neighbour up to this many pixels away in each axis.
SCATTER_REACH = 2


def augment(x: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """A randomly augmented copy of the batch ``x`` (B, C, H, W), values in [0, 1].

    The result has the shape, dtype, device and memory format (e.g. channels_last) of ``x``; with
    every augmentation off, ``x`` itself is returned. Work is done in float32 (float64 for float64
    input) outside any autocast region, then cast back. Random numbers come from ``generator``
    (either on x's device or on the CPU) or, when it is None, from torch's default generator.
    """
    return augment_pair(x, cfg, generator)[1]


def augment_pair(x: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(shaped, augmented)``: the batch given only the changes of shape (fill, geometry, low resolution,
    stroke), and the same pictures with the rest drawn on them too (outlines, scatter, blur, lines, lighting,
    erasing, noise, salt and pepper; none of it on a share ``cfg.clean`` of them). What :func:`augment` returns
    is the second; the first is the clean picture of the same digit, for a teacher to look at."""
    if x.dim() != 4:
        raise ValueError(f"augment expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"augment expects a floating point batch in [0, 1], got {x.dtype}")
    if not cfg.enabled or x.shape[0] == 0:
        return x, x
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    rng = _Random(generator, x.device, dtype)
    # Autocast would run the matmuls below in bf16; pixel coordinates need float32.
    with torch.autocast(device_type=x.device.type, enabled=False):
        shaped = _shape(x.to(dtype), cfg, rng)
        out = _marks(shaped, cfg, rng)
        if cfg.clean:
            out = _chosen(out, shaped, cfg.clean, rng)
    # empty_like keeps x's strides (channels_last stays channels_last), copy_ casts back to x.dtype.
    return torch.empty_like(x).copy_(shaped), torch.empty_like(x).copy_(out)


def _shape(out: Tensor, cfg: AugmentConfig, rng: _Random) -> Tensor:
    """The changes of shape: what another writer, pen or scanner makes of the same digit."""
    batch, _, height, width = out.shape
    if cfg.fill:
        out = _random_fill(out, cfg.fill, rng)
    if cfg.geometric:
        theta = _random_theta(cfg, batch, height, width, rng)  # (B, 2, 3)
        displacement = None
        if cfg.elastic:
            displacement = _elastic_displacement(batch, height, width, cfg.elastic, cfg.elastic_sigma, rng)
        out = F.grid_sample(
            out,
            _sampling_grid(theta, height, width, displacement),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )  # (B, C, H, W)
    if cfg.lowres:
        out = _random_lowres(out, cfg.lowres, rng)
    if cfg.stroke:
        out = _random_stroke(out, cfg.stroke, rng)
    return out


def _marks(out: Tensor, cfg: AugmentConfig, rng: _Random) -> Tensor:
    """What a picture does to a digit on top of its shape: outlines, scatter, blur, marks, lighting, noise."""
    if cfg.outline:
        out = _random_outline(out, cfg.outline, rng)
    if cfg.scatter:
        out = _random_scatter(out, cfg.scatter, rng)
    if cfg.blur:
        out = _random_blur(out, cfg.blur, rng)
    if cfg.lines:
        out = _random_lines(out, cfg.lines, rng)
    if cfg.lighting:
        out = _random_lighting(out, cfg.lighting, rng)
    if cfg.erase:
        out = _random_erase(out, cfg.erase, rng)
    if cfg.noise:
        out = (out + cfg.noise * rng.normal(out.shape)).clamp_(0.0, 1.0)
    if cfg.impulse:
        out = _random_impulse(out, cfg.impulse, rng)
    return out


class _Random:
    """Draws random tensors from one generator and delivers them on ``device`` in ``dtype``.

    A CPU generator may serve a CUDA batch: numbers are drawn on the CPU and moved, so a run can
    keep one CPU generator for everything.
    """

    def __init__(self, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> None:
        self.generator = generator
        self.draw_device = generator.device if generator is not None else device
        self.device = device
        self.dtype = dtype

    def uniform(self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.draw_device, dtype=torch.float32)
        return (u.to(self.device, self.dtype) * (high - low)) + low

    def normal(self, shape: tuple[int, ...] | torch.Size) -> Tensor:
        n = torch.randn(tuple(shape), generator=self.generator, device=self.draw_device, dtype=torch.float32)
        return n.to(self.device, self.dtype)


def _random_theta(cfg: AugmentConfig, batch: int, height: int, width: int, rng: _Random) -> Tensor:
    """Draw per-image rotation, zoom, shear, shift and flips; return their sampling matrices (B, 2, 3)."""
    zeros = torch.zeros(batch, device=rng.device, dtype=rng.dtype)
    angle = rng.uniform((batch,), -cfg.rotate, cfg.rotate) if cfg.rotate else zeros
    zoom = rng.uniform((batch,), 1.0 - cfg.scale, 1.0 + cfg.scale) if cfg.scale else zeros + 1.0
    shear = rng.uniform((batch,), -cfg.shear, cfg.shear) if cfg.shear else zeros
    if cfg.shift:
        size = torch.tensor([width, height], device=rng.device, dtype=rng.dtype)
        shift = rng.uniform((batch, 2), -cfg.shift, cfg.shift) * size  # (B, 2) pixels
    else:
        shift = torch.zeros(batch, 2, device=rng.device, dtype=rng.dtype)
    flip = torch.ones(batch, 2, device=rng.device, dtype=rng.dtype)
    if cfg.hflip:
        flip[:, 0] = torch.where(rng.uniform((batch,)) < 0.5, -1.0, 1.0)
    if cfg.vflip:
        flip[:, 1] = torch.where(rng.uniform((batch,)) < 0.5, -1.0, 1.0)
    return _affine_theta(angle, zoom, shear, shift, flip, height, width)


def _affine_theta(
    angle: Tensor, zoom: Tensor, shear: Tensor, shift: Tensor, flip: Tensor, height: int, width: int
) -> Tensor:
    """Sampling matrices (B, 2, 3) in ``F.affine_grid``'s convention (align_corners=False).

    The forward transform moves the content at pixel p (centred coordinates) to
    ``R(angle) @ Shear(shear) @ zoom * diag(flip) @ p + shift``; angle and shear in degrees (B,),
    zoom (B,), shift in pixels (B, 2) as (dx, dy), flip (B, 2) of +-1. A grid samples the INPUT
    at each output pixel, so theta is the inverse transform, rescaled to [-1, 1] coordinates.
    """
    a = torch.deg2rad(angle)
    cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(torch.deg2rad(shear))
    # R @ Shear @ (zoom * diag(flip)) written out; with y pointing down, [[c, s], [-s, c]] turns the
    # picture counter-clockwise.   R = [[c, s], [-s, c]], Shear = [[1, -tan], [0, 1]]
    # (a point above the centre, y < 0, moves right for a positive shear).
    m00 = cos * zoom * flip[:, 0]
    m01 = (-cos * tan + sin) * zoom * flip[:, 1]
    m10 = -sin * zoom * flip[:, 0]
    m11 = (sin * tan + cos) * zoom * flip[:, 1]
    det = m00 * m11 - m01 * m10  # zoom^2 * flips, never 0: scale < 1 and |shear| < 90 are validated
    # Inverse 2x2, then rescale pixels <-> [-1, 1]: u = x * 2 / width, v = y * 2 / height.
    sx, sy = 2.0 / width, 2.0 / height
    i00, i01, i10, i11 = m11 / det, -m01 / det * sx / sy, -m10 / det * sy / sx, m00 / det
    tx, ty = shift[:, 0] * sx, shift[:, 1] * sy  # shift in [-1, 1] units
    row0 = torch.stack([i00, i01, -(i00 * tx + i01 * ty)], dim=1)  # (B, 3)
    row1 = torch.stack([i10, i11, -(i10 * tx + i11 * ty)], dim=1)
    return torch.stack([row0, row1], dim=1)  # (B, 2, 3)


def _sampling_grid(theta: Tensor, height: int, width: int, displacement: Tensor | None = None) -> Tensor:
    """The (B, H, W, 2) grid of ``F.affine_grid(theta, align_corners=False)``, plus a displacement.

    Written as one (B, 2, 3) @ (3, H*W) matmul: on CPU that is several times faster than
    ``F.affine_grid``, whose (B, H*W, 3) @ (B, 3, 2) bmm costs more than the grid_sample itself.
    ``displacement`` (B, 2, H, W) is in pixels (dx, dy) and moves where each output pixel samples.
    """
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1  # pixel centres
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    base = torch.stack(
        [
            xs.expand(height, width),
            ys[:, None].expand(height, width),
            torch.ones_like(xs).expand(height, width),
        ]
    ).reshape(3, height * width)  # (3, H*W) rows: u, v, 1
    grid = (theta @ base).view(-1, 2, height, width)  # (B, 2, H, W)
    if displacement is not None:
        # In place, pixels -> [-1, 1] units: no new (B, 2, H, W) tensor, whose fresh pages cost as much
        # as the arithmetic at large batches.
        grid[:, 0].add_(displacement[:, 0], alpha=2.0 / width)
        grid[:, 1].add_(displacement[:, 1], alpha=2.0 / height)
    # grid_sample reads this permuted view as fast as a contiguous grid, so no copy is made.
    return grid.permute(0, 2, 3, 1)  # (B, H, W, 2)


def _gaussian_matrix(sigma: Tensor, n_out: int, positions: Tensor) -> Tensor:
    """Rows of gaussian weights (..., n_out, len(positions)), each row summing to 1.

    Row i weighs the samples at ``positions`` (pixel coordinates) around pixel i; with positions =
    arange(n) this is a gaussian convolution as a matrix, renormalised at the borders so a blurred
    image keeps its brightness. ``sigma`` is a tensor of any batch shape (...).
    """
    dist = torch.arange(n_out, device=positions.device, dtype=positions.dtype)[:, None] - positions  # (n, m)
    # Clamped so far-away weights are 2e-22 rather than subnormal floats: an exp that produces
    # subnormals ran 10x slower on x86 (2.1 ms instead of 0.2 ms for a 256-image blur).
    weights = torch.exp((-(dist**2) / (2 * sigma[..., None, None] ** 2)).clamp(min=-50.0))  # (..., n, m)
    return weights / weights.sum(dim=-1, keepdim=True)


def _elastic_displacement(
    batch: int, height: int, width: int, alpha: float, sigma: float, rng: _Random, stride: int | None = None
) -> Tensor:
    """A smooth random displacement field (B, 2, H, W) in pixels (Simard et al. 2003).

    Simard: uniform noise in [-1, 1] at every pixel, convolved with a gaussian of std ``sigma``,
    times ``alpha``. The gaussian is so wide that the noise need not live at every pixel: it is
    drawn on a coarser lattice (spacing ``stride``, default floor(sigma) pixels) reaching 3 sigma
    past the borders, and the gaussian interpolates it onto the pixels. Each pixel then sums
    ``stride`` times fewer noise values per axis with larger weights, so the noise is divided by
    ``stride`` (variance / stride^2) to give the same field statistics as the dense version (to
    within 0.1 % at sigma = 4). That draws 196 instead of 784 numbers per image and axis, and the
    field is as strong at the borders as in the middle. stride=1 is Simard's dense construction.
    """
    stride = stride or max(1, int(sigma))
    margin = math.ceil(3.0 * sigma / stride) * stride  # a whole number of steps: pixel 0 is on the lattice
    sigma_t = torch.tensor(sigma, device=rng.device, dtype=rng.dtype)

    def lattice(n: int) -> Tensor:  # coarse sample positions covering [-margin, n - 1 + margin]
        count = math.ceil((n - 1 + 2 * margin) / stride) + 1
        return torch.arange(count, device=rng.device, dtype=rng.dtype) * stride - margin

    rows = _gaussian_matrix(sigma_t, height, lattice(height))  # (H, mh)
    cols = _gaussian_matrix(sigma_t, width, lattice(width))  # (W, mw)
    # alpha and 1 / stride scale the small lattice rather than the full-size field.
    noise = rng.uniform((batch, 2, rows.shape[1], cols.shape[1]), -alpha / stride, alpha / stride)
    return rows @ noise @ cols.T  # (H, mh) @ (B, 2, mh, mw) @ (mw, W) -> (B, 2, H, W)


def _random_blur(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Blur a random subset of images with a gaussian of per-image sigma in BLUR_SIGMA.

    A separable gaussian convolution written as two batched matmuls, rows (B, 1, H, H) @ x @ cols
    (B, 1, W, W)^T, so every image can have its own sigma (weights renormalised at the borders, so
    brightness is kept); unblurred images get identity matrices
    instead of being gathered out, which keeps shapes fixed (no host sync on CUDA).
    """
    batch, _, height, width = x.shape
    chosen = rng.uniform((batch,)) < probability  # (B,)
    sigma = rng.uniform((batch,), *BLUR_SIGMA)

    def matrices(n: int) -> Tensor:
        gauss = _gaussian_matrix(sigma, n, torch.arange(n, device=x.device, dtype=x.dtype))  # (B, n, n)
        eye = torch.eye(n, device=x.device, dtype=x.dtype)
        return torch.where(chosen[:, None, None], gauss, eye)[:, None]  # (B, 1, n, n)

    rows = matrices(height)
    cols = rows if width == height else matrices(width)
    return rows @ x @ cols.transpose(-1, -2)


def _random_erase(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Set one random rectangle per chosen image to 0 (Zhong et al. 2017, 'Random Erasing')."""
    batch, _, height, width = x.shape
    chosen = rng.uniform((batch,)) < probability  # (B,)
    area = rng.uniform((batch,), *ERASE_AREA) * (height * width)
    ratio = torch.exp(rng.uniform((batch,), math.log(ERASE_RATIO), -math.log(ERASE_RATIO)))  # h / w
    h = torch.sqrt(area * ratio).round().clamp(1, height)  # (B,)
    w = torch.sqrt(area / ratio).round().clamp(1, width)
    # Top-left corner uniform over the positions where the whole rectangle fits.
    top = torch.floor(rng.uniform((batch,)) * (height - h + 1))
    left = torch.floor(rng.uniform((batch,)) * (width - w + 1))
    r = torch.arange(height, device=x.device, dtype=x.dtype)
    c = torch.arange(width, device=x.device, dtype=x.dtype)
    in_rows = (r >= top[:, None]) & (r < (top + h)[:, None])  # (B, H)
    in_cols = (c >= left[:, None]) & (c < (left + w)[:, None])  # (B, W)
    erased = chosen[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return x.masked_fill(erased[:, None], 0.0)


def _random_fill(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Stretch the ink of a random subset of images towards filling a FILL_BOX square, centred.

    Each chosen image goes a fraction t ~ U(0, 1) of the way from its own box to the square, in width and
    in height separately, so its aspect ratio changes; the others are resampled by the identity.
    """
    batch, _, height, width = x.shape
    chosen = rng.uniform((batch,)) < probability  # (B,)
    t = torch.where(chosen, rng.uniform((batch,)), torch.zeros_like(chosen, dtype=x.dtype))
    ink = x.amax(dim=1) > 0.1  # (B, H, W)
    rows, cols = ink.any(dim=2), ink.any(dim=1)  # (B, H), (B, W)

    def extent(mask: Tensor, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.arange(n, device=x.device, dtype=x.dtype)
        first = torch.where(mask, idx, torch.full_like(idx, n)).amin(dim=1)
        last = torch.where(mask, idx, torch.full_like(idx, -1)).amax(dim=1) + 1
        empty = ~mask.any(dim=1)
        return torch.where(empty, torch.zeros_like(first), first), torch.where(empty, torch.full_like(last, n), last)

    y0, y1 = extent(rows, height)
    x0, x1 = extent(cols, width)
    h, w = (y1 - y0).clamp_min(1.0), (x1 - x0).clamp_min(1.0)
    fy = 1.0 + t * (FILL_BOX / h - 1.0)  # (B,) scale factors: 1 for the images not chosen
    fx = 1.0 + t * (FILL_BOX / w - 1.0)
    # Output centre <- the box's centre: in normalised coordinates the input x is x_out / fx + the box's
    # centre offset (moved only as far as the image is chosen).
    cx = t * ((x0 + x1) / width - 1.0)
    cy = t * ((y0 + y1) / height - 1.0)
    zeros = torch.zeros_like(fx)
    theta = torch.stack([torch.stack([1.0 / fx, zeros, cx], 1), torch.stack([zeros, 1.0 / fy, cy], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_lowres(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Give a random subset of images as a scan of LOWRES_SIDES pixels across the digit's box would.

    Area-averaged down to the side (scaled from the digit's FILL_BOX to the whole image) and bilinearly
    back up; then each image is divided by 0.8 of its peak and clipped, as the reading path stretches a
    blurred digit's strokes back to full brightness.
    """
    batch, _, height, width = x.shape
    chosen = rng.uniform((batch,)) < probability  # (B,)
    which = torch.floor(rng.uniform((batch,)) * len(LOWRES_SIDES)).clamp_max(len(LOWRES_SIDES) - 1)
    out = x
    for i, side in enumerate(LOWRES_SIDES):
        mask = chosen & (which == i)
        size = (max(2, round(side * height / FILL_BOX)), max(2, round(side * width / FILL_BOX)))
        small = F.interpolate(x, size=size, mode="area")
        scanned = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        peak = scanned.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        scanned = (scanned / (0.8 * peak)).clamp(0.0, 1.0)
        out = torch.where(mask[:, None, None, None], scanned, out)
    return out


def _random_stroke(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Make the strokes of a random subset of images about a pixel thicker (half of them) or thinner.

    Thicker: a 3x3 grey dilation (max-pool). Thinner: a pixel keeps the smaller of its horizontal and its
    vertical neighbours' minimum, so a stroke two pixels wide thins without vanishing.
    """
    batch = x.shape[0]
    chosen = rng.uniform((batch,)) < probability  # (B,)
    thicker = rng.uniform((batch,)) < 0.5
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    across = -F.max_pool2d(-x, (1, 3), stride=1, padding=(0, 1))  # horizontal minimum
    down = -F.max_pool2d(-x, (3, 1), stride=1, padding=(1, 0))  # vertical minimum
    thinned = torch.maximum(across, down)
    changed = torch.where(thicker[:, None, None, None], dilated, thinned)
    return torch.where(chosen[:, None, None, None], changed, x)


def _chosen(x: Tensor, changed: Tensor, probability: float, rng: _Random) -> Tensor:
    """``changed`` for a random share ``probability`` of the images of ``x``, ``x`` for the rest."""
    chosen = rng.uniform((x.shape[0],)) < probability  # (B,)
    return torch.where(chosen[:, None, None, None], changed, x)


def _random_outline(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Strokes replaced by their outlines, mixed in with weight uniform in [0.5, 1]: an edge detector's picture.

    The outline is the morphological gradient, a 3x3 grey dilation minus a 3x3 grey erosion: bright where the
    stroke meets the background, dark inside a broad stroke.
    """
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    weight = rng.uniform((x.shape[0], 1, 1, 1), 0.5, 1.0)
    return _chosen(x, (1 - weight) * x + weight * (dilated - eroded), probability, rng)


def _random_scatter(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Frosted glass: each pixel of a chosen image taken from a random neighbour up to SCATTER_REACH px away."""
    batch, _, height, width = x.shape
    reach = torch.floor(rng.uniform((batch, 1, 1, 1), 1.0, SCATTER_REACH + 1.0))  # 1 or 2 px, per image
    offset = torch.round((rng.uniform((batch, 2, height, width)) * 2 - 1) * reach)  # (B, 2, H, W) whole pixels
    eye = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(batch, 2, 3)
    grid = _sampling_grid(eye.contiguous(), height, width, offset)
    scattered = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    return _chosen(x, scattered, probability, rng)


def _segment_distance(px: Tensor, py: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Distance of each pixel (px, py: (H, W)) to segments a -> b ((..., 2) as x, y), and where along each the
    nearest point lies (0 at a, 1 at b): both (..., H, W)."""
    d = b - a  # (..., 2)
    length2 = (d**2).sum(-1).clamp_min(1e-6)[..., None, None]
    ax, ay, dx, dy = a[..., 0, None, None], a[..., 1, None, None], d[..., 0, None, None], d[..., 1, None, None]
    t = (((px - ax) * dx + (py - ay) * dy) / length2).clamp(0.0, 1.0)
    return torch.hypot(px - ax - t * dx, py - ay - t * dy), t


def _random_lines(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """Marks that are not the digit: 1 to LINES_MAX lines, zigzags or dotted lines across a chosen picture,
    drawn as bright as ink (MNIST's polarity); half the chosen pictures get soft blots or one band,
    vertical or horizontal, 1-5 px wide, inverted instead.
    """
    batch, _, height, width = x.shape
    k, turns = LINES_MAX, LINES_TURNS
    size = torch.tensor([width - 1.0, height - 1.0], device=x.device, dtype=x.dtype)
    # Each line runs between two points near the border, about across the picture from each other (a turn of
    # pi, give or take one radian).
    angle = rng.uniform((batch, k), 0.0, 2 * math.pi)
    back = angle + math.pi + rng.uniform((batch, k), -1.0, 1.0)
    radius = rng.uniform((batch, k, 2), 0.4, 0.55)
    centre = size / 2
    start = centre + radius[..., :1] * torch.stack([angle.cos(), angle.sin()], -1) * size  # (B, K, 2)
    end = centre + radius[..., 1:] * torch.stack([back.cos(), back.sin()], -1) * size
    along = torch.linspace(0, 1, turns + 1, device=x.device, dtype=x.dtype)  # (T+1,)
    points = start[:, :, None] + along[:, None] * (end - start)[:, :, None]  # (B, K, T+1, 2)
    normal = torch.stack([-(end - start)[..., 1], (end - start)[..., 0]], -1)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # (B, K, 2)
    zigzag = rng.uniform((batch, k, 1)) < 0.5
    swing = torch.where(zigzag, rng.uniform((batch, k, 1), 1.0, LINES_SWING), torch.zeros_like(zigzag, dtype=x.dtype))
    sign = torch.where(torch.arange(turns + 1, device=x.device) % 2 == 0, -1.0, 1.0).to(x.dtype)  # (T+1,)
    points = points + (swing * sign)[..., None] * normal[:, :, None]
    px = torch.arange(width, device=x.device, dtype=x.dtype).expand(height, width)
    py = torch.arange(height, device=x.device, dtype=x.dtype)[:, None].expand(height, width)
    dist, t = _segment_distance(px, py, points[:, :, :-1], points[:, :, 1:])  # (B, K, T, H, W)
    half = rng.uniform((batch, k, 1, 1, 1), *LINES_WIDTH)
    ink = (half + 0.5 - dist).clamp(0.0, 1.0)  # anti-aliased stroke
    # Dotted: dots PERIOD px apart along each piece (its own phase), on a third of the lines.
    piece = (points[:, :, 1:] - points[:, :, :-1]).norm(dim=-1)[..., None, None]  # (B, K, T, 1, 1)
    period = rng.uniform((batch, k, 1, 1, 1), 2.5, 4.0)
    dots = torch.remainder(t * piece / period, 1.0) < 0.5
    dotted = rng.uniform((batch, k, 1, 1, 1)) < 1 / 3
    ink = torch.where(dotted & ~dots, torch.zeros_like(ink), ink)
    count = torch.floor(rng.uniform((batch, 1, 1, 1), 1.0, k + 1.0))  # lines per picture, 1 to K
    present = torch.arange(k, device=x.device)[None, :, None, None] < count  # (B, K, 1, 1)
    shade = rng.uniform((batch, k, 1, 1), 0.6, 1.0)
    marks = (ink.amax(dim=2) * shade * present).amax(dim=1, keepdim=True)  # (B, 1, H, W)
    lined = torch.maximum(x, marks)
    # Blots: a smooth field on a coarse lattice, its peaks kept.
    field = F.interpolate(rng.uniform((batch, 1, 7, 7)), size=(height, width), mode="bicubic", align_corners=True)
    cut = rng.uniform((batch, 1, 1, 1), 0.75, 0.95)
    blots = torch.maximum(x, ((field - cut) * 10).clamp(0.0, 1.0) * rng.uniform((batch, 1, 1, 1), 0.5, 1.0))
    # A band, 1 to 5 px wide, through the middle half, across or down; inverted.
    band_width = torch.floor(rng.uniform((batch, 1, 1, 1), 1.0, 6.0))
    first = torch.floor(rng.uniform((batch, 1, 1, 1), 0.25, 0.75) * width - band_width / 2)
    across = rng.uniform((batch, 1, 1, 1)) < 0.5
    where = torch.where(across, py, px)  # the coordinate the band is measured along
    in_band = (where >= first) & (where < first + band_width)
    banded = torch.where(in_band, 1.0 - x, x)
    other = torch.where(rng.uniform((batch, 1, 1, 1)) < 0.5, blots, banded)
    changed = torch.where(rng.uniform((batch, 1, 1, 1)) < 0.5, other, lined)
    return _chosen(x, changed, probability, rng)


def _random_lighting(x: Tensor, probability: float, rng: _Random) -> Tensor:
    """New lighting for a chosen picture: background and ink levels, and clouds.

    The background gets a level ``low`` and the ink ``low + span`` (span at least LIGHTING_CONTRAST), each
    uniform over what fits in [0, 1]; half the pictures are then turned negative (dark ink on a light
    page). Half get clouds: a smooth field (bicubic from a LIGHTING_LATTICE lattice of uniform noise) of
    strength up to LIGHTING_CLOUDS added, and the sum scaled back into [0, 1].
    """
    batch, _, height, width = x.shape
    shape = (batch, 1, 1, 1)
    low = rng.uniform(shape, 0.0, 1.0 - LIGHTING_CONTRAST)
    span = LIGHTING_CONTRAST + rng.uniform(shape) * (1.0 - LIGHTING_CONTRAST - low)
    lit = low + span * x
    lit = torch.where(rng.uniform(shape) < 0.5, 1.0 - lit, lit)
    lattice = rng.uniform((batch, 1, LIGHTING_LATTICE, LIGHTING_LATTICE))
    cloud = F.interpolate(lattice, size=(height, width), mode="bicubic", align_corners=True).clamp(0.0, 1.0)
    strength = rng.uniform(shape, 0.0, LIGHTING_CLOUDS) * (rng.uniform(shape) < 0.5)
    return _chosen(x, (lit + strength * cloud) / (1.0 + strength), probability, rng)


def _random_impulse(x: Tensor, amount: float, rng: _Random) -> Tensor:
    """Salt and pepper: a share of the pixels, uniform in [0, amount] per image, set to 0 or 1, half each."""
    batch = x.shape[0]
    share = rng.uniform((batch, 1, 1, 1), 0.0, amount)
    hit = rng.uniform(tuple(x.shape)) < share
    salt = (rng.uniform(tuple(x.shape)) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)
