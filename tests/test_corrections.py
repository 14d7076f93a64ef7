"""The correction store: whole records only (a process killed mid-write leaves none half there), clear refusals of
bad labels and pictures, export, and the commands that add to it, list, export and clear it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from digits.cli import main
from digits.corrections import CorrectionStore, parse_labels
from digits.errors import ConfigError, WriteError
from digits.testing import scenes


def drawing(digit: int) -> bytes:
    return scenes.encode(scenes.rgba_drawing(scenes.font_digit(digit)))


def seen(digit: int) -> np.ndarray:
    return scenes.mnist_like(scenes.font_digit(digit))


def number(text: str) -> bytes:
    digits = [scenes.font_digit(int(c)) for c in text]
    return scenes.encode(scenes.paper(digits, size=(800, 300), height=120, origin=(60, 80), seed=1).image)


def test_a_record_holds_the_picture_the_28x28_the_label_the_answer_and_the_time(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    picture = drawing(4)
    kept = store.add(picture, seen(4), label=9, predicted=4, confidence=0.87654321, source="test")
    folder = tmp_path / "store" / kept.id
    assert sorted(p.name for p in folder.iterdir()) == ["correction.json", "image.png", "seen28.png"]
    record = json.loads((folder / "correction.json").read_text())  # for a person to read, as it is
    assert record == {
        "id": kept.id,
        "label": 9,
        "predicted": 4,
        "confidence": 0.876543,
        "created": kept.created,
        "image": "image.png",
        "seen28": "seen28.png",
        "source": "test",
    }
    assert (folder / "image.png").read_bytes() == picture
    with Image.open(folder / "seen28.png") as im:
        np.testing.assert_array_equal(np.asarray(im), seen(4))
    assert store.list() == [kept] and len(store) == 1


@pytest.mark.parametrize("label", [10, -1, True, 3.0, "7", None])
def test_a_label_that_is_not_a_digit_is_refused_and_nothing_kept(tmp_path, label):
    store = CorrectionStore(tmp_path)
    with pytest.raises(ConfigError, match="digit from 0 to 9"):
        store.add(drawing(1), seen(1), label=label, predicted=1)
    assert not any(tmp_path.iterdir())


def test_a_picture_that_is_not_one_is_refused_and_nothing_kept(tmp_path):
    store = CorrectionStore(tmp_path)
    with pytest.raises(ConfigError, match="bytes"):
        store.add(b"", seen(1), label=1, predicted=1)
    with pytest.raises(ConfigError, match=r"\(28, 28\) uint8"):
        store.add(drawing(1), seen(1).astype(np.float32), label=1, predicted=1)
    with pytest.raises(ConfigError, match=r"\(28, 28\) uint8"):
        store.add(drawing(1), np.zeros((28, 27), np.uint8), label=1, predicted=1)
    assert not any(tmp_path.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        CorrectionStore(tmp_path / "file")


def test_a_write_that_fails_leaves_no_half_record(tmp_path, monkeypatch):
    store = CorrectionStore(tmp_path)
    store.add(drawing(2), seen(2), label=2, predicted=7)

    def full_disk(path, data):
        raise WriteError(f"could not write {path}: the disk is full (ENOSPC)")

    monkeypatch.setattr("digits.corrections.write_json", full_disk)
    with pytest.raises(WriteError, match="full"):
        store.add(drawing(3), seen(3), label=3, predicted=8)
    assert [c.label for c in store] == [2] and len(list(tmp_path.iterdir())) == 1


def test_a_process_killed_mid_write_leaves_only_whole_records(tmp_path):
    """A real process dies (os._exit, as under SIGKILL: nothing runs after it) between writing a record's pictures
    and its JSON; another is killed with SIGKILL while adding records as fast as it can. Every record the store
    lists is whole, and the store takes new ones after."""
    root = tmp_path / "store"
    dies_before_json = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        import digits.corrections as c
        store = c.CorrectionStore(sys.argv[1])
        store.add(b"\\x89PNG\\r\\n\\x1a\\nfirst", np.zeros((28, 28), np.uint8), label=1, predicted=7)
        c.write_json = lambda *a, **k: os._exit(9)  # the process dies where the JSON would be written
        store.add(b"\\x89PNG\\r\\n\\x1a\\nsecond", np.zeros((28, 28), np.uint8), label=2, predicted=7)
        """
    )
    done = subprocess.run([sys.executable, "-c", dies_before_json, str(root)], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert len([p for p in root.iterdir() if p.is_dir()]) == 2  # the second record's folder is there, half written
    store = CorrectionStore(root)
    assert [c.label for c in store] == [1]

    forever = textwrap.dedent(
        """
        import sys
        import numpy as np
        from digits.corrections import CorrectionStore
        store = CorrectionStore(sys.argv[1])
        image = np.arange(784, dtype=np.uint8).reshape(28, 28)
        while True:
            store.add(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(20_000), image, label=5, predicted=3)
            print("kept", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", forever, str(root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for _ in range(20):  # some records kept, and it is in the middle of more
        assert process.stdout.readline() == "kept\n"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    records = store.list()
    assert len(records) >= 21
    for c in records:
        assert (root / c.id / c.image).is_file()
        assert store.seen28(c).shape == (28, 28)
    assert store.arrays()[0].shape == (len(records), 28, 28)
    store.add(drawing(6), seen(6), label=6, predicted=0)
    assert len(store) == len(records) + 1


def test_numbers_are_corrected_digit_by_digit_only_when_the_counts_match(tmp_path):
    store = CorrectionStore(tmp_path)
    read = [(seen(d), d, 0.9) for d in (2, 0, 2, 6)]
    with pytest.raises(ConfigError, match="read as 4 digit.* has 3"):
        store.add_number(b"\x89PNG\r\n\x1a\n", read, "202")
    with pytest.raises(ConfigError, match="e.g. 7 or 2026"):
        store.add_number(b"\x89PNG\r\n\x1a\n", read, "2o26")
    assert store.list() == []
    kept = store.add_number(b"\x89PNG\r\n\x1a\n", read, "20 28")
    assert [c.label for c in kept] == [2, 0, 2, 8] and [c.predicted for c in kept] == [2, 0, 2, 6]
    assert parse_labels("-3.14") == [3, 1, 4]
    for bad in ("", " ", "x", "1e3", "½"):
        with pytest.raises(ConfigError):
            parse_labels(bad)


def test_export_as_arrays_or_pictures_and_a_checksum_of_what_is_kept(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    first = store.add(drawing(1), seen(1), label=7, predicted=1, confidence=0.5)
    store.add(drawing(8), seen(8), label=3, predicted=None)
    checksum = store.sha256()
    arrays = np.load(store.export(tmp_path / "out.npz"))
    assert arrays["images"].shape == (2, 28, 28) and arrays["labels"].tolist() == [7, 3]
    assert arrays["predicted"].tolist() == [1, -1] and arrays["ids"][0] == first.id
    np.testing.assert_array_equal(arrays["images"][1], seen(8))
    folder = store.export(tmp_path / "pictures")
    rows = list(csv.DictReader((folder / "corrections.csv").open()))
    assert [r["label"] for r in rows] == ["7", "3"] and rows[1]["predicted"] == ""
    with Image.open(folder / rows[0]["file"]) as im:
        np.testing.assert_array_equal(np.asarray(im), seen(1))
    assert store.sha256() == checksum and store.sha256(store.list()[:1]) != checksum
    (store.models / "current").mkdir(parents=True)  # models learned from the store are not corrections
    assert len(store) == 2 and store.clear() == 2 and store.models.is_dir()


# -- the commands ----------------------------------------------------------------------------------------------


def test_predict_and_read_keep_corrections(tmp_path, capsys):
    store = tmp_path / "store"
    picture = tmp_path / "four.png"
    picture.write_bytes(drawing(4))
    assert main(["predict", str(picture), "--correct", "9", "--store", str(store)]) == 0
    assert "kept 1 correction" in capsys.readouterr().err
    (c,) = CorrectionStore(store).list()
    assert (c.label, c.predicted, c.source) == (9, 4, "cli")
    assert (store / c.id / c.image).read_bytes() == picture.read_bytes()

    photo = tmp_path / "number.png"
    photo.write_bytes(number("2026"))
    assert main(["read", str(photo), "--correct", "2028", "--store", str(store)]) == 0
    out = capsys.readouterr()
    assert "2026" in out.out and "kept 4 correction" in out.err
    assert [c.label for c in CorrectionStore(store)][1:] == [2, 0, 2, 8]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["read", "{photo}", "--correct", "202", "--store", "{store}"], 1, "read as 4 digit"),
        (["predict", "{photo}", "--correct", "12", "--store", "{store}"], 2, "takes one digit"),
        (["predict", "{photo}", "--correct", "x", "--store", "{store}"], 1, "e.g. 7 or 2026"),
        (["predict", "{photo}", "--correct", "1"], 2, "needs --store"),
        (["predict", "{photo}", "--store", "{store}"], 2, "--correct too"),
        (["predict", "{photo}", "{photo}", "--correct", "1", "--store", "{store}"], 2, "one picture"),
    ],
)
def test_a_correction_that_makes_no_sense_is_a_clear_error_and_nothing_is_kept(tmp_path, capsys, argv, code, message):
    photo = tmp_path / "number.png"
    photo.write_bytes(number("2026"))
    store = tmp_path / "store"
    assert main([a.format(photo=photo, store=store) for a in argv]) == code
    assert message in capsys.readouterr().err
    assert CorrectionStore(store).list() == []


def test_corrections_list_export_and_clear(tmp_path, capsys):
    root = tmp_path / "store"
    store = CorrectionStore(root)
    kept = store.add(drawing(5), seen(5), label=5, predicted=6, confidence=0.51)
    assert main(["corrections", "list", "--store", str(root)]) == 0
    out = capsys.readouterr()
    assert kept.id in out.out and "model said 6 (0.51)" in out.out and "1 correction(s)" in out.err
    assert main(["corrections", "list", "--store", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [kept.to_dict()]
    assert main(["corrections", "export", "--store", str(root), "-o", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["labels"].tolist() == [5]
    assert main(["corrections", "export", "--store", str(root)]) == 2
    assert main(["corrections", "clear", "--store", str(root)]) == 0
    assert "removed 1 correction" in capsys.readouterr().out and store.list() == []
