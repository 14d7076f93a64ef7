"""digits adapt: a copy of the model learns a writer MNIST does not cover from their corrections, keeps MNIST within
the gate, never changes its base, and can be rolled back; a model the gate refuses is kept aside, never used."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits.cli import main
from digits.corrections import Correction, CorrectionStore
from digits.data import MNIST
from digits.errors import ConfigError, ModelFileError, RunError
from digits.models.weights import CHECKSUM_KEY, load_weights
from digits.reading import Recognizer
from digits.spec import SHIPPED_SAFETENSORS
from digits.testing.domains import slanted_writer
from digits.train.adapt import REFUSED_NAME, adapt, point, rollback, split_held_out
from digits.train.config import AdaptConfig

# A tiny budget: few steps, the MNIST guard on the first 2,000 test digits.
TINY = AdaptConfig(steps=60, guard_limit=2_000)
WRITER = slice(54_000, 60_000)  # the shipped model's validation digits: never replayed, never tested on


def png(picture: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    return out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def writer(mnist: MNIST) -> tuple[list[np.ndarray], np.ndarray]:
    """300 digits in a hand MNIST does not cover (leaning 45 degrees, a broad pen), as pictures, and their labels."""
    rng = np.random.default_rng(0)
    ink, labels = mnist.train_images[WRITER], mnist.train_labels[WRITER].astype(np.int64)
    chosen = rng.permutation(len(ink))[:300]
    return [slanted_writer(ink[i], rng) for i in chosen], labels[chosen]


@pytest.fixture(scope="module")
def writer_store(tmp_path_factory: pytest.TempPathFactory, writer) -> Path:
    """The writer's corrections of the shipped model's mistakes among their first 200 digits."""
    root = tmp_path_factory.mktemp("writer") / "store"
    store = CorrectionStore(root)
    base = Recognizer.load()
    pictures, labels = writer
    for picture, label in zip(pictures[:200], labels[:200]):
        p = base.predict(picture)
        if p.image28 is not None and p.digit != label:
            store.add(png(picture), p.image28, label=int(label), predicted=p.digit, confidence=p.confidence)
    assert len(store) >= 40  # the shipped model reads about half of this hand right
    return root


def accuracy(recognizer: Recognizer, pictures: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean([recognizer.predict(p).digit == y for p, y in zip(pictures, labels)]))


def fake(ids: list[str]) -> list[Correction]:
    return [Correction(id=i, label=1, predicted=2, confidence=0.5, created="", image="", seen28="") for i in ids]


def test_the_held_out_part_is_deterministic_stable_and_never_empty_or_everything():
    records = fake([f"id{i}" for i in range(40)])
    learn, held = split_held_out(records, 0.25)
    assert 3 <= len(held) <= 20 and len(learn) + len(held) == 40
    assert split_held_out(list(reversed(records)), 0.25)[1] == list(reversed(held))  # order does not matter
    more = split_held_out(records + fake([f"new{i}" for i in range(40)]), 0.25)[1]
    assert {c.id for c in held} <= {c.id for c in more}  # a held-out correction stays held out
    for n in (2, 3, 5):
        learn, held = split_held_out(records[:n], 0.25)
        assert len(held) >= 1 and len(learn) >= 1
    with pytest.raises(ConfigError, match="at least 2 corrections"):
        split_held_out(records[:1], 0.25)


def test_what_cannot_be_adapted_is_refused_before_any_work(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    store.add(b"\x89PNG\r\n\x1a\n", np.zeros((28, 28), np.uint8), label=1, predicted=7)
    with pytest.raises(ConfigError, match="at least 2 corrections.*has 1"):
        adapt(store, tmp_path / "run", config=TINY)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an empty folder"):
        adapt(store, tmp_path / "used", config=TINY)
    with pytest.raises(ConfigError, match="ONNX"):
        adapt(store, tmp_path / "run", base=tmp_path / "model.onnx", config=TINY)
    with pytest.raises(ConfigError, match="blend"):
        AdaptConfig(blend=0.0)
    assert not (tmp_path / "run").exists()


def test_the_gate_flag_is_in_percentage_points_and_a_bad_one_is_a_usage_error(tmp_path, capsys):
    from digits.cli import main

    code = main(["adapt", "--store", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--max-mnist-drop", "-1"])
    assert code == 2 and "--max-mnist-drop is in percentage points" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_adapting_learns_the_writer_keeps_mnist_and_leaves_the_base_as_it_was(tmp_path, mnist, writer, writer_store):
    before = sha256(SHIPPED_SAFETENSORS)
    store = CorrectionStore(writer_store)
    done = adapt(store, tmp_path / "run", config=TINY, data=mnist, log=lambda _: None)
    assert done.accepted, done.message
    assert sha256(SHIPPED_SAFETENSORS) == before  # the base is never modified

    # Better on the writer's other digits (the 100 it never corrected), and within the gate on MNIST.
    pictures, labels = writer
    base, adapted = Recognizer.load(), Recognizer.load(done.dir)
    assert adapted.backend == "onnx"  # the run folder holds model.onnx: reading and serving need no torch
    gained = accuracy(adapted, pictures[200:], labels[200:]) - accuracy(base, pictures[200:], labels[200:])
    assert gained >= 0.05, gained
    mnist_figures = done.summary["mnist"]
    assert mnist_figures["n"] == 2_000 and mnist_figures["change_pp"] >= -0.1

    # The figures of the gate, the parent and the corrections are in the model's metadata and run.json.
    _, meta = load_weights(done.dir)
    _, shipped = load_weights(SHIPPED_SAFETENSORS)
    assert meta["parent"][CHECKSUM_KEY] == shipped[CHECKSUM_KEY] and meta["parent"]["shipped"] is True
    assert meta["corrections_sha256"] == store.sha256() and meta["corrections"] == len(store)
    assert meta["gate"]["accepted"] is True and meta["gate"]["mnist"] == mnist_figures
    held = meta["gate"]["held_out"]
    assert held["right_after"] > held["right_before"] or held["loss_after"] < held["loss_before"]
    assert 0.1 < meta["temperature"] < 10 and meta["test_accuracy"] is None  # measured on a part of the test set
    record = json.loads((done.dir / "run.json").read_text())
    assert record["accepted"] is True and record["adapt_config"]["steps"] == TINY.steps
    assert record["base_config"]["val_split"] == 0.1 and record["label_smoothing"] == 0.1  # the base's recipe
    assert "validation split" in record["temperature_from"]
    assert set(record["corrections"]["held_out_ids"]) == {c.id for c in split_held_out(store.list(), TINY.holdout)[1]}


@pytest.mark.slow
def test_the_command_adapts_links_and_rolls_back(tmp_path, mnist_dir, writer, writer_store, capsys):
    run, link = tmp_path / "run", tmp_path / "current"
    argv = ["adapt", "--store", str(writer_store), "-o", str(run), "--link", str(link), "--steps", "60"]
    assert main([*argv, "--guard-limit", "2000", "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "accepted: held-out corrections" in out and "MNIST test accuracy" in out
    assert link.resolve() == run.resolve()

    # Every command takes the adapted model (or the link to it) with --model.
    picture = tmp_path / "digit.png"
    picture.write_bytes(png(writer[0][250]))
    assert main(["predict", str(picture), "--model", str(link)]) == 0
    assert main(["predict", str(picture), "--model", str(run), "--backend", "torch"]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "again.onnx")]) == 0

    # A model adapted from the adapted one rolls back to it; that one rolls back to the shipped model.
    child = tmp_path / "child"
    child.mkdir()
    (child / "run.json").write_text(json.dumps({"parent": {"path": str(run.resolve()), "shipped": False}}))
    point(link, child)
    assert main(["adapt", "--rollback", str(link)]) == 0
    assert link.resolve() == run.resolve() and f"now points to {run.resolve()}" in capsys.readouterr().out
    assert rollback(link) is None and not link.exists() and not link.is_symlink()
    assert main(["adapt", "--rollback", str(link)]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert run.is_dir()  # rolling back never removes a model


@pytest.mark.slow
def test_a_model_the_gate_refuses_is_kept_aside_and_not_used(tmp_path, mnist_dir, writer_store, capsys):
    run, link = tmp_path / "run", tmp_path / "current"
    # Far too large a step, the whole change kept: the copy forgets MNIST.
    argv = ["adapt", "--store", str(writer_store), "-o", str(run), "--link", str(link), "--lr", "0.05"]
    code = main([*argv, "--blend", "1", "--steps", "60", "--guard-limit", "2000", "--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert code == 1 and "refused" in err and "the model in use is unchanged" in err
    assert sorted(p.name for p in run.iterdir()) == [REFUSED_NAME, "run.json"]
    record = json.loads((run / "run.json").read_text())
    assert record["accepted"] is False and not record["gate"]["mnist_within_limit"]
    assert record["mnist"]["change_pp"] < -0.1
    assert not link.exists()
    with pytest.raises(ModelFileError, match="no model file"):  # no command loads a refused model
        Recognizer.load(run)
