"""Where MNIST comes from: sources, checksums, IDX parsing and the local cache.

    from digits.data import load_mnist
    mnist = load_mnist()          # fetches and verifies on first use, then loads from the cache
    mnist.train_images.shape      # (60000, 28, 28) uint8

Every file is checked against the canonical SHA-256 of the raw IDX file, whatever its source, before
it is cached or used. This package needs numpy only; it knows nothing of models or command lines.
"""

from digits.errors import DataError

from .cache import FILES, default_data_dir
from .mnist import MNIST, fetch_mnist, load_mnist

__all__ = ["FILES", "MNIST", "DataError", "default_data_dir", "fetch_mnist", "load_mnist"]
