"""digits.train.plots: what can be checked without eyes (a colour bar, readable numbers, captions that say
what they mean); look at the PNGs themselves after changing how they are drawn."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from digits.train import plots  # noqa: E402  (after the skip: matplotlib comes with the train extra)


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (1 to 21)."""

    def luminance(c: tuple[float, ...]) -> float:
        r, g, b = (x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture
def confusion() -> np.ndarray:
    c = np.diag([980, 1130, 1020, 1000, 960, 880, 950, 1010, 960, 990])
    c[4, 9], c[7, 2], c[9, 4], c[3, 5] = 14, 9, 5, 1  # one dark cell, mid ones, a light one; most are 0
    return c


def test_the_confusion_matrix_has_a_colour_bar_and_every_count_stands_out_from_its_cell(confusion):
    from matplotlib.colors import to_rgba

    fig = plots.confusion_figure(confusion)
    matrix, bar = fig.axes
    assert "mistakes" in bar.get_ylabel()  # the colour bar, labelled
    image = matrix.images[0]
    colours = {}
    for text in matrix.texts:
        j, i = (int(v) for v in text.get_position())
        cell = image.cmap(image.norm(image.get_array()[i, j]))
        colours[i, j] = text.get_color()
        assert text.get_text() == str(confusion[i, j])
        # WCAG's 4.5:1 for text: black on the darkest red was 1.6:1
        assert contrast(to_rgba(text.get_color()), cell) >= 4.5, (i, j, text.get_color())
    assert len(colours) == 100
    assert colours[4, 9] == "white" and colours[0, 1] == "black"  # the darkest cell and an empty one
    plots._pyplot().close(fig)


def test_the_gallery_says_its_captions_are_true_then_predicted():
    images = np.zeros((3, 28, 28), np.uint8)
    fig = plots.mistakes_figure(images, np.array([4, 7, 9]), np.array([9, 2, 4]), np.array([0.97, 0.6, 0.55]))
    assert "true → predicted" in fig.get_suptitle()
    assert [ax.get_title() for ax in fig.axes[:3]] == ["4 → 9 (97%)", "7 → 2 (60%)", "9 → 4 (55%)"]
    plots._pyplot().close(fig)


def test_the_pictures_are_written_as_png_files_and_nothing_else(confusion, tmp_path: Path):
    plots.confusion_matrix(confusion, tmp_path / "confusion.png")
    none = np.zeros(0, np.int64)
    plots.mistakes_gallery(np.zeros((0, 28, 28), np.uint8), none, none, none.astype(float), tmp_path / "mistakes.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "mistakes.png"]  # no temporary file
    for name in ("confusion.png", "mistakes.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
