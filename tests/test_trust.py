"""Calibration and out-of-distribution measures, checked against direct computations that can be trusted."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from digits.errors import DataError
from digits.reading.calibration import auroc, fpr_at_tpr, reliability, risk_coverage
from digits.train import trust


def test_auroc_from_ranks_equals_counting_every_pair_ties_included():
    rng = np.random.default_rng(0)
    for pos, neg in ((rng.normal(1, 1, 300), rng.normal(0, 1, 400)), (rng.integers(0, 5, 200), rng.integers(0, 4, 90))):
        pairs = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
        assert auroc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0, 1], [2, 3]) == 0.0 and auroc([1, 1], [1]) == 0.5


def test_fpr_at_95_tpr_is_the_share_of_negatives_above_the_threshold_that_flags_95_percent():
    pos = np.arange(100, dtype=float)  # the threshold that flags 95 of them is 5
    neg = np.array([0.0, 4.0, 5.0, 6.0, 50.0])
    assert fpr_at_tpr(pos, neg) == pytest.approx(3 / 5)


def test_reliability_bins_and_ece_by_hand():
    # Four answers: two at confidence 0.95 (one right), two at 0.55 (both right).
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    rel = reliability(p, y, bins=10)
    assert rel.count.sum() == 4 and rel.count[9] == 2 and rel.count[5] == 2
    assert rel.accuracy[9] == 0.5 and rel.accuracy[5] == 1.0
    assert rel.ece == pytest.approx(0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55))
    honest = np.array([[0.8, 0.2]] * 5)  # 80% confident, right 4 times in 5
    assert reliability(honest, np.array([0, 0, 0, 0, 1])).ece == pytest.approx(0.0, abs=1e-12)


def test_risk_coverage_keeps_the_most_confident_first():
    coverage, risk = risk_coverage(np.array([0.9, 0.2, 0.8, 0.5]), np.array([True, False, True, False]))
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == [0.0, 0.0, pytest.approx(1 / 3), 0.5]


def test_near_ood_sets_are_mnist_shaped_and_reproducible():
    sets = trust.near_ood(seed=0)
    for name, images in sets.items():
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) > 0, name
    letters = sets["letters and symbols (Hershey fonts)"]
    assert letters.max() == 255 and (letters.reshape(len(letters), -1) > 0).mean() > 0.05  # ink, centred like MNIST
    assert all(np.array_equal(a, b) for a, b in zip(sets.values(), trust.near_ood(seed=0).values()))


def test_fashion_mnist_is_verified_and_its_absence_says_how_to_install_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        trust.fashion_mnist(tmp_path)
    header = np.array([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28], np.uint8).tobytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(2 * 784)))
    with pytest.raises(DataError, match="is not Fashion-MNIST's test set"):
        trust.fashion_mnist(tmp_path)
    images = trust.fashion_mnist()  # Debian's dataset-fashion-mnist, which scripts/test.sh installs
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8


def test_a_model_that_knows_digits_doubts_what_is_not_one(model_dir, mnist):
    from digits.data import MNIST
    from digits.models.weights import load_weights

    network, meta = load_weights(model_dir)
    small = MNIST(mnist.train_images, mnist.train_labels, mnist.test_images[:2000], mnist.test_labels[:2000], {})
    near = trust.near_ood()
    measured = trust.measure_trust(network, small, temperature=meta.get("temperature", 1.0), others=near)
    record = measured.to_dict()
    assert record["ece_scaled"] < 0.05 and 0 <= record["risk_at_coverage"]["90%"] <= record["risk_at_coverage"]["100%"]
    assert measured.ood["letters and symbols (Hershey fonts)"]["auroc"] > 0.8
    assert measured.ood["blank (even grey levels)"]["n"] == 16
