"""Calibrated confidences: temperature scaling, fitted on held-out logits.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017): a network
trained with cross-entropy is overconfident, and dividing its logits by one scalar T > 0, chosen to
minimise the negative log-likelihood on validation data, makes its probabilities honest without
changing any prediction (the argmax of z / T is that of z).

The same goes for a shape that is no digit at all (a letter, a scribble): :class:`DigitShapes`
says how far an image is from the handwritten digits of the class the network chose.

And how to tell whether confidences are honest: expected calibration error and its reliability bins,
risk against coverage, and how well a score tells what is not a digit from what is (AUROC, FPR at 95% TPR).

Only numpy: training fits T, the Recognizer applies it, and neither needs the other's libraries.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digits.errors import ModelFileError
from digits.spec import PIXEL_SCALE

# T is searched between these. Below 0.05 a logit gap of 1 already means certainty; above 20 every
# prediction is close to uniform. Either end means the logits are not worth calibrating.
T_MIN = 0.05
T_MAX = 20.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis, as float32 (computed in float64).

    Subtracting the row maximum first keeps exp() from overflowing on large logits.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    z, y = _check(logits, labels)
    z = z / temperature
    m = z.max(axis=1)
    log_normaliser = m + np.log(np.exp(z - m[:, None]).sum(axis=1))  # (N,) log-sum-exp
    return float(np.mean(log_normaliser - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, tol: float = 1e-4) -> float:
    """The temperature T in [T_MIN, T_MAX] that minimises the NLL of softmax(logits / T) on (logits, labels).

    logits: (N, C) held-out logits (the validation split, never the test set). labels: (N,) ints.
    The NLL is convex in 1/T (a log-sum-exp of linear functions plus a linear term), so it has one
    minimum along log T too, and a golden-section search on log T finds it to ``tol`` (relative).
    """
    z, y = _check(logits, labels)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    while hi - lo > tol:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:  # the minimum lies in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, y, math.exp(b))
    return math.exp((lo + hi) / 2.0)


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty (N, C) array, got shape {z.shape}")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be ({z.shape[0]},) integers, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in [0, {z.shape[1]}), got values in [{y.min()}, {y.max()}]")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinity")
    return z, y.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Are the confidences honest?

ECE_BINS = 15  # Guo et al. 2017 measure calibration in 15 equal-width bins of confidence


@dataclass(frozen=True)
class Reliability:
    """Confidence against accuracy in equal-width bins: what a reliability diagram draws.

    ``ece``, the expected calibration error, is the mean over answers of |accuracy - confidence| of their
    bin: 0 when a stated 80% is right 80% of the time (Naeini et al. 2015; Guo et al. 2017).
    """

    ece: float
    edges: np.ndarray  # (bins + 1,) from 0 to 1
    confidence: np.ndarray  # (bins,) mean confidence of the answers in each bin (NaN where empty)
    accuracy: np.ndarray  # (bins,) share right in each bin (NaN where empty)
    count: np.ndarray  # (bins,) answers in each bin


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin each answer (the argmax of ``probabilities`` (N, C)) by its confidence and compare with ``labels`` (N,)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or len(p) == 0 or y.shape != (len(p),):
        raise ValueError(f"probabilities must be (N, C) and labels (N,), got {p.shape} and {y.shape}")
    confidence, right = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi] bins
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, bins) / count
        mean_acc = np.bincount(which, right, bins) / count
    gap = np.where(count > 0, np.abs(mean_acc - mean_conf), 0.0)
    return Reliability(float((gap * count).sum() / len(p)), edges, mean_conf, mean_acc, count)


def risk_coverage(confidence: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): answering only the most confident share ``coverage[i]`` of the inputs, the share
    ``risk[i]`` of those answers that are wrong (El-Yaniv and Wiener 2010). Both (N,), coverage rising to 1."""
    order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
    wrong = 1.0 - np.asarray(right, dtype=np.float64)[order]
    n = np.arange(1, len(order) + 1)
    return n / len(order), np.cumsum(wrong) / n


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The area under the ROC curve of a score meant to be higher for ``positive`` than for ``negative``:
    P(a positive scores above a negative), ties counting half (the Mann-Whitney U statistic, from ranks)."""
    pos, neg = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auroc needs at least one positive and one negative score")
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0  # tied scores share the mean of their ranks
    ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def fpr_at_tpr(positive: np.ndarray, negative: np.ndarray, tpr: float = 0.95) -> float:
    """The share of ``negative`` flagged when the threshold on the score flags ``tpr`` of ``positive``."""
    pos, neg = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("fpr_at_tpr needs at least one positive and one negative score")
    k = max(1, math.ceil(tpr * len(pos) - 1e-9))  # flag the k highest positives: at least ``tpr`` of them
    threshold = np.sort(pos)[::-1][k - 1]  # flag every score >= this
    return float(np.mean(neg >= threshold))


# --------------------------------------------------------------------------------------------------
# Does it look like a handwritten digit at all?


@dataclass(frozen=True, eq=False)
class DigitShapes:
    """A model of what each handwritten digit looks like, to notice a shape that is none of them.

    A classifier trained on digits only must call everything a digit, and does so with confidence:
    a letter W comes out as a 4 at 99%. So, besides the network, each class c is described by a
    Gaussian over its 784 pixels: probabilistic PCA (Tipping and Bishop 1999) with ``k`` principal
    directions and isotropic noise elsewhere, fitted on MNIST training digits. The score of an image
    for class c is its squared Mahalanobis distance d2 under that Gaussian, rescaled so that the
    median training digit of class c scores 0 and the ``quantile``-th percentile scores 1: above 1
    means "unlike the digits c". (Rescaling from the median rather than from 0 matters: d2 of a
    typical digit is far from 0, and what tells a scribble apart is how much further it lies.)
    It knows nothing of the network, so it holds for any model. :mod:`digits.train.shapes` fits it.
    """

    mean: np.ndarray  # (10, 784) float32 per-class mean, pixels in [0, 1]
    components: np.ndarray  # (10, k, 784) float32 orthonormal principal directions
    variances: np.ndarray  # (10, k) float32 variance along each direction
    noise: np.ndarray  # (10,) float32 variance per pixel outside the principal subspace
    median: np.ndarray  # (10,) float32 median d2 of the training digits of each class
    limit: np.ndarray  # (10,) float32 d2 that `quantile` percent of the training digits stay below
    info: dict[str, Any] = field(default_factory=dict)  # how it was fitted: n, k, quantile, data checksums

    def score(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(N,) how far each (N, 28, 28) uint8 image lies from the digits of its class: 0 for a typical
        one, 1 at the limit, more for shapes unlike them."""
        x = np.asarray(images, dtype=np.float32).reshape(len(images), self.mean.shape[1]) / np.float32(PIXEL_SCALE)
        classes = np.asarray(classes, dtype=np.int64)
        out = np.zeros(len(x), np.float32)
        for c in np.unique(classes):
            rows = classes == c
            d = x[rows] - self.mean[c]  # (n, 784)
            coef = d @ self.components[c].T  # (n, k): position within the class's principal subspace
            residual = d - coef @ self.components[c]  # (n, 784): what the subspace cannot explain
            squared = (coef**2 / self.variances[c]).sum(axis=1) + (residual**2).sum(axis=1) / self.noise[c]
            out[rows] = (squared - self.median[c]) / (self.limit[c] - self.median[c])
        return out

    def save(self, path: str | Path) -> None:
        """Write as a .npz of plain arrays (read back without pickle)."""
        arrays = {name: getattr(self, name) for name in _SHAPE_ARRAYS}
        with open(path, "wb") as f:  # a file object, or savez would append .npz to any other name
            np.savez_compressed(f, **arrays, info=np.array(json.dumps(self.info)))

    @classmethod
    def load(cls, path: str | Path) -> DigitShapes:
        """Read a file written by :meth:`save`; :class:`ModelFileError` when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name].astype(np.float32) for name in _SHAPE_ARRAYS}
                info = json.loads(str(f["info"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ModelFileError(f"{path} is not a digit shapes file ({e})") from e
        return cls(**arrays, info=info)


_SHAPE_ARRAYS = ("mean", "components", "variances", "noise", "median", "limit")
