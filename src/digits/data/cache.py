"""Where the four raw MNIST files live on disk, and how they get there safely.

The cache holds the raw (uncompressed) IDX files under their standard names. A file is only ever
trusted after its SHA-256 matches the canonical one: "file exists" is not "file verified". Files are
written with :func:`digits.files.write_bytes` (a temporary name, flushed, then renamed into place), so an
interrupted fetch never leaves a half file behind under a name that could later pass for data.
"""

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

from digits.errors import DataError

# SHA-256 of the raw, uncompressed IDX files as published on LeCun's MNIST page (and mirrored
# byte-for-byte by the usual mirrors). Order: training images, training labels, test images, labels.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def default_data_dir() -> Path:
    """Return ``$DIGITS_DATA_DIR`` if set, else the per-user cache folder ``.../digits/mnist``."""
    env = os.environ.get("DIGITS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("digits")) / "mnist"


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(name: str, data: bytes, *, origin: str) -> None:
    """Raise DataError unless ``data`` is the official content of the MNIST file ``name``.

    ``origin`` says where the bytes came from (a path or URL), so the message can name it.
    """
    expected = FILES[name]
    actual = sha256_hex(data)
    if actual != expected:
        raise DataError(
            f"{name} from {origin} failed verification: sha256 is {actual}, expected {expected} "
            f"({len(data)} bytes). The file is truncated, corrupted or not the official MNIST file; "
            "delete it and get a fresh copy."
        )


def read_cached(data_dir: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    """Return the raw bytes of each cached file that passes verification.

    A cached file that fails verification is reported through ``log`` and left out, so it gets
    fetched again (and atomically replaced); it is never used.
    """
    verified: dict[str, bytes] = {}
    for name in FILES:
        path = data_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            check_sha256(name, data, origin=str(path))
        except DataError as err:
            log(f"cached file rejected, fetching it again: {err}")
            continue
        verified[name] = data
    return verified
