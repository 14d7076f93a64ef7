"""digits.files: the one atomic writer and the one metadata encoding, and digits.errors' one tree."""

from __future__ import annotations

import errno
import inspect
import os
import sys
import tempfile
from pathlib import Path

import pytest

import digits
from digits import errors
from digits.files import (
    PARTIAL_SUFFIX,
    atomic_symlink,
    atomic_write,
    decode_metadata,
    encode_metadata,
    remove_partial_files,
    write_bytes,
    write_json,
)


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(b"old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)  # the bytes are written, then flushing them "fails"
    with pytest.raises(errors.WriteError, match=f"could not write {target}: disk full"):
        write_bytes(target, b"x" * 100_000)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_bytes() == b"old"
    monkeypatch.undo()
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_full_disk_is_a_write_error_naming_the_file_and_the_old_file_stays(tmp_path: Path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"the first half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(errors.WriteError) as err:
        atomic_write(target, writer)
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC  # `except OSError` still catches it
    message = str(err.value)
    assert message.startswith(f"could not write {target}: the disk is full (ENOSPC), ")
    assert "free there" in message and "free some space" in message
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_no_room_for_the_temporary_file_is_a_write_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def full(**kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(errors.WriteError, match=r"could not write .*run\.json: the disk is full \(ENOSPC\)"):
        write_json(tmp_path / "run.json", {"a": 1})
    assert not list(tmp_path.iterdir())


def test_a_writers_own_errors_pass_through_unchanged(tmp_path: Path):
    def writer(tmp: Path) -> None:  # e.g. a compiler that is not installed: not the disk refusing anything
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "cc")

    with pytest.raises(FileNotFoundError) as err:
        atomic_write(tmp_path / "kernel.so", writer)
    assert not isinstance(err.value, errors.WriteError)
    assert not list(tmp_path.iterdir())


def test_an_interrupted_writer_leaves_nothing_and_its_exception(tmp_path: Path):
    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "model.safetensors", writer)
    assert not list(tmp_path.iterdir())


def test_written_files_get_the_umask_permissions_not_owner_only(tmp_path: Path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "run.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone would give 0o600
    assert path.read_text() == '{\n  "a": 1\n}\n'


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege on Windows")
def test_a_link_is_replaced_in_one_step_and_never_over_a_real_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-b").mkdir()
    link = tmp_path / "latest"
    assert atomic_symlink(link, "run-a") and os.readlink(link) == "run-a"
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        assert os.readlink(link) == "run-a", "the old link was removed before the new one took its place"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert atomic_symlink(link, "run-b") and os.readlink(link) == "run-b"
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run-a", "run-b"]  # no temporary link left

    mine = tmp_path / "mine"
    mine.mkdir()
    assert not atomic_symlink(mine, "run-a") and mine.is_dir() and not mine.is_symlink()

    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "symbolic links need a privilege")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    assert not atomic_symlink(link, "run-a") and os.readlink(link) == "run-b"


def test_partial_files_of_killed_writes_are_found_and_removed(tmp_path: Path):
    (tmp_path / f".checkpoint.pt.x1y2{PARTIAL_SUFFIX}").write_bytes(b"half")
    (tmp_path / "model.safetensors").write_bytes(b"whole")
    assert remove_partial_files(tmp_path) == [f".checkpoint.pt.x1y2{PARTIAL_SUFFIX}"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_metadata_round_trips_and_keeps_the_model_name_readable():
    meta = {"model": "fastnet", "model_options": {"tta": True}, "format": 2, "temperature": 1.25, "precision": "bf16"}
    encoded = encode_metadata(meta)
    assert all(isinstance(v, str) for v in encoded.values())
    assert encoded["model"] == "fastnet" and encoded["precision"] == '"bf16"'
    assert decode_metadata(encoded) == meta
    assert decode_metadata({"model": "seed", "note": "not json"}) == {"model": "seed", "note": "not json"}


def test_every_error_is_a_digits_error_drawn_in_the_tree_and_exported():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) == len(errors.__all__) >= 8
    for cls in classes:
        assert issubclass(cls, errors.DigitsError)
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the tree in the docstring"
        assert getattr(digits, cls.__name__) is cls
    for cls in (errors.ConfigError, errors.ModelFileError, errors.ImageError):  # as they were before the tree
        assert issubclass(cls, ValueError)
