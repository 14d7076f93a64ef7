"""How far a trained model's confidence can be trusted: calibration, risk against coverage, and what is no digit.

On the MNIST test set: the expected calibration error (15 bins) of the raw softmax and after temperature
scaling (the run's temperature, fitted on validation), their reliability bins, and the risk-coverage curve
(the error rate among the answers kept, as the threshold moves). On pictures that are no digit: how well
the uncertainty 1 - max softmax tells them from MNIST test digits (AUROC; FPR at 95% TPR, the share of
digits flagged when 95% of the others are), for

* far from digits: Fashion-MNIST's test set (clothes, shoes, bags as 28x28 light-on-black pictures), from
  Debian's ``dataset-fashion-mnist`` package, checked against the sha256 of its contents;
* near to digits: letters and symbols in OpenCV's Hershey fonts (never the stroke templates training draws
  non-digits from: :mod:`digits.train.outliers`), normalised like MNIST; noise; blank pictures of even grey.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from digits.data import MNIST
from digits.data.idx import parse_idx
from digits.errors import DataError
from digits.models.inference import predict_logits
from digits.reading.calibration import Reliability, auroc, fpr_at_tpr, reliability, risk_coverage, softmax
from digits.reading.normalize import to_mnist

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist puts it
# sha256 of the raw (uncompressed) IDX files: Debian recompresses the .gz files, so theirs differ from upstream's.
FASHION_SHA256 = {
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# Letters often written like a digit (O, I, l, S, Z, B, G, q, g, b, D, ...) are left out: they are near digits
# by right, and a model that reads an O as 0 is not wrong.
NEAR_LETTERS = "ACEFHJKLMNPRTUVWXYacdefhkmnprtuvwxy#%&*+=<>?@$"
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


def fashion_mnist(folder: str | Path = FASHION_DIR) -> np.ndarray:
    """Fashion-MNIST's 10,000 test pictures, (10000, 28, 28) uint8, verified; DataError saying how to get them."""
    path = Path(folder) / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        raise DataError(
            f"Fashion-MNIST is not at {path}; install it with `apt-get install dataset-fashion-mnist` (Debian, "
            "Ubuntu) or put Zalando's t10k-images-idx3-ubyte.gz in a folder and pass that folder"
        )
    raw = gzip.decompress(path.read_bytes())
    name = "t10k-images-idx3-ubyte"
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FASHION_SHA256[name]:
        raise DataError(f"{path} is not Fashion-MNIST's test set: its contents hash to {digest}")
    return parse_idx(raw, name=name, ndim=3)


def near_ood(seed: int = 0) -> dict[str, np.ndarray]:
    """Pictures near to digits but none: (N, 28, 28) uint8 sets by name (letters and symbols, noise, blank)."""
    rng = np.random.default_rng(seed)
    letters = []
    for font in _FONTS:
        for italic in (0, cv2.FONT_ITALIC):
            for ch in NEAR_LETTERS:
                canvas = np.zeros((120, 120), np.uint8)
                cv2.putText(canvas, ch, (20, 95), font | italic, 2.6, 255, int(rng.integers(4, 9)), cv2.LINE_AA)
                letters.append(to_mnist(canvas))
    n = 500
    uniform = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    gaussian = np.clip(rng.normal(40, 60, (n, 28, 28)), 0, 255).astype(np.uint8)
    sparse = np.where(rng.random((n, 28, 28)) < 0.08, 255, 0).astype(np.uint8)
    return {
        "letters and symbols (Hershey fonts)": np.stack(letters),
        "noise (uniform, gaussian, sparse specks)": np.concatenate([uniform, gaussian, sparse]),
        "blank (even grey levels)": np.repeat(np.arange(0, 256, 16, dtype=np.uint8), 28 * 28).reshape(16, 28, 28),
    }


@dataclass(frozen=True)
class Trust:
    """Calibration and out-of-distribution figures of one model on the MNIST test set (see the module)."""

    temperature: float
    raw: Reliability  # the softmax of the logits as they are
    scaled: Reliability  # after dividing the logits by the temperature
    coverage: np.ndarray  # (N,) share of test digits answered, most confident first
    risk: np.ndarray  # (N,) share of those answers that are wrong
    ood: dict[str, dict[str, float]]  # set name -> {"n", "auroc", "fpr_at_95_tpr"}

    def to_dict(self) -> dict[str, Any]:
        at = {f"{c:.0%}": float(self.risk[max(0, round(c * len(self.risk)) - 1)]) for c in (1.0, 0.99, 0.95, 0.9)}
        return {
            "temperature": self.temperature,
            "ece": self.raw.ece,
            "ece_scaled": self.scaled.ece,
            "risk_at_coverage": at,
            "ood": self.ood,
        }


def measure_trust(
    model: nn.Module, data: MNIST, *, temperature: float = 1.0, others: dict[str, np.ndarray] | None = None
) -> Trust:
    """The figures of :class:`Trust` for ``model`` (calibrated by ``temperature``) on ``data``'s test set.

    ``others``: the pictures that are no digit, by set name (default: Fashion-MNIST when installed, and
    :func:`near_ood`); each set's uncertainty (1 - max softmax) is compared with the test digits'.
    """
    logits = _logits(model, data.test_images)
    labels = data.test_labels.astype(np.int64)
    scaled = softmax(logits, temperature)
    confidence = scaled.max(axis=1)
    coverage, risk = risk_coverage(confidence, scaled.argmax(axis=1) == labels)
    if others is None:
        others = {}
        with contextlib.suppress(DataError):  # not installed here: the near sets still say how the model fares
            others["Fashion-MNIST (far from digits)"] = fashion_mnist()
        others.update(near_ood())
    ood = {}
    for name, images in others.items():
        doubt = 1.0 - softmax(_logits(model, images), temperature).max(axis=1)
        ood[name] = {
            "n": len(images),
            "auroc": auroc(doubt, 1.0 - confidence),
            "fpr_at_95_tpr": fpr_at_tpr(doubt, 1.0 - confidence),
            "mean_confidence": float(1.0 - doubt.mean()),
        }
    return Trust(temperature, reliability(softmax(logits), labels), reliability(scaled, labels), coverage, risk, ood)


def _logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return predict_logits(model.eval(), torch.tensor(images), device="cpu").numpy()  # a copy: theirs is read-only
