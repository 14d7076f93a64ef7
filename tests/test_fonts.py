"""digits.train.fonts: digits drawn in handwriting fonts for training, never the fonts the benchmarks read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

import digits.train.fonts as fonts
from digits.errors import ConfigError, RunError
from digits.reading import Recognizer
from digits.train.config import get_preset, override
from digits.train.loop import OUTLIER, _with_fonts, fit
from digits.train.report import made_from
from digits.train.robustness import training_transforms

ROOT = Path(__file__).resolve().parents[1]
# Fonts that ship with matplotlib (a training dependency), so these tests need no Debian font package.
DEJAVU = [Path(matplotlib.get_data_path()) / "fonts/ttf" / name for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf")]


def test_font_digits_are_mnist_like_labelled_deterministic_and_varied():
    images, labels = fonts.font_digits(300, seed=0, files=DEJAVU)
    again, _ = fonts.font_digits(300, seed=0, files=DEJAVU)
    assert images.shape == (300, 28, 28) and images.dtype == np.uint8 and np.array_equal(images, again)
    assert not np.array_equal(images, fonts.font_digits(300, seed=1, files=DEJAVU)[0])
    assert set(labels.tolist()) == set(range(10))
    assert (images.reshape(300, -1).max(axis=1) == 255).all()  # ink in every one, stretched like MNIST's
    assert len({x.tobytes() for x in images}) == 300  # slant, rotation, aspect and stroke differ each time
    # Each picture shows its label: the shipped model reads printed digits, distorted as they are, nearly all right.
    read = [p.digit for p in Recognizer.load().classify(images)]
    assert np.mean(np.array(read) == labels) > 0.9


def test_a_font_that_draws_no_digit_gives_none():
    symbols = Path(matplotlib.get_data_path()) / "fonts/ttf/STIXSizOneSymReg.ttf"  # large math symbols, no digits
    images, labels = fonts.font_digits(50, seed=0, files=[symbols, DEJAVU[0]])
    only_dejavu, _ = fonts.font_digits(50, seed=0, files=[DEJAVU[0]])
    assert np.array_equal(images, only_dejavu) and (images.reshape(50, -1).max(axis=1) == 255).all()
    with pytest.raises(ConfigError, match="none of the fonts draws any of"):
        fonts.font_digits(5, files=[symbols])


def test_no_training_font_is_one_the_reading_benchmarks_evaluate_with():
    source = (ROOT / "benchmarks/reading_sets.py").read_text()
    evaluated = {Path(g).parent for g in re.findall(r'"(/usr/share/fonts/[^"]+)"', source)}
    trained = {Path(g).parent for g in fonts.FONT_GLOBS}
    assert len(evaluated) >= 10 and len(trained) >= 10
    assert not evaluated & trained, evaluated & trained


def test_no_installed_font_is_a_clear_error_naming_the_packages(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install fonts-"):
        fonts.font_files([str(tmp_path / "*.ttf")])


def test_a_file_that_is_no_font_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.ttf"
    bad.write_text("not a font")
    with pytest.raises(ConfigError, match="notes.ttf is not a font file that can be read"):
        fonts.font_digits(5, files=[bad])


def test_a_font_path_that_cannot_be_read_is_a_clear_error_before_training(mnist, tmp_path, monkeypatch):
    (tmp_path / "folder.ttf").mkdir()  # matched by the glob, but no file to read
    monkeypatch.setattr(fonts, "FONT_GLOBS", (str(tmp_path / "*.ttf"),))
    cfg = override(get_preset("fast"), train_limit=1000, epochs=1, threads=1, fonts=50)
    with pytest.raises(ConfigError, match="folder.ttf is not a font file that can be read"):
        fit(cfg, tmp_path / "run", data=mnist, progress=False, log=lambda _: None)


def test_training_with_fonts_and_none_installed_fails_before_reading_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "FONT_GLOBS", (str(tmp_path / "*.ttf"),))

    class NoData:  # any use of the data would fail otherwise
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the data was read ({name}) before the fonts were checked")

    cfg = override(get_preset("fast"), train_limit=2000, epochs=1, threads=1, fonts=500)
    with pytest.raises(ConfigError, match="apt-get install fonts-"):
        fit(cfg, tmp_path / "run", data=NoData(), progress=False, log=lambda _: None)  # type: ignore[arg-type]


def test_training_with_fonts_adds_their_digits(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "FONT_GLOBS", tuple(str(p) for p in DEJAVU))
    lines: list[str] = []
    cfg = override(get_preset("fast"), train_limit=2000, val_split=0.1, epochs=1, threads=1, fonts=500)
    run = fit(cfg, tmp_path / "run", data=mnist, progress=False, log=lines.append)
    assert any(line == "adding 500 digits drawn in 2 handwriting fonts" for line in lines), lines
    assert any("on 2,300 images" in line for line in lines), lines  # 1,800 of MNIST's and the 500
    assert run.test is not None and run.test.accuracy > 0.8
    # The run says which font files it drew from: installing or removing fonts changes what the same command draws.
    record = json.loads((run.dir / "run.json").read_text())
    assert [f["path"] for f in record["fonts"]] == [str(p) for p in DEJAVU]
    assert all(len(f["sha256"]) == 64 for f in record["fonts"])
    assert made_from(run.dir, {"model": "fastnet"}, record)["fonts"] == record["fonts"]  # kept by an ensemble too


class Stop(Exception):
    pass


def _stop(row: dict) -> None:
    raise Stop


def test_a_run_resumes_only_with_the_fonts_it_started_with(mnist, tmp_path, monkeypatch):
    """Other fonts would draw other training pictures from the same seed: a resumed run would not be the run."""
    monkeypatch.setattr(fonts, "FONT_GLOBS", tuple(str(p) for p in DEJAVU))
    cfg = override(get_preset("fast"), train_limit=1000, val_split=0.1, epochs=2, threads=1, fonts=100)
    quiet = {"data": mnist, "progress": False, "log": lambda _: None}
    with pytest.raises(Stop):
        fit(cfg, tmp_path / "run", on_epoch=_stop, **quiet)  # stopped after its first epoch, as a killed run is
    monkeypatch.setattr(fonts, "FONT_GLOBS", (str(DEJAVU[0]),))  # one of its fonts removed since
    with pytest.raises(RunError, match=f"other handwriting fonts than are installed now \\({DEJAVU[1]} "):
        fit(cfg, tmp_path / "run", resume=True, **quiet)
    monkeypatch.setattr(fonts, "FONT_GLOBS", tuple(str(p) for p in DEJAVU))  # put back
    run = fit(cfg, tmp_path / "run", resume=True, **quiet)
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert [f["path"] for f in json.loads((run.dir / "run.json").read_text())["fonts"]] == [str(p) for p in DEJAVU]


def test_font_letters_are_not_digits_deterministic_and_doubted_by_the_shipped_model():
    images = fonts.font_not_digits(200, seed=0, files=DEJAVU)
    assert images.shape == (200, 28, 28) and np.array_equal(images, fonts.font_not_digits(200, seed=0, files=DEJAVU))
    assert not np.array_equal(images, fonts.font_digits(200, seed=0, files=DEJAVU)[0])  # another random stream
    assert (images.reshape(200, -1).max(axis=1) == 255).all() and len({x.tobytes() for x in images}) == 200
    assert not set("0123456789OIlSZBGqgbDoisz") & set(fonts.NOT_DIGITS)  # nothing often written like a digit
    doubted = [p.digit is None or p.uncertain for p in Recognizer.load().classify(images)]
    assert np.mean(doubted) > 0.6


def test_training_with_font_letters_trains_them_towards_no_digit(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "FONT_GLOBS", tuple(str(p) for p in DEJAVU))
    lines: list[str] = []
    cfg = override(get_preset("fast"), train_limit=2000, val_split=0.1, epochs=1, threads=1, font_letters=300)
    run = fit(cfg, tmp_path / "run", data=mnist, progress=False, log=lines.append)
    assert "adding 300 letters and symbols drawn in 2 handwriting fonts, as non-digits" in lines, lines
    assert any("on 2,100 images" in line for line in lines), lines
    assert run.test is not None and run.test.accuracy > 0.8


def test_font_letters_are_labelled_as_no_digit_and_said_in_the_runs_account():
    x, y = torch.zeros(5, 28, 28, dtype=torch.uint8), torch.arange(5)
    cfg = override(get_preset("fast"), fonts=20, font_letters=30)
    lines: list[str] = []
    all_x, all_y = _with_fonts(x, y, DEJAVU, cfg, lines.append)
    assert all_x.shape == (55, 28, 28) and all_y[:5].tolist() == list(range(5))
    assert set(all_y[5:25].tolist()) <= set(range(10)) and (all_y[25:] == OUTLIER).all()  # trained towards uniform
    said = training_transforms(cfg)  # what the report and `digits robustness` say the run trained on
    assert any("20 digits drawn in handwriting fonts" in w for w in said), said
    assert any("30 letters and symbols in handwriting fonts trained towards no digit" in w for w in said), said
