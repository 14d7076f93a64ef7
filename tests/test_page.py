"""Finding the page in a photo (digits.reading.page): where it is, straightened, and where there is none."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digits.reading.load import load_image
from digits.reading.page import find_page
from digits.testing import scenes
from digits.testing.scenes import font_digit, paper


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    """A 900x400 page with "2026" written on it, its ink 140 pixels tall, from x = 120, y = 120."""
    return paper([font_digit(d) for d in (2, 0, 2, 6)], size=(900, 400), height=140, origin=(120, 120), seed=1).image


def _ink_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    return cv2.boundingRect((gray < 0.4).astype(np.uint8))


@pytest.mark.parametrize("degrees", [4, -7, 12])
def test_a_turned_page_with_dark_corners_is_found_and_its_corners_painted_paper(page, degrees):
    found = find_page(load_image(scenes.rotated(page, degrees)))
    assert found is not None
    # Nothing dark is left but the writing: the filled corners are paper now, the edges cut away.
    g = found.gray
    for corner in (g[:20, :20], g[:20, -20:], g[-20:, :20], g[-20:, -20:]):
        assert corner.min() > 0.35  # paper, in the shade of the light falling off (the ink is about 0.1)
    x, y, w, h = _ink_box(g)
    assert 0.2 * g.shape[0] < h < 0.7 * g.shape[0] and 0.05 * g.shape[1] < x < x + w < 0.95 * g.shape[1]


@pytest.mark.parametrize("sides", ["l", "lt", "b"])
def test_a_scanner_edge_is_left_out_of_the_page(page, sides):
    found = find_page(load_image(scenes.scanner_edge(page, sides=sides, width=6)))
    assert found is not None
    assert _ink_box(found.gray)[0] > 50  # no dark band at the left
    # The writing on the straightened page maps back onto the writing in the picture.
    assert found.box_in_picture(_ink_box(found.gray)) == pytest.approx(_ink_box(load_image(page)), abs=4)


@pytest.mark.parametrize(("degrees", "tilt"), [(0, 0.0), (12, 0.0), (-25, 0.0), (5, 0.2)])
def test_paper_on_a_desk_is_found_and_straightened(page, degrees, tilt):
    photo = scenes.on_desk(page, size=(1600, 1200), degrees=degrees, tilt=tilt, seed=2)
    found = find_page(load_image(photo))
    assert found is not None
    h, w = found.gray.shape
    assert 2.0 < w / h < 2.6  # the page is 900x400: straightened, upright, its aspect back
    x, y, bw, bh = _ink_box(found.gray)
    assert 0.25 < bh / h < 0.5 and 0.1 * w < x < 0.2 * w  # "2026" where it was written on the page
    # Its corners are in the picture, around the paper; a box on the page maps inside them.
    assert found.holds(found.box_in_picture((x, y, bw, bh)))
    assert not found.holds((0, 0, 10, 10))  # the desk's corner is beyond the page


def test_no_page_where_there_is_none(page, mnist):
    pictures = {
        "paper filling the picture": page,
        "a bare 28x28 MNIST digit": mnist.test_images[0],
        "white": np.full((300, 300), 240, np.uint8),
        "black": np.zeros((300, 300), np.uint8),
        "noise": np.random.default_rng(0).integers(0, 256, (300, 300)).astype(np.uint8),
        "a light ramp": np.tile(np.linspace(0, 255, 400), (300, 1)).astype(np.uint8),
    }
    for name, picture in pictures.items():
        assert find_page(load_image(picture)) is None, name


def test_a_digits_crop_is_no_page(mnist):
    # A filled 0 is a light, convex region on a darker surround: in a picture as small as a digit's crop, it
    # was taken for a page 20 times in the first 50 zeros of the test set (and read a second way for nothing).
    zeros = mnist.test_images[mnist.test_labels == 0][:50]
    assert all(find_page(load_image(zero)) is None for zero in zeros)
