"""Tests for digits.data: IDX parsing, verification, safe caching, sources and the real fetch."""

import gzip
import hashlib
import io
import os
import pickle
import shutil
import time
import urllib.error
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

import digits.data.mnist as mnist_module
from digits.data import FILES, MNIST, DataError, default_data_dir, fetch_mnist, load_mnist
from digits.data.idx import encode_idx, parse_idx
from digits.data.sources import (
    MIRRORS,
    FolderSource,
    HttpsMirror,
    Source,
    SourceSkipped,
    _HttpsOnlyRedirects,
    pickle_splits_to_arrays,
    restricted_load,
)
from digits.files import PARTIAL_SUFFIX

# Per-digit counts of the official split (LeCun's MNIST files), digits 0..9.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def only_sources(monkeypatch: pytest.MonkeyPatch, *sources: Source) -> None:
    """Make fetch_mnist try exactly these sources (no network, no pip)."""
    monkeypatch.setattr(mnist_module, "default_sources", lambda from_dir: list(sources))


def only_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fetch_mnist try only the from_dir folder, as the real code builds it."""
    monkeypatch.setattr(mnist_module, "default_sources", lambda from_dir: [FolderSource(Path(from_dir))])


def no_leftovers(folder: Path) -> bool:
    return not any(p.name.endswith(PARTIAL_SUFFIX) for p in folder.iterdir())


# --- IDX -------------------------------------------------------------------------------------------


def test_idx_round_trip() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    encoded = encode_idx(images)
    assert encoded[:4] == b"\x00\x00\x08\x03"
    assert encoded[4:16] == (5).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    np.testing.assert_array_equal(parse_idx(encoded, ndim=3), images)
    assert encode_idx(labels)[:4] == b"\x00\x00\x08\x01"
    np.testing.assert_array_equal(parse_idx(encode_idx(labels), ndim=1), labels)


def test_idx_bad_magic_is_rejected() -> None:
    data = bytearray(encode_idx(np.zeros((2, 28, 28), np.uint8)))
    data[2] = 0x0D  # float type code: not an MNIST file
    with pytest.raises(DataError, match="bad IDX magic 0x00000d03"):
        parse_idx(bytes(data), name="x", ndim=3)
    labels = encode_idx(np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="expected 0x00000803"):
        parse_idx(labels, ndim=3)  # a labels file where images were expected


@pytest.mark.parametrize("cut", [1, 100, 2 * 28 * 28 + 10, 2 * 28 * 28 + 16])
def test_idx_truncated_is_rejected(cut: int) -> None:
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="train-images"):
        parse_idx(data[: len(data) - cut], name="train-images", ndim=3)


def test_idx_padded_is_rejected() -> None:
    data = encode_idx(np.zeros(4, np.uint8)) + b"\x00"
    with pytest.raises(DataError, match="truncated or padded"):
        parse_idx(data, ndim=1)


# --- verification of user folders and cache --------------------------------------------------------


def test_tampered_file_in_from_dir_is_rejected(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    shutil.copytree(mnist_dir, src)
    tampered = bytearray((src / "train-labels-idx1-ubyte").read_bytes())
    tampered[1000] ^= 0x01  # one label changed: still a well-formed IDX file
    (src / "train-labels-idx1-ubyte").write_bytes(tampered)
    only_folder(monkeypatch)

    with pytest.raises(DataError) as err:
        fetch_mnist(cache, from_dir=src, log=lambda line: None)
    message = str(err.value)
    assert "train-labels-idx1-ubyte" in message
    assert FILES["train-labels-idx1-ubyte"] in message  # expected hash
    assert sha256(tampered) in message  # actual hash
    assert "--from DIR" in message  # says what to do, with the flag the command line has
    assert not (cache / "train-labels-idx1-ubyte").exists()
    for path in cache.iterdir():  # whatever was cached is verified content
        assert sha256(path.read_bytes()) == FILES[path.name]


def test_truncated_gz_in_from_dir_is_rejected(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    gz = gzip.compress((mnist_dir / "t10k-labels-idx1-ubyte").read_bytes())
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gz[: len(gz) // 2])
    only_folder(monkeypatch)

    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is not a complete gzip file"):
        fetch_mnist(cache, from_dir=src, log=lambda line: None)
    assert list(cache.iterdir()) == []


def test_from_dir_with_raw_and_gz_files(
    mnist: MNIST, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    for name in FILES:
        data = (mnist_dir / name).read_bytes()
        if "labels" in name:
            (src / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (src / name).write_bytes(data)
    only_folder(monkeypatch)
    lines: list[str] = []

    loaded = load_mnist(cache, from_dir=src, log=lines.append)
    assert any(line.startswith(f"trying folder {src}... ok") for line in lines)
    np.testing.assert_array_equal(loaded.train_labels, mnist.train_labels)
    assert np.array_equal(loaded.test_images, mnist.test_images)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)


def test_bad_cached_file_is_reported_and_refetched(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(mnist_dir, cache)
    bad = bytearray((cache / "t10k-labels-idx1-ubyte").read_bytes())
    bad[-1] ^= 0x01
    (cache / "t10k-labels-idx1-ubyte").write_bytes(bad)
    monkeypatch.setenv("DIGITS_OFFLINE", "1")  # real sources; the folder comes first and has it
    lines: list[str] = []

    loaded = load_mnist(cache, from_dir=mnist_dir, log=lines.append)
    assert any("cached file rejected" in line and sha256(bad) in line for line in lines)
    assert sha256((cache / "t10k-labels-idx1-ubyte").read_bytes()) == FILES["t10k-labels-idx1-ubyte"]
    assert np.bincount(loaded.test_labels).tolist() == TEST_COUNTS


def sparse_file(path: Path, size: int = 2 * 10**9) -> Path:
    """A file of ``size`` bytes that is one hole: made at once, takes no disk, reads as zeros."""
    with path.open("wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("train-images-idx3-ubyte", "train-images-idx3-ubyte is 47,040,016 bytes"),
        ("t10k-labels-idx1-ubyte.gz", "the official t10k-labels-idx1-ubyte.gz is 4,542 bytes"),
    ],
)
def test_huge_file_in_from_dir_is_refused_by_its_size_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, expected: str
) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    huge = sparse_file(src / file)  # read whole, it was a MemoryError on a small machine
    only_folder(monkeypatch)

    with pytest.raises(DataError) as err:
        fetch_mnist(cache, from_dir=src, log=lambda line: None)
    message = str(err.value)
    assert f"{huge} is 2,000,000,000 bytes, but {expected}" in message
    assert "Delete it and fetch MNIST again" in message
    assert list(cache.iterdir()) == []


def test_huge_file_in_the_cache_is_refused_by_its_size_and_fetched_again(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    huge = sparse_file(cache / "t10k-labels-idx1-ubyte")
    only_folder(monkeypatch)
    lines: list[str] = []

    loaded = load_mnist(cache, from_dir=mnist_dir, log=lines.append)
    rejected = [line for line in lines if line.startswith("cached file rejected")]
    assert len(rejected) == 1
    assert f"{huge} is 2,000,000,000 bytes, but t10k-labels-idx1-ubyte is 10,008 bytes" in rejected[0]
    assert huge.stat().st_size == 10_008  # replaced by the verified copy
    assert np.bincount(loaded.test_labels).tolist() == TEST_COUNTS


# --- sources ---------------------------------------------------------------------------------------


class Evil:
    """Unpickling this runs a shell command, unless the unpickler refuses it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class EvilExec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [Evil, EvilExec])
def test_restricted_unpickler_refuses_code(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    # Protocol 4 so the array itself needs nothing beyond what the allow-list admits.
    data = pickle.dumps(((np.zeros(3, np.float32), payload(marker)),), protocol=4)
    with pytest.raises(DataError, match=r"refusing to unpickle \w+\.(system|exec)"):
        restricted_load(io.BytesIO(data))
    assert not marker.exists()


def test_pickled_splits_give_back_the_bytes() -> None:
    """The PyPI source's conversion: float32 byte/256 arrays -> the original uint8 IDX content."""
    rng = np.random.default_rng(1)
    split_images = [rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (5, 3, 4)]
    split_labels = [rng.integers(0, 10, size=n).astype(np.int64) for n in (5, 3, 4)]
    splits = tuple(
        (x.reshape(len(x), 784).astype(np.float32) / 256, y) for x, y in zip(split_images, split_labels, strict=True)
    )
    # Protocol 4: the same numpy globals as the real (Python 2, protocol 2) pickle, with bytes stored
    # natively (protocol 2 from Python 3 would route them through _codecs.encode, which is refused).
    loaded = restricted_load(io.BytesIO(pickle.dumps(splits, protocol=4)))
    arrays = pickle_splits_to_arrays(loaded)
    np.testing.assert_array_equal(arrays["train-images-idx3-ubyte"], np.concatenate(split_images[:2]))
    np.testing.assert_array_equal(arrays["train-labels-idx1-ubyte"], np.concatenate(split_labels[:2]))
    np.testing.assert_array_equal(arrays["t10k-images-idx3-ubyte"], split_images[2])
    assert arrays["t10k-labels-idx1-ubyte"].dtype == np.uint8
    with pytest.raises(DataError, match="unexpected structure"):
        pickle_splits_to_arrays(splits[:2])


def test_https_only() -> None:
    with pytest.raises(ValueError, match="https"):
        HttpsMirror("http://example.com/mnist/")
    with pytest.raises(urllib.error.HTTPError, match="non-HTTPS"):
        _HttpsOnlyRedirects().redirect_request(
            None,  # type: ignore[arg-type]
            io.BytesIO(),
            302,
            "Found",
            None,  # type: ignore[arg-type]
            "http://example.com/t10k-labels-idx1-ubyte.gz",
        )


def test_offline_skips_https_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_OFFLINE", "1")
    with pytest.raises(SourceSkipped, match="DIGITS_OFFLINE"):
        list(HttpsMirror(MIRRORS[0]).read(["t10k-labels-idx1-ubyte"]))


class FakeSource:
    def __init__(self, name: str, error: Exception | None = None, files: dict[str, bytes] | None = None):
        self.name = name
        self.error = error
        self.files = files or {}

    def read(self, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if self.error is not None:
            raise self.error
        yield from ((n, self.files[n]) for n in names if n in self.files)


def test_error_lists_every_source_that_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_sources(
        monkeypatch,
        FakeSource("folder A", DataError("no train-images-idx3-ubyte in A")),
        FakeSource("mirror B", SourceSkipped("DIGITS_OFFLINE is set")),
        FakeSource("mirror C", OSError("connection refused")),
        FakeSource("index D", files={"t10k-labels-idx1-ubyte": b"not mnist"}),
    )
    lines: list[str] = []
    with pytest.raises(DataError) as err:
        fetch_mnist(tmp_path, log=lines.append)
    message = str(err.value)
    assert "folder A: no train-images-idx3-ubyte in A" in message
    assert "mirror B: skipped (DIGITS_OFFLINE is set)" in message
    assert "mirror C: connection refused" in message
    assert "index D:" in message and sha256(b"not mnist") in message
    assert "from_dir" in message
    assert lines[1:] == [
        "trying folder A... failed: no train-images-idx3-ubyte in A",
        "skipping mirror B: DIGITS_OFFLINE is set",
        "trying mirror C... failed: connection refused",
        lines[4],
    ]
    assert lines[4].startswith("trying index D... failed: t10k-labels-idx1-ubyte from index D failed")
    assert list(tmp_path.iterdir()) == []


def test_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("DIGITS_DATA_DIR")
    assert default_data_dir().parts[-1] == "mnist"


# --- the real thing --------------------------------------------------------------------------------


def test_real_mnist(mnist: MNIST, mnist_dir: Path) -> None:
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.train_labels.shape == (60000,) and mnist.train_labels.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28) and mnist.test_images.dtype == np.uint8
    assert mnist.test_labels.shape == (10000,) and mnist.test_labels.dtype == np.uint8
    assert np.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels).tolist() == TEST_COUNTS
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert mnist.sha256 == FILES
    assert {p.name: sha256(p.read_bytes()) for p in mnist_dir.iterdir()} == FILES


def test_cached_load_touches_no_source(mnist: MNIST, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fetching(from_dir: object) -> list[Source]:
        raise AssertionError("a verified cache must not be fetched again")

    monkeypatch.setattr(mnist_module, "default_sources", no_fetching)
    lines: list[str] = []
    again = load_mnist(mnist_dir, log=lines.append)
    assert lines == []
    assert np.array_equal(again.train_images, mnist.train_images)  # (assert_array_equal takes ~1 s)
    np.testing.assert_array_equal(again.test_labels, mnist.test_labels)


def test_a_killed_fetchs_partial_files_are_removed_and_a_running_ones_spared(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(mnist_dir, cache)
    old = cache / f".train-images-idx3-ubyte.k1ll3d{PARTIAL_SUFFIX}"
    old.write_bytes(b"\0" * 1000)
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # an hour old: its writer is long gone
    young = cache / f".train-images-idx3-ubyte.wr1t1ng{PARTIAL_SUFFIX}"
    young.write_bytes(b"\0" * 1000)  # another process may be writing it right now
    lines: list[str] = []
    load_mnist(cache, log=lines.append)
    assert not old.exists() and young.exists()
    assert any(old.name in line and "killed fetch" in line for line in lines)


def test_a_cache_that_cannot_be_written_still_gives_the_data_and_says_how_to_keep_it(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digits.errors import WriteError

    def refused(path: Path, data: bytes) -> Path:  # a read-only folder (root may write anywhere: simulate it)
        raise WriteError(f"could not write {path}: permission denied (EACCES).")

    monkeypatch.setattr(mnist_module, "write_bytes", refused)
    only_folder(monkeypatch)
    lines: list[str] = []
    data = load_mnist(tmp_path / "readonly", from_dir=mnist_dir, log=lines.append)
    assert data.train_images.shape == (60000, 28, 28) and not list((tmp_path / "readonly").iterdir())
    assert any("used from memory" in line and "--data-dir" in line for line in lines)


def test_a_data_dir_that_cannot_be_made_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DataError, match="--data-dir"):
        load_mnist(tmp_path / "file" / "mnist", log=lambda line: None)
