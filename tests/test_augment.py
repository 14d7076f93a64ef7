"""Tests for digits.train.augment: geometry against exact oracles, randomness, dtypes, config parsing."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from digits.train.augment import (
    ERASE_AREA,
    LIGHTING_CLOUDS,
    LIGHTING_CONTRAST,
    SCATTER_REACH,
    _affine_theta,
    _elastic_displacement,
    _Random,
    _sampling_grid,
    augment,
    augment_pair,
)
from digits.train.config import AugmentConfig, format_augment, parse_augment

FULL = AugmentConfig(
    rotate=15,
    scale=0.1,
    shift=0.1,
    shear=10,
    elastic=34,
    elastic_sigma=4,
    fill=0.5,
    lowres=0.5,
    stroke=0.5,
    erase=0.5,
    noise=0.1,
    blur=0.5,
    lighting=0.5,
    lines=0.5,
    impulse=0.1,
    scatter=0.5,
    outline=0.5,
)


def digit_like(batch: int = 8, seed: int = 0) -> torch.Tensor:
    """(B, 1, 28, 28) random blobs of ink on a dark background, no symmetry."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, 1, 28, 28)
    x[:, :, 6:22, 8:20] = torch.rand(batch, 1, 16, 12, generator=g)
    return x


def warp(x: torch.Tensor, angle=0.0, zoom=1.0, shear=0.0, shift=(0.0, 0.0), flip=(1.0, 1.0)) -> torch.Tensor:
    """Apply one fixed affine transform to every image of x, through the module's own builder."""
    b, _, h, w = x.shape
    theta = _affine_theta(
        torch.full((b,), float(angle)),
        torch.full((b,), float(zoom)),
        torch.full((b,), float(shear)),
        torch.tensor([shift], dtype=torch.float32).expand(b, 2),
        torch.tensor([flip], dtype=torch.float32).expand(b, 2),
        h,
        w,
    )
    return F.grid_sample(x, _sampling_grid(theta, h, w), align_corners=False)


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) ink-weighted mean (x, y) pixel position of each image."""
    _, _, h, w = x.shape
    mass = x.sum(dim=(1, 2, 3))
    cx = (x.sum(dim=(1, 2)) * torch.arange(w)).sum(-1) / mass
    cy = (x.sum(dim=(1, 3)) * torch.arange(h)).sum(-1) / mass
    return torch.stack([cx, cy], dim=1)


# --- geometry, against exact oracles ------------------------------------------------------------


def test_all_off_returns_the_input_itself():
    x = digit_like()
    assert augment(x, AugmentConfig()) is x
    assert augment(x, parse_augment("none")) is x
    assert not AugmentConfig(elastic_sigma=2.0).enabled  # a smoothness without a strength is still off


@pytest.mark.parametrize("height,width", [(28, 28), (20, 32)])
def test_sampling_grid_equals_affine_grid(height, width):
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    ours = _sampling_grid(theta, height, width)
    reference = F.affine_grid(theta, [5, 1, height, width], align_corners=False)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_a_constant_displacement_is_a_shift_the_other_way():
    # Output pixel q samples the input at q + d, so the content moves by -d (here on a 20x32 image).
    x = F.pad(digit_like(2), (2, 2, -4, -4))  # (2, 1, 20, 32)
    displacement = torch.tensor([2.0, -1.0])[None, :, None, None].expand(2, 2, 20, 32)  # (dx, dy) px
    identity = torch.eye(2, 3).expand(2, 2, 3)
    moved = F.grid_sample(x, _sampling_grid(identity, 20, 32, displacement), align_corners=False)
    torch.testing.assert_close(moved, warp(x, shift=(-2.0, 1.0)), atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_matches_rot90():
    x = digit_like()
    # Positive angles turn the digit counter-clockwise on screen, as rot90 with k=1 does.
    torch.testing.assert_close(warp(x, angle=90), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(x, angle=-90), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(x, angle=180), torch.rot90(x, 2, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotation_on_a_non_square_image_keeps_right_angles():
    # 90 degrees on a 20x32 image: the 10-pixel-wide horizontal bar becomes a 10-pixel-tall vertical bar.
    x = torch.zeros(1, 1, 20, 32)
    x[:, :, 9:11, 11:21] = 1.0
    y = warp(x, angle=90)
    assert (y > 0.5).sum(dim=2).max() == 10 and (y > 0.5).sum(dim=3).max() == 2


@pytest.mark.parametrize("height,width", [(28, 28), (20, 32)])
def test_shift_moves_the_centre_of_mass_by_the_shift(height, width):
    x = F.pad(digit_like(), ((width - 28) // 2,) * 2 + ((height - 28) // 2,) * 2)
    moved = warp(x, shift=(3.0, -2.0))  # 3 px right, 2 px up
    torch.testing.assert_close(centre_of_mass(moved) - centre_of_mass(x), torch.tensor([[3.0, -2.0]]).expand(8, 2))
    # Whole pixels: an exact copy of torch.roll (the ink stays clear of the borders).
    torch.testing.assert_close(moved, torch.roll(x, shifts=(-2, 3), dims=(2, 3)), atol=1e-5, rtol=0)


def test_random_shift_stays_within_the_configured_fraction():
    x = torch.zeros(256, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0
    g = torch.Generator().manual_seed(0)
    delta = centre_of_mass(augment(x, AugmentConfig(shift=0.1), g)) - centre_of_mass(x)  # (B, 2) px
    assert delta.abs().max() <= 2.8 + 1e-4  # 0.1 * 28 pixels
    assert delta.abs().max() > 2.0 and delta.std(dim=0).min() > 1.0  # it does move them, both ways


def test_random_zoom_and_rotation_stay_within_their_ranges():
    x = torch.zeros(512, 1, 28, 28)
    x[:, :, 13:15, 6:22] = 1.0  # a horizontal bar through the centre
    y = augment(x, AugmentConfig(rotate=30, scale=0.2), torch.Generator().manual_seed(0))
    zoom = (y.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))).sqrt()  # ink area grows with zoom^2
    assert zoom.min() > 0.8 - 0.02 and zoom.max() < 1.2 + 0.02
    assert zoom.min() < 0.85 and zoom.max() > 1.15
    # The bar's angle from its second moments: within [-30, 30] degrees, reaching near both ends.
    c = centre_of_mass(y)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    dx, dy = xx - c[:, 0, None, None], yy - c[:, 1, None, None]  # (B, 28, 28)
    ink = y[:, 0]
    mu20, mu02, mu11 = (ink * dx * dx).sum((1, 2)), (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))
    assert angle.abs().max() < 31 and angle.min() < -27 and angle.max() > 27


def test_zoom_scales_the_ink_area():
    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 11:17, 11:17] = 1.0  # a 6x6 square around the centre
    torch.testing.assert_close(warp(x, zoom=1.5).sum(), torch.tensor(36.0 * 1.5**2), atol=0.5, rtol=0)
    torch.testing.assert_close(warp(x, zoom=0.5).sum(), torch.tensor(36.0 * 0.5**2), atol=0.5, rtol=0)


def test_positive_shear_slants_the_top_to_the_right():
    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 7:9, 13:15] = 1.0  # a dot 6 px above the centre (13.5, 13.5)
    moved = centre_of_mass(warp(x, shear=45)) - centre_of_mass(x)
    torch.testing.assert_close(moved, torch.tensor([[6.0, 0.0]]), atol=1e-4, rtol=0)


def test_flips_mirror_the_image():
    x = digit_like()
    torch.testing.assert_close(warp(x, flip=(-1.0, 1.0)), x.flip(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(x, flip=(1.0, -1.0)), x.flip(2), atol=1e-5, rtol=0)
    with pytest.warns(UserWarning):
        cfg = AugmentConfig(hflip=True)
    out = augment(x[:1].expand(64, 1, 28, 28), cfg, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.allclose(o, x[0].flip(2), atol=1e-5) for o in out])
    same = torch.tensor([torch.allclose(o, x[0], atol=1e-5) for o in out])
    assert bool((flipped | same).all()) and 10 < int(flipped.sum()) < 54  # each image: flipped or not, p=1/2


def test_elastic_lattice_gives_the_same_field_strength_as_the_dense_field():
    # The coarse noise lattice (stride = sigma) must give Simard's dense field statistics.
    def field(stride: int | None) -> torch.Tensor:
        rng = _Random(torch.Generator().manual_seed(0), torch.device("cpu"), torch.float32)
        return _elastic_displacement(1000, 28, 28, alpha=1.0, sigma=4.0, rng=rng, stride=stride)

    coarse, dense = field(None), field(1)
    ratio = coarse.std(dim=(0, 1)) / dense.std(dim=(0, 1))  # (28, 28) per pixel
    assert 0.97 < ratio.mean() < 1.03
    assert 0.93 < ratio[[0, -1]].mean() < 1.07 and 0.93 < ratio[:, [0, -1]].mean() < 1.07  # borders too
    # Neighbouring pixels move together: the field is smooth, not noise.
    correlation = torch.corrcoef(torch.stack([dense[:, :, 10, 10].flatten(), dense[:, :, 10, 12].flatten()]))
    assert correlation[0, 1] > 0.8


def test_elastic_alone_moves_pixels_but_keeps_the_digit_in_place():
    x = digit_like(64)
    y = augment(x, AugmentConfig(elastic=34, elastic_sigma=4), torch.Generator().manual_seed(0))
    assert (y - x).abs().amax(dim=(1, 2, 3)).min() > 0.1  # every image changed
    assert (centre_of_mass(y) - centre_of_mass(x)).abs().max() < 4.0  # field std is about 1.4 px


# --- pixel transforms --------------------------------------------------------------------------


def _box(image: torch.Tensor) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) of the ink (> 0.1) of a (1, H, W) image."""
    ys, xs = torch.nonzero(image[0] > 0.1, as_tuple=True)
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)


def test_fill_stretches_each_digit_towards_its_box_and_centres_it():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 11:17] = 1.0  # a "1": 6 wide, 16 tall, left of centre
    x[:, :, 6:22, 5:7] = 1.0
    y = augment(x, AugmentConfig(fill=1.0), torch.Generator().manual_seed(0))
    widths, heights, centres = [], [], []
    for image in y:
        x0, y0, w, h = _box(image)
        widths.append(w)
        heights.append(h)
        centres.append(x0 + w / 2)
    # From 12 x 16 towards 20 x 20, each image its own way of the distance (t ~ U(0, 1)).
    assert min(widths) >= 11 and max(widths) <= 21 and min(heights) >= 15 and max(heights) <= 21
    assert max(widths) - min(widths) > 5, "the fraction of the way should vary from image to image"
    assert abs(centres[int(torch.tensor(widths).argmax())] - 14) <= 1.0  # all the way: centred
    assert torch.equal(augment(x, AugmentConfig(fill=0.0, noise=0.0), None), x)


def test_lowres_blurs_like_a_coarse_scan_and_keeps_full_brightness():
    x = digit_like(32)
    y = augment(x, AugmentConfig(lowres=1.0), torch.Generator().manual_seed(0))

    def roughness(t):
        return (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., 1:] - t[..., :-1]).abs().sum()

    assert roughness(y) < 0.8 * roughness(x)
    assert torch.all(y.amax(dim=(1, 2, 3)) > 0.99) and y.min() >= 0 and y.max() <= 1


def test_stroke_thickens_some_digits_and_thins_the_others():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a stroke 4 pixels wide
    y = augment(x, AugmentConfig(stroke=1.0), torch.Generator().manual_seed(0))
    area = (y > 0.5).sum(dim=(1, 2, 3)).float()
    before = float((x[0] > 0.5).sum())
    assert (area > before).sum() > 10 and (area < before).sum() > 10 and not (area == before).any()
    assert torch.all(area > 0.3 * before), "a thinned stroke must not vanish"


def test_erase_zeros_one_rectangle_per_image():
    x = torch.ones(64, 1, 28, 28)
    y = augment(x, AugmentConfig(erase=1.0), torch.Generator().manual_seed(0))
    for image in y[:, 0]:
        zero = image == 0
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        assert len(rows) and len(cols)
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all()) and int(zero.sum()) == box.numel()  # exactly its bounding box
        assert int(zero.sum()) <= ERASE_AREA[1] * 784 * 1.2  # the upper bound, allowing for rounding
        assert set(image[~zero].tolist()) == {1.0}  # nothing else touched


def test_erased_area_averages_the_configured_range():
    # Area fraction uniform in ERASE_AREA: mean 0.21, a little less as long rectangles are clipped.
    y = augment(torch.ones(2000, 1, 28, 28), AugmentConfig(erase=1.0), torch.Generator().manual_seed(0))
    assert 0.195 < float((y == 0).float().mean()) < 0.215


def test_erase_probability_selects_a_subset():
    x = torch.ones(200, 1, 28, 28)
    y = augment(x, AugmentConfig(erase=0.25), torch.Generator().manual_seed(0))
    erased = int((y == 0).flatten(1).any(dim=1).sum())
    assert 25 < erased < 75


def test_noise_is_clamped_to_the_unit_interval():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, :, 14:] = 1.0  # half black, half white: noise pushes both ends out of [0, 1]
    y = augment(x, AugmentConfig(noise=0.5), torch.Generator().manual_seed(0))
    assert y.min() == 0.0 and y.max() == 1.0
    assert 0.15 < (y - x).abs().mean() < 0.25  # noise was added: E|N(0, 0.5)| / 2 = 0.2 after clamping


def test_blur_spreads_ink_on_a_random_subset_only():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    y = augment(x, AugmentConfig(blur=0.5), torch.Generator().manual_seed(0))
    changed = (y != x).flatten(1).any(dim=1)
    assert 10 < int(changed.sum()) < 54
    torch.testing.assert_close(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # brightness kept
    assert float(y[changed, 0, 14, 14].max()) < 0.7  # the dot spread out
    assert float(y[changed, 0, 14, 15].min()) > 0.05


def test_lighting_gives_either_polarity_and_keeps_the_ink_apart_from_the_background():
    x = torch.zeros(256, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a bar of ink
    y = augment(x, AugmentConfig(lighting=1.0), torch.Generator().manual_seed(0))
    ink, background = y[:, 0, 14, 14], y[:, 0, 14, 4]
    gap = ink - background
    # Clouds shrink the levels' gap by up to 1 + LIGHTING_CLOUDS and vary the background across the picture.
    assert float(gap.abs().min()) > LIGHTING_CONTRAST / (1 + LIGHTING_CLOUDS) - 0.25
    assert 0.35 < float((gap < 0).float().mean()) < 0.65  # dark ink on a light page about half the time
    assert float(background.max()) > 0.7 and float(background.min()) < 0.3  # backgrounds of every level
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_lines_mark_blank_pictures_on_a_random_subset():
    x = torch.zeros(200, 1, 28, 28)
    y = augment(x, AugmentConfig(lines=0.5), torch.Generator().manual_seed(0))
    marked = (y > 0).flatten(1).any(dim=1)
    assert 60 < int(marked.sum()) < 140
    # Lines, blots and bands cover part of a picture, never all of it.
    assert float((y[marked] > 0).flatten(1).float().mean(dim=1).max()) < 0.6


def test_lines_never_dim_the_ink_except_in_an_inverted_band():
    x = digit_like(128)
    y = augment(x, AugmentConfig(lines=1.0), torch.Generator().manual_seed(1))
    dimmed = y < x - 1e-6  # (B, 1, H, W)
    pictures = torch.nonzero(dimmed.flatten(1).any(dim=1)).flatten().tolist()
    assert 10 < len(pictures) < 55  # a quarter of the pictures get a band (half blots or a band, half of those)

    def span(mask: torch.Tensor) -> int:  # how many rows (or columns) from the first marked to the last
        where = torch.nonzero(mask).flatten()
        return int(where.max() - where.min()) + 1

    for i in pictures:
        columns, rows = dimmed[i, 0].any(dim=0), dimmed[i, 0].any(dim=1)
        assert min(span(columns), span(rows)) <= 5  # a band at most 5 px wide


def test_impulse_sets_at_most_its_share_of_pixels_to_black_or_white():
    x = torch.full((64, 1, 28, 28), 0.5)
    y = augment(x, AugmentConfig(impulse=0.2), torch.Generator().manual_seed(0))
    hit = y != x
    assert set(torch.unique(y[hit]).tolist()) == {0.0, 1.0}
    share = hit.flatten(1).float().mean(dim=1)
    assert float(share.max()) < 0.26 and 0.07 < float(share.mean()) < 0.13  # uniform in [0, 0.2]: mean 0.1


def test_scatter_takes_each_pixel_from_a_near_neighbour():
    x = digit_like(32)
    y = augment(x, AugmentConfig(scatter=1.0), torch.Generator().manual_seed(0))
    k = 2 * SCATTER_REACH + 1
    assert (y <= F.max_pool2d(x, k, stride=1, padding=SCATTER_REACH) + 1e-6).all()
    assert (y >= -F.max_pool2d(-x, k, stride=1, padding=SCATTER_REACH) - 1e-6).all()
    assert not torch.equal(y, x)


def test_outline_hollows_a_solid_stroke():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8:20, 8:20] = 1.0
    y = augment(x, AugmentConfig(outline=1.0), torch.Generator().manual_seed(0))
    assert float(y[:, 0, 14, 14].max()) <= 0.5 + 1e-6  # the inside: at most half its ink left (weight >= 0.5)
    assert float(y[:, 0, 8, 14].min()) >= 1.0 - 1e-6  # the edge stays bright
    assert float(y[:, 0, 7, 14].min()) >= 0.5 - 1e-6  # ... and spreads a pixel out


# --- randomness, dtypes, devices ----------------------------------------------------------------


def test_the_pair_is_the_shape_changes_alone_and_then_everything():
    x = digit_like(64)
    marks_only = dataclasses.replace(FULL, rotate=0, scale=0, shift=0, shear=0, elastic=0, fill=0, lowres=0, stroke=0)
    shaped, augmented = augment_pair(x, marks_only, torch.Generator().manual_seed(0))
    assert torch.equal(shaped, x)  # no change of shape asked for: the clean picture is the input
    assert not torch.equal(augmented, x)
    # augment is the pair's second half, drawn the same way.
    shaped, augmented = augment_pair(x, FULL, torch.Generator().manual_seed(1))
    assert torch.equal(augmented, augment(x, FULL, torch.Generator().manual_seed(1)))
    assert not torch.equal(shaped, x) and not torch.equal(shaped, augmented)


def test_clean_keeps_its_share_of_pictures_free_of_marks():
    x = digit_like(2000)
    shaped, augmented = augment_pair(x, dataclasses.replace(FULL, clean=0.3), torch.Generator().manual_seed(0))
    kept = (shaped == augmented).flatten(1).all(dim=1).float().mean().item()
    assert 0.25 < kept < 0.35, kept
    _, everything = augment_pair(x, dataclasses.replace(FULL, clean=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(everything, augment_pair(x, FULL, torch.Generator().manual_seed(0))[0])
    assert not AugmentConfig(clean=1.0).enabled  # a share of nothing changes nothing


def test_same_seed_same_output_different_seed_different_output():
    x = digit_like(32)
    a = augment(x, FULL, torch.Generator().manual_seed(7))
    b = augment(x, FULL, torch.Generator().manual_seed(7))
    c = augment(x, FULL, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cfg", [FULL, AugmentConfig(blur=1.0)], ids=["full", "blur"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("channels,channels_last", [(1, False), (1, True), (3, True)])
def test_shape_dtype_and_memory_format_are_kept(cfg, dtype, channels, channels_last):
    # With one channel, channels_last strides equal contiguous ones; three channels tell them apart.
    x = digit_like(8).repeat(1, channels, 1, 1).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert y.stride() == x.stride()
    assert not torch.isnan(y).any() and float(y.min()) >= 0 and float(y.max()) <= 1


def test_works_inside_autocast():
    x = digit_like(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = augment(x, FULL, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32  # the batch's dtype, not autocast's
    torch.testing.assert_close(y, augment(x, FULL, torch.Generator().manual_seed(0)))


def test_extreme_settings_give_no_nan():
    extreme = AugmentConfig(rotate=180, scale=0.99, shift=1.0, shear=89, elastic=200, erase=1, noise=3, blur=1)
    y = augment(digit_like(64), extreme, torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all() and float(y.min()) >= 0 and float(y.max()) <= 1


def test_rejects_batches_it_cannot_augment():
    with pytest.raises(ValueError, match="B, C, H, W"):
        augment(torch.zeros(28, 28), FULL)
    with pytest.raises(TypeError, match="floating point"):
        augment(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), FULL)
    empty = torch.zeros(0, 1, 28, 28)
    assert augment(empty, FULL) is empty


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_serves_a_cuda_batch_with_the_same_randomness():
    x = digit_like(16)
    on_cpu = augment(x, FULL, torch.Generator().manual_seed(0))
    on_cuda = augment(x.cuda(), FULL, torch.Generator().manual_seed(0))
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=0)
    on_cuda_gen = augment(x.cuda(), FULL, torch.Generator(device="cuda").manual_seed(0))
    assert on_cuda_gen.device.type == "cuda" and torch.isfinite(on_cuda_gen).all()


# --- config ------------------------------------------------------------------------------------


def test_flips_warn_and_nothing_else_does():
    with pytest.warns(UserWarning, match="flip"):
        AugmentConfig(hflip=True)
    with pytest.warns(UserWarning, match="flip"):
        AugmentConfig(vflip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AugmentConfig(rotate=10, scale=0.1, shift=0.1, elastic=34)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"rotate": -1}, "rotate"),
        ({"rotate": 181}, "rotate"),
        ({"scale": 1.0}, "scale"),
        ({"shift": -0.1}, "shift"),
        ({"shear": 90}, "shear"),
        ({"elastic": -1}, "elastic"),
        ({"elastic_sigma": 0}, "elastic_sigma"),
        ({"erase": 1.5}, "erase"),
        ({"fill": 1.5}, "fill"),
        ({"lowres": -0.5}, "lowres"),
        ({"stroke": 2.0}, "stroke"),
        ({"blur": -0.1}, "blur"),
        ({"noise": -0.1}, "noise"),
        ({"lighting": 1.5}, "lighting"),
        ({"lines": -0.1}, "lines"),
        ({"impulse": 1.1}, "impulse"),
        ({"scatter": 2}, "scatter"),
        ({"outline": -1}, "outline"),
        ({"clean": 1.5}, "clean"),
        ({"rotate": float("nan")}, "rotate"),
        ({"hflip": 1}, "hflip"),
    ],
)
def test_invalid_values_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**changes)


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(),
        AugmentConfig(rotate=10, scale=0.1, shift=0.1),
        FULL,
        AugmentConfig(elastic_sigma=6.0),
        AugmentConfig(rotate=1 / 3, noise=0.05),
    ],
)
def test_format_and_parse_round_trip(cfg):
    assert parse_augment(format_augment(cfg)) == cfg


def test_parse_reads_a_command_line_spec():
    cfg = parse_augment(" rotate=10, scale=0.1,shift=0.1,elastic=0, ")
    assert cfg == AugmentConfig(rotate=10.0, scale=0.1, shift=0.1)
    assert parse_augment("NONE") == AugmentConfig() == parse_augment("")
    with pytest.warns(UserWarning):
        assert parse_augment("hflip=true,vflip=no") == AugmentConfig(hflip=True)
    assert format_augment(AugmentConfig()) == "none"
    assert dataclasses.asdict(parse_augment("rotate=5"))["rotate"] == 5.0


@pytest.mark.parametrize(
    "spec,message",
    [
        ("rotation=10", "valid keys: rotate, scale"),
        ("rotate", "key=value"),
        ("rotate=ten", "rotate must be a number"),
        ("hflip=maybe", "hflip must be true or false"),
        ("rotate=10,rotate=20", "given twice"),
        ("rotate=200", "rotate must be in"),
    ],
)
def test_parse_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_augment(spec)
