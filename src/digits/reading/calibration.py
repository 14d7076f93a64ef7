"""Calibrated confidences: temperature scaling, fitted on held-out logits.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017): a network
trained with cross-entropy is overconfident, and dividing its logits by one scalar T > 0, chosen to
minimise the negative log-likelihood on validation data, makes its probabilities honest without
changing any prediction (the argmax of z / T is that of z).

The same goes for a shape that is no digit at all (a letter, a scribble): :class:`DigitShapes`
says how far an image is from the handwritten digits of the class the network chose.

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
