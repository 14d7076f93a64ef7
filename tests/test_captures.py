"""digits.train.captures: MNIST training digits drawn through other capture pipelines and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.reading import Recognizer
from digits.reading.pipeline import prepare
from digits.train import captures
from digits.train.captures import captured_digits, render


def test_render_draws_a_square_picture_deterministically(mnist):
    digit = mnist.train_images[0]
    pictures = [render(digit, np.random.default_rng(s)) for s in range(20)]
    again = [render(digit, np.random.default_rng(s)) for s in range(20)]
    assert all(p.dtype == np.uint8 and p.ndim == 2 and p.shape[0] == p.shape[1] for p in pictures)
    assert all(np.array_equal(a, b) for a, b in zip(pictures, again))
    assert len({p.shape for p in pictures}) > 5  # sizes vary
    # Both polarities: the median level is the background's, dark for light ink and light for dark.
    medians = [float(np.median(p)) for p in pictures]
    assert min(medians) < 100 and max(medians) > 155
    with pytest.raises(ValueError, match="ink"):
        render(np.zeros((28, 28), np.uint8), np.random.default_rng(0))


def test_captured_copies_read_back_as_their_digit(mnist, tmp_path: Path, model_dir: Path):
    images, labels = mnist.train_images[:300], mnist.train_labels[:300]
    x, y = captured_digits(images, labels, 2, seed=3, workers=1, cache_dir=tmp_path, log=lambda _: None)
    assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and len(x) == len(y)
    assert 0.85 * 600 <= len(x) <= 600  # a few do not come back as one digit and are left out
    assert set(np.unique(y)) == set(range(10))
    # The glyphs are what the reader makes of such pictures, and they are still the digit they were drawn from.
    right = np.mean([p.digit == t for p, t in zip(Recognizer.load(model_dir).classify(x), y)])
    assert right >= 0.85, right


def test_captured_copies_are_cached_and_the_same_with_any_number_of_workers(mnist, tmp_path: Path, monkeypatch):
    images, labels = mnist.train_images[:120], mnist.train_labels[:120]
    x1, y1 = captured_digits(images, labels, 1, workers=1, cache_dir=tmp_path / "a", log=lambda _: None)
    x2, y2 = captured_digits(images, labels, 1, workers=2, cache_dir=tmp_path / "b", log=lambda _: None)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert len(list((tmp_path / "a").glob("*.npz"))) == 1

    def fail(task):  # noqa: ANN001, ANN202
        raise AssertionError("drawn again although cached")

    monkeypatch.setattr(captures, "_read_back", fail)
    x3, _ = captured_digits(images, labels, 1, workers=1, cache_dir=tmp_path / "a", log=lambda _: None)
    assert np.array_equal(x1, x3)
    other_seed = tmp_path / "a"
    with pytest.raises(AssertionError, match="drawn again"):
        captured_digits(images, labels, 1, seed=1, workers=1, cache_dir=other_seed, log=lambda _: None)


def test_a_stretched_blurry_picture_drawn_for_training_is_one_glyph(mnist):
    # The reader finds the digit in nearly all of what it is trained on: otherwise the copies would teach nothing.
    rng = np.random.default_rng(0)
    found = np.mean([len(prepare(render(d, rng)).glyphs) == 1 for d in mnist.train_images[:200]])
    assert found >= 0.9, found
