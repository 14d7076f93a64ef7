"""Where the four raw MNIST files live on disk, and how they get there safely.

The cache holds the raw (uncompressed) IDX files under their standard names. A file is only ever
trusted after its SHA-256 matches the canonical one: "file exists" is not "file verified". Before a
file on disk is read, its size is checked against the canonical file's, so a wrong file (a video saved
under an MNIST name) is a clear DataError, never a MemoryError. Files are written with
:func:`digits.files.write_bytes` (a temporary name, flushed, then renamed into place), so an interrupted
fetch never leaves a half file behind under a name that could later pass for data.
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

# Sizes in bytes of the raw IDX files (header and data: 16 + 60,000 x 28 x 28 for the training images)
# and of the official .gz files (LeCun's page and its mirrors serve the same bytes).
SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
GZ_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 9_912_422,
    "train-labels-idx1-ubyte": 28_881,
    "t10k-images-idx3-ubyte": 1_648_877,
    "t10k-labels-idx1-ubyte": 4_542,
}
CHUNK_BYTES = 1 << 20  # files are read and hashed 1 MiB at a time


def default_data_dir() -> Path:
    """Return ``$DIGITS_DATA_DIR`` if set, else the per-user cache folder ``.../digits/mnist``."""
    env = os.environ.get("DIGITS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("digits")) / "mnist"


def max_gz_size(name: str) -> int:
    """The most bytes a gzip of the raw file ``name`` can take, however it was compressed.

    A user's own ``gzip`` of the file differs from the official .gz, so only a bound is checked: deflate's
    worst case stores the bytes as they are, 5 bytes of framing per 64 KiB block (zlib's deflateBound),
    well under the 0.1% allowed here, plus a header that may carry a file name.
    """
    return SIZES[name] + SIZES[name] // 1000 + 1024


def check_size(path: Path, name: str, size: int, *, gz: bool = False) -> None:
    """Raise DataError unless ``size`` bytes can be the MNIST file ``name`` (raw, or gzipped with ``gz``).

    ``path`` is the file's place on disk, named in the message with the fix.
    """
    if gz:
        limit = max_gz_size(name)
        if size <= limit:
            return
        expected = f"the official {name}.gz is {GZ_SIZES[name]:,} bytes and no gzip of {name} is over {limit:,}"
    else:
        if size == SIZES[name]:
            return
        expected = f"{name} is {SIZES[name]:,} bytes"
    raise DataError(
        f"{path} is {size:,} bytes, but {expected}: it is not the MNIST file (another file, truncated or padded). "
        "Delete it and fetch MNIST again."
    )


def read_bounded(path: Path, name: str, *, gz: bool = False) -> bytes:
    """The bytes of ``path``, a copy of the MNIST file ``name`` (gzipped with ``gz``), if its size can be that file's.

    The size is checked before a byte is read, and reading stops one byte past the limit should the file grow
    meanwhile: a huge file costs a DataError, not all of memory. The content is not verified here.
    """
    check_size(path, name, path.stat().st_size, gz=gz)
    limit = max_gz_size(name) if gz else SIZES[name]
    with path.open("rb") as f:
        data = f.read(limit + 1)
    check_size(path, name, len(data), gz=gz)
    return data


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(name: str, data: bytes, *, origin: str) -> None:
    """Raise DataError unless ``data`` is the official content of the MNIST file ``name``.

    ``origin`` says where the bytes came from (a path or URL), so the message can name it.
    """
    _check_digest(name, sha256_hex(data), len(data), origin=origin)


def _check_digest(name: str, actual: str, size: int, *, origin: str) -> None:
    expected = FILES[name]
    if actual != expected:
        raise DataError(
            f"{name} from {origin} failed verification: sha256 is {actual}, expected {expected} "
            f"({size:,} bytes). The file is truncated, corrupted or not the official MNIST file; "
            "delete it and get a fresh copy."
        )


def read_verified(path: Path, name: str) -> bytes:
    """The bytes of ``path`` if they are the official MNIST file ``name``; DataError (size or hash) if not.

    The size is checked before reading; the bytes are then hashed as they are read, a chunk at a time.
    """
    check_size(path, name, path.stat().st_size)
    digest = hashlib.sha256()
    chunks, total = [], 0
    with path.open("rb") as f:
        while total <= SIZES[name] and (chunk := f.read(CHUNK_BYTES)):  # at most one chunk past the size
            digest.update(chunk)
            chunks.append(chunk)
            total += len(chunk)
    data = b"".join(chunks)
    check_size(path, name, len(data))  # the file changed size since the first check
    _check_digest(name, digest.hexdigest(), len(data), origin=str(path))
    return data


def read_cached(data_dir: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    """Return the raw bytes of each cached file that passes verification.

    A cached file that fails verification is reported through ``log`` and left out, so it gets
    fetched again (and atomically replaced); it is never used.
    """
    verified: dict[str, bytes] = {}
    for name in FILES:
        path = data_dir / name
        try:
            data = read_verified(path, name)
        except FileNotFoundError:
            continue
        except DataError as err:
            log(f"cached file rejected, fetching it again: {err}")
            continue
        verified[name] = data
    return verified
