"""Fit the digit-shape model behind "unlike a handwritten digit" on MNIST training digits.

The model itself (:class:`digits.reading.calibration.DigitShapes`) is read by the Recognizer with numpy
alone; fitting it needs MNIST, so it lives on the training side. The file shipped in the package is
``python -m digits.train.shapes``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np

from digits.data import load_mnist
from digits.errors import ConfigError
from digits.reading.calibration import DigitShapes
from digits.spec import NUM_CLASSES, PIXEL_SCALE, SHIPPED_SHAPES


def fit_digit_shapes(
    images: np.ndarray, labels: np.ndarray, *, k: int = 10, quantile: float = 98.0, info: dict[str, Any] | None = None
) -> DigitShapes:
    """Fit :class:`DigitShapes` on (N, 28, 28) uint8 MNIST training digits and their labels.

    With k = 10 directions per class and the limit at the 98th percentile, 2% of held-out MNIST
    digits score above 1 (fewer, about 0.5%, once photographed and normalised by digits.reading.pipeline),
    while most letters, symbols and scribbles a network calls digits do (benchmarks/reading_quality.py).
    The file shipped in the package is made by :func:`main`.
    """
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(PIXEL_SCALE)
    y = np.asarray(labels).astype(np.int64)
    classes = np.unique(y)
    if not np.array_equal(classes, np.arange(NUM_CLASSES)):
        raise ConfigError(f"need training digits of all ten classes, got classes {classes.tolist()}")
    means, comps, variances, noise = [], [], [], []
    for c in range(NUM_CLASSES):
        xc = x[y == c]
        if len(xc) <= k:
            raise ConfigError(f"need more than {k} training digits of class {c}, got {len(xc)}")
        mu = xc.mean(axis=0)
        # Eigenvalues of the covariance from the singular values of the centred data.
        _, s, vt = np.linalg.svd(xc - mu, full_matrices=False)
        lam = s.astype(np.float64) ** 2 / len(xc)
        means.append(mu)
        comps.append(vt[:k])
        variances.append(lam[:k])
        # The ML noise variance of PPCA: the mean of the discarded eigenvalues (over all 784 pixels).
        noise.append(max(lam[k:].sum() / (x.shape[1] - k), 1e-6))
    shapes = DigitShapes(
        mean=np.stack(means).astype(np.float32),
        components=np.stack(comps).astype(np.float32),
        variances=np.asarray(variances, np.float32),
        noise=np.asarray(noise, np.float32),
        median=np.zeros(NUM_CLASSES, np.float32),
        limit=np.ones(NUM_CLASSES, np.float32),
        info={"n": int(len(x)), "k": k, "quantile": quantile, **(info or {})},
    )
    d2 = shapes.score(images, y)  # with median 0 and limit 1: the squared distances themselves
    median = np.array([np.median(d2[y == c]) for c in range(NUM_CLASSES)], np.float32)
    limit = np.array([np.percentile(d2[y == c], quantile) for c in range(NUM_CLASSES)], np.float32)
    return dataclasses.replace(shapes, median=median, limit=limit)


def main(argv: list[str] | None = None) -> None:
    """Fit the digit shapes shipped in the package: ``python -m digits.train.shapes [--data-dir D] [-o FILE]``.

    Uses the first 48,000 MNIST training images, which are training images under any validation
    split up to 20%, so no model's validation or test digits are ever looked at, and one captured copy of
    each (``--captures``), so a digit from another scanner is not "unlike a digit" for its framing alone.
    """
    parser = argparse.ArgumentParser(prog="python -m digits.train.shapes", description=main.__doc__)
    parser.add_argument("--data-dir", help="where MNIST is cached (default: $DIGITS_DATA_DIR or the user cache)")
    parser.add_argument("-o", "--out", default=str(SHIPPED_SHAPES))
    parser.add_argument(
        "--captures",
        type=int,
        default=1,
        metavar="N",
        help="also fit on N captured copies of each digit (digits.train.captures), as the reader is trained "
        "(default 1: on the dev reading sets, a third fewer right answers doubted, as many letters caught)",
    )
    parser.add_argument("--quantile", type=float, default=98.0, help="percentile of the training scores at the limit")
    args = parser.parse_args(argv)
    if args.captures < 0:
        parser.error(f"--captures must be 0 or more, got {args.captures}")
    if not 50.0 <= args.quantile < 100.0:
        parser.error(f"--quantile must be a percentile in [50, 100), got {args.quantile}")
    data = load_mnist(args.data_dir)
    n = 48_000
    checksums = {name: sha for name, sha in data.sha256.items() if name.startswith("train")}
    images, labels = data.train_images[:n], data.train_labels[:n]
    described = f"MNIST training images 0..{n - 1}"
    if args.captures:
        from digits.train.captures import captured_digits

        extra, extra_labels = captured_digits(images, labels, args.captures)
        images, labels = np.concatenate([images, extra]), np.concatenate([labels, extra_labels])
        described += f" and {args.captures} captured copies of each (digits.train.captures)"
    shapes = fit_digit_shapes(
        images, labels, quantile=args.quantile, info={"images": described, "data_sha256": checksums}
    )
    shapes.save(args.out)
    print(f"wrote {args.out}: {shapes.info['k']} directions per digit, limit at percentile {shapes.info['quantile']}")


if __name__ == "__main__":
    main()
