"""Calibrated confidences: temperature scaling, fitted on held-out logits.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017): a network
trained with cross-entropy is overconfident, and dividing its logits by one scalar T > 0, chosen to
minimise the negative log-likelihood on validation data, makes its probabilities honest without
changing any prediction (the argmax of z / T is that of z).

Only numpy: training fits T, the Recognizer applies it, and neither needs the other's libraries.
"""

from __future__ import annotations

import math

import numpy as np

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
