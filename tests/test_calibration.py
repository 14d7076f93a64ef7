"""Temperature scaling, checked against torch and known temperatures; digit shapes, checked on real digits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from digits.data import FILES
from digits.reading.calibration import T_MAX, T_MIN, DigitShapes, fit_temperature, nll, softmax
from digits.spec import SHIPPED_SHAPES
from digits.train.shapes import fit_digit_shapes


def _sample(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): that T is the true calibration."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, (n, 10))
    p = softmax(logits, temperature).astype(np.float64)
    u = rng.random((n, 1))
    labels = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), 9)  # inverse-CDF sampling per row
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_softmax_and_nll_match_torch(temperature):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 5, (64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64) / temperature, dim=1).numpy()
    np.testing.assert_allclose(softmax(logits, temperature), expected, rtol=1e-5, atol=1e-7)
    expected_nll = F.cross_entropy(torch.tensor(logits, dtype=torch.float64) / temperature, torch.tensor(labels))
    assert nll(logits, labels, temperature) == pytest.approx(expected_nll.item(), rel=1e-9)


def test_softmax_is_stable_on_huge_logits():
    p = softmax(np.array([[1e4, 0.0, -1e4], [800.0, 800.0, 0.0]]), 0.1)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-6)


@pytest.mark.parametrize("true_t", [0.6, 1.0, 1.8, 4.0])
def test_fit_recovers_a_known_temperature(true_t):
    logits, labels = _sample(20_000, true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_fit_is_the_minimum_of_a_brute_force_search():
    logits, labels = _sample(3_000, 1.7, seed=3)
    grid = np.exp(np.linspace(np.log(T_MIN), np.log(T_MAX), 4001))
    best = grid[np.argmin([nll(logits, labels, t) for t in grid])]
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(best, rel=0.01)
    assert nll(logits, labels, t) <= nll(logits, labels, best) + 1e-9


def test_an_overconfident_model_gets_cooled_and_keeps_its_predictions():
    # Logits three times too sharp for how often they are right: the fit should undo the factor.
    logits, labels = _sample(10_000, 1.0, seed=5)
    sharp = 3.0 * logits
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert nll(sharp, labels, t) < nll(sharp, labels, 1.0)
    np.testing.assert_array_equal(softmax(sharp, t).argmax(1), sharp.argmax(1))


def test_fit_stays_inside_its_bounds():
    # Always right with a margin: the NLL keeps falling as T shrinks, so the fit stops at T_MIN.
    logits = np.eye(10)[np.arange(100) % 10] * 5.0
    labels = np.arange(100) % 10
    assert fit_temperature(logits, labels) == pytest.approx(T_MIN, rel=1e-3)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((0, 10)), np.zeros(0, int), "non-empty"),
        (np.zeros(10), np.zeros(1, int), "non-empty"),
        (np.zeros((4, 10)), np.zeros(3, int), "labels must be"),
        (np.zeros((4, 10)), np.full(4, 0.5), "labels must be"),
        (np.zeros((4, 10)), np.array([0, 1, 2, 10]), "labels must lie"),
        (np.full((4, 10), np.nan), np.zeros(4, int), "NaN"),
    ],
)
def test_bad_inputs_are_clear_errors(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        softmax(np.zeros((1, 10)), 0.0)


# --------------------------------------------------------------------------------------------------
# Digit shapes


@pytest.fixture(scope="module")
def shapes(mnist):
    return fit_digit_shapes(mnist.train_images[:20_000], mnist.train_labels[:20_000])


def test_shapes_pass_most_held_out_digits_of_their_class(shapes, mnist):
    scores = shapes.score(mnist.test_images, mnist.test_labels)
    # The limit is the 98th percentile of the training digits: held-out digits exceed it about as often.
    assert 0.005 < np.mean(scores > 1.0) < 0.05
    assert abs(float(np.median(scores))) < 0.2  # a typical digit scores about 0


def test_shapes_tell_one_digit_from_another(shapes, mnist):
    # Scored as some other digit, a digit is "unlike" it many times more often than as its own.
    # (Not always: a Gaussian per class is broad, and a thin 1 fits inside most classes.)
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000].astype(int)
    wrong = (labels + 1 + np.arange(len(labels)) % 9) % 10  # every other class, in turn
    own = np.mean(shapes.score(images, labels) > 1.0)
    other = np.mean(shapes.score(images, wrong) > 1.0)
    assert other > 0.4 and other > 10 * own


def test_shapes_flag_letters_that_a_network_calls_4(shapes):
    from digits.testing.scenes import stroke_digit

    letters = {
        "M": [[(15, 180), (30, 20), (100, 140), (170, 20), (185, 180)]],
        "H": [[(30, 15), (30, 185)], [(170, 15), (170, 185)], [(30, 100), (170, 100)]],
        "N": [[(30, 185), (30, 15), (170, 185), (170, 15)]],
    }
    images = np.stack([stroke_digit(s, thickness=14) for s in letters.values()])
    assert (shapes.score(images, np.full(len(images), 4)) > 1.0).all()


def test_shapes_survive_a_round_trip_and_refuse_other_files(shapes, mnist, tmp_path):
    path = tmp_path / "shapes.npz"
    shapes.save(path)
    again = DigitShapes.load(path)
    assert again.info == shapes.info
    images, labels = mnist.test_images[:100], mnist.test_labels[:100]
    np.testing.assert_array_equal(again.score(images, labels), shapes.score(images, labels))
    (tmp_path / "junk.npz").write_bytes(b"PK not a zip")
    with pytest.raises(ValueError, match="not a digit shapes file"):
        DigitShapes.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match="not a digit shapes file"):
        DigitShapes.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="all ten classes"):
        fit_digit_shapes(mnist.train_images[:500], np.zeros(500, int))


def test_the_shipped_shapes_were_fitted_on_training_digits(mnist):
    shipped = DigitShapes.load(SHIPPED_SHAPES)
    assert shipped.info["k"] == shipped.components.shape[1] and shipped.info["quantile"] == 98.0
    assert shipped.info["data_sha256"] == {k: v for k, v in FILES.items() if k.startswith("train")}
    assert 0.005 < np.mean(shipped.score(mnist.test_images, mnist.test_labels) > 1.0) < 0.05
