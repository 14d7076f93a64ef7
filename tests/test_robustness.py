"""The corruptions (digits.train.corruptions), measuring a model under them (digits.train.robustness), the command."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from digits.cli import main
from digits.spec import SHIPPED_SAFETENSORS
from digits.train import corruptions as C
from digits.train import robustness as R
from digits.train.config import _FLOAT_FIELDS, AugmentConfig, get_preset, override
from digits.train.corruptions import CORRUPTIONS, MNIST_C, SEVERITIES, corrupt

# The corruptions that draw no random numbers: the same output whatever the generator.
DETERMINISTIC = {
    "brightness",
    "canny_edges",
    "defocus_blur",
    "contrast",
    "inversion",
    "jpeg",
    "pixelate",
    "thick_strokes",
    "thin_strokes",
}

needs_shipped = pytest.mark.skipif(not SHIPPED_SAFETENSORS.is_file(), reason="no shipped model in this checkout")


@pytest.fixture(scope="module")
def digits200(mnist) -> np.ndarray:
    return np.array(mnist.test_images[:200])  # a writable copy


def test_the_registry_holds_mnist_c_and_what_real_pictures_add_in_a_fixed_order():
    names = list(CORRUPTIONS)
    assert len(names) == 26 and len(set(names)) == 26
    assert MNIST_C == (
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    )
    assert names[:15] == list(MNIST_C)
    assert set(DETERMINISTIC) <= set(names)
    for c in CORRUPTIONS.values():
        assert len(c.levels) == 5 and c.what
    table = C.table()
    assert all(name in table for name in names) and len(table.splitlines()) == 27


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_image_and_keeps_its_form(name, digits200):
    before = digits200.copy()
    for s in SEVERITIES:
        out = corrupt(digits200, name, s, np.random.default_rng(0))
        assert out.shape == digits200.shape and out.dtype == np.uint8
        changed = (out != digits200).any(axis=(1, 2)).mean()
        assert changed > 0.9, f"{name} at {s} left {1 - changed:.0%} of the digits as they were"
    assert np.array_equal(digits200, before)  # the input is never written into


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_reproducible_from_its_seed(name, digits200):
    a = corrupt(digits200, name, 3, np.random.default_rng(7))
    b = corrupt(digits200, name, 3, np.random.default_rng(7))
    assert np.array_equal(a, b)
    other = corrupt(digits200, name, 3, np.random.default_rng(8))
    if name in DETERMINISTIC:
        assert np.array_equal(a, other)
    else:
        assert not np.array_equal(a, other), f"{name} ignored its random generator"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_gets_stronger_with_severity(name, digits200):
    # Mean absolute change from the clean digits, over 200 digits; every level's parameter is stronger than
    # the last, so the change grows by a clear margin (the smallest step is about 5%, the jitter of the
    # random ones well under 1%).
    change = [
        np.abs(corrupt(digits200, name, s, np.random.default_rng(0)).astype(int) - digits200).mean() for s in SEVERITIES
    ]
    assert all(later > earlier for earlier, later in zip(change, change[1:])), (name, change)


def test_bad_input_is_refused_with_a_clear_message(digits200):
    rng = np.random.default_rng(0)
    for severity in (0, 6, True, 2.5):
        with pytest.raises(ValueError, match="severity must be one of 1, 2, 3, 4, 5"):
            corrupt(digits200, "rotate", severity, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown corruption 'smudge'; choose from: shot_noise"):
        corrupt(digits200, "smudge", 1, rng)
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        corrupt(digits200.astype(np.float32), "rotate", 1, rng)
    with pytest.raises(ValueError, match="expected uint8"):
        corrupt(digits200[0], "rotate", 1, rng)
    empty = corrupt(digits200[:0], "zigzag", 5, rng)
    assert empty.shape == (0, 28, 28) and empty.dtype == np.uint8


def test_geometry_against_exact_oracles(digits200):
    x = digits200[:20].astype(np.float32) / 255
    # A quarter turn counter-clockwise as displayed is numpy's rot90; bilinear sampling at whole pixels is exact.
    turned = C._affine(x, C._rotation(np.full(len(x), 90.0)))
    assert np.allclose(turned, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    shifted = C._affine(x, np.tile(np.eye(2), (len(x), 1, 1)), np.tile([3.0, -2.0], (len(x), 1)))
    assert np.allclose(shifted[:, :-2, 3:], x[:, 2:, :-3], atol=1e-6)  # right 3, up 2
    assert not shifted[:, -2:].any() and not shifted[:, :, :3].any()  # what came in from outside is black


def test_the_stacked_batch_equals_one_image_at_a_time(digits200):
    x = digits200[:10].astype(np.float32) / 255
    kernel = np.ones((5, 5), np.float32) / 25
    batched = C._convolve(x, kernel)
    for img, got in zip(x, batched):
        one = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        assert np.allclose(got, one, atol=1e-6)


def test_exact_values_of_the_simple_corruptions(digits200):
    rng = np.random.default_rng(0)
    assert np.array_equal(corrupt(digits200, "inversion", 5, rng), 255 - digits200)
    lifted = corrupt(digits200, "brightness", 3, rng).astype(int)
    expected = np.minimum(digits200.astype(int) + 0.3 * 255, 255)  # 76.5 on black, which rounds up
    assert np.abs(lifted - expected).max() <= 0.5 + 1e-3 and (lifted[digits200 == 0] == 77).all()
    edges = corrupt(digits200, "canny_edges", 5, rng)
    assert set(np.unique(edges)) <= {0, 255}
    thin = corrupt(digits200, "thin_strokes", 5, rng)
    assert thin.astype(int).sum() < digits200.astype(int).sum() / 2
    moved = corrupt(digits200, "off_centre", 5, rng)  # pushed to the frame, never out of it
    assert moved.astype(int).sum() > 0.5 * (0.8**2) * digits200.astype(int).sum()


# --- measuring a model ------------------------------------------------------------------------------------------
def _fake(acc: dict[str, dict[int, float]], **kw) -> R.RobustnessResult:
    return R.RobustnessResult(clean_accuracy=0.99, accuracy=acc, seed=0, n=100, **kw)


def test_means_and_the_mean_corruption_error_by_hand():
    model = _fake({"rotate": {1: 0.9, 2: 0.8}, "fog": {1: 1.0, 2: 0.9}})
    base = _fake({"rotate": {1: 0.8, 2: 0.6}, "fog": {1: 0.95, 2: 0.85}})
    assert model.mean_corrupted_accuracy == pytest.approx(0.9)
    assert model.mean_corrupted_accuracy_by_severity == pytest.approx({1: 0.95, 2: 0.85})
    # rotate: (0.1 + 0.2) / (0.2 + 0.4) = 0.5; fog: (0 + 0.1) / (0.05 + 0.15) = 0.5
    assert model.corruption_errors(base) == pytest.approx({"rotate": 0.5, "fog": 0.5})
    assert model.mean_corruption_error(base) == pytest.approx(0.5)
    assert model.mean_corruption_error(model) == pytest.approx(1.0)
    perfect = _fake({"rotate": {1: 1.0, 2: 1.0}, "fog": {1: 0.9, 2: 0.9}})
    assert model.corruption_errors(perfect) == pytest.approx({"fog": 0.1 / 0.2})  # rotate: no baseline errors
    with pytest.raises(ValueError, match="measured on other corruptions or severities"):
        model.mean_corruption_error(_fake({"rotate": {1: 0.9}, "fog": {1: 0.9}}))
    with pytest.raises(ValueError, match="same, non-empty severities"):
        _fake({"rotate": {1: 0.9}, "fog": {2: 0.9}})


def test_the_json_record_round_trips_and_leads_with_mean_corrupted_accuracy():
    r = _fake({"rotate": {3: 0.9}, "fog": {3: 0.8}}, model="seed", training_transforms=("none",), training_resembles=())
    record = json.loads(json.dumps(r.to_dict(baseline=r)))
    assert next(iter(record)) == "mean_corrupted_accuracy"
    assert record["mean_corrupted_accuracy"] == pytest.approx(0.85)
    assert record["accuracy"]["fog"]["3"] == 0.8 and record["mean_corruption_error"] == pytest.approx(1.0)
    assert R.RobustnessResult.from_dict(record) == r
    with pytest.raises(ValueError, match="not a robustness record"):
        R.RobustnessResult.from_dict({"accuracy": {}})


@needs_shipped
def test_evaluate_robustness_on_the_shipped_model_is_well_formed_and_falls_with_severity(mnist):
    from digits.models.weights import load_weights

    model, _ = load_weights(SHIPPED_SAFETENSORS)
    images, labels = mnist.test_images[:200], mnist.test_labels[:200]
    told: list[str] = []
    r = R.evaluate_robustness(model, images, labels, severities=(5, 1), seed=3, progress=told.append)
    assert r.severities == (1, 5) and r.corruptions == tuple(CORRUPTIONS) and r.n == 200 and r.seed == 3
    assert len(told) == 26 and told[0].endswith("shot_noise")
    assert r.clean_accuracy > 0.97
    for by in r.accuracy.values():
        assert all(0.0 <= a <= 1.0 and a * 200 == pytest.approx(round(a * 200), abs=1e-4) for a in by.values())
    means = r.mean_corrupted_accuracy_by_severity
    assert means[5] < means[1] <= r.clean_accuracy + 0.01
    # One corruption's figures do not depend on what else was measured beside it.
    alone = R.evaluate_robustness(model, images, labels, corruptions=["fog"], severities=(5,), seed=3)
    assert alone.accuracy["fog"][5] == r.accuracy["fog"][5]
    with pytest.raises(ValueError, match="severities must be among"):
        R.evaluate_robustness(model, images, labels, severities=(0,))


# --- what training used -----------------------------------------------------------------------------------------
def test_training_transforms_name_every_augmentation_and_the_corruptions_it_resembles():
    assert R.training_transforms(get_preset("seed")) == ["none: MNIST's training digits as they are"]
    assert R.training_resembles(get_preset("seed")) == []
    deotte = get_preset("deotte")
    assert R.training_transforms(deotte) == [
        "rotation up to 10 degrees either way",
        "zoom by 0.9 to 1.1",
        "shift up to 10% of the image per axis",
    ]
    assert R.training_resembles(deotte) == ["scale", "rotate", "translate", "off_centre"]  # the registry's order
    reader = R.training_resembles(get_preset("reader"))
    assert {"shear", "thick_strokes", "thin_strokes", "pixelate"} <= set(reader)
    words = R.training_transforms(get_preset("reader"))
    assert any("2 captured copies" in w for w in words) and any("10,000 non-digit shapes" in w for w in words)
    assert "50% of the images kept free of the blur, noise, marks and lighting above" in R.training_transforms(
        get_preset("best")
    )
    # Every augmentation the config knows is put into words (a new one without words fails here).
    valid = {"scale": 0.1, "shift": 0.1, "elastic_sigma": 5.0}
    for name in _FLOAT_FIELDS:
        cfg = override(get_preset("seed"), augment=AugmentConfig(**{name: valid.get(name, 0.5)}))
        if name in ("elastic_sigma", "clean"):  # settings of other transforms (elastic; the marks), none alone
            assert R.training_transforms(cfg)[0].startswith("none")
            continue
        assert len(R.training_transforms(cfg)) == 1 and not R.training_transforms(cfg)[0].startswith("none"), name


def test_the_training_config_is_found_beside_a_model(tmp_path):
    if SHIPPED_SAFETENSORS.is_file():
        shipped = R.training_configs_of(SHIPPED_SAFETENSORS)
        assert shipped and shipped[0].captures == 2  # from default.json, the reader preset
    run = tmp_path / "run"
    run.mkdir()
    assert R.training_configs_of(run) == []
    (run / "run.json").write_text(json.dumps({"config": get_preset("best").to_dict()}))
    assert R.training_configs_of(run) == [get_preset("best")]
    assert R.training_configs_of(run / "model.safetensors") == [get_preset("best")]
    (run / "run.json").write_text("{not json")
    assert R.training_configs_of(run) == []
    # An ensemble's: each member's, and what each member was trained with, numbered.
    members = [{"config": get_preset("deotte").to_dict()}, {"config": get_preset("best").to_dict()}]
    (run / "run.json").write_text(json.dumps({"model": "ensemble", "members": members}))
    cfgs = R.training_configs_of(run)
    assert cfgs == [get_preset("deotte"), get_preset("best")]
    stated = R.training_transforms(*cfgs)
    assert stated[0].startswith("member 1: ") and any(w.startswith("member 2: ") for w in stated)
    assert set(R.training_resembles(*cfgs)) == set(R.training_resembles(cfgs[1])) | set(R.training_resembles(cfgs[0]))


def test_the_pictures_are_written(tmp_path, digits200):
    r = _fake({"rotate": {1: 0.9, 3: 0.7}, "fog": {1: 0.95, 3: 0.8}}, training_resembles=("rotate",), model="seed")
    chart, grid = R.write_pictures(r, digits200[:3], tmp_path / "pics", severity=3)
    for path in (chart, grid):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = R.accuracy_figure(r)  # mean over severities
    assert "mean over severities 1, 3" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="severity 2 was not measured"):
        R.accuracy_figure(r, 2)


# --- the command ------------------------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_shipped
def test_the_command_measures_the_shipped_model_and_writes_its_files(capsys, tmp_path, mnist, mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the shipped model's files go to ./robustness, never into the package
    base = ["--data-dir", str(mnist_dir), "--limit", "200"]
    code, out, err = run_cli(capsys, "robustness", "--severity", "3", *base)
    assert code == 0, err
    folder = tmp_path / "robustness"
    for name in ("robustness.json", "robustness.png", "robustness_examples.png"):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "robustness.json").read_text())
    assert 0.5 < record["mean_corrupted_accuracy"] <= 1.0 and record["severities"] == [3] and record["n"] == 200
    assert record["training_resembles"] and "captured copies" in " ".join(record["training_transforms"])
    assert "mean corrupted" in out and "thick_strokes*" in out and "trained with:" in out

    # A baseline given as the record just written: the same model, so the mCE is 1.
    code, out, err = run_cli(
        capsys, "robustness", "--severity", "3", "--json", "--out", str(tmp_path / "again"),
        "--baseline", str(folder / "robustness.json"), *base,
    )  # fmt: skip
    assert code == 0, err
    again = json.loads(out)
    assert again["mean_corruption_error"] == pytest.approx(1.0)
    assert again["mean_corrupted_accuracy"] == record["mean_corrupted_accuracy"]  # same seed, same images

    # Through the reader: each corrupted digit read as a picture, so grey backgrounds and inverted ink are
    # undone before the model sees them (the shipped model learned lighting as well: read so, it keeps what it has).
    from digits.reading import Recognizer

    images, labels = mnist.test_images[:200], mnist.test_labels[:200]
    lighting = ["brightness", "contrast", "inversion"]  # what the reader undoes
    reader = R.evaluate_robustness_reading(Recognizer.load(), images, labels, corruptions=lighting, severities=(3,))
    assert reader.model.endswith("through digits' reader") and reader.through_reader
    for name in lighting:
        assert reader.accuracy[name][3] >= max(0.9, record["accuracy"][name]["3"] - 0.03), name
    with pytest.raises(ValueError, match="through the reader False against True"):
        R.load_baseline(folder / "robustness.json", reader, images, labels)

    # A baseline measured another way is refused, not compared.
    earlier = str(folder / "robustness.json")
    code, _, err = run_cli(capsys, "robustness", "--severity", "2", "--baseline", earlier, *base)
    assert code == 2 and "measured differently (severities [3] against [2])" in err


def test_the_command_refuses_bad_input_clearly(capsys, tmp_path, mnist_dir):
    for bad in ("0", "6", "three"):
        with pytest.raises(SystemExit) as exit_:
            main(["robustness", "--severity", bad])
        assert exit_.value.code == 2 and "1, 2, 3, 4, 5 or all" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "robustness", str(tmp_path / "missing"), "--data-dir", str(mnist_dir))
    assert code == 2 and "no run directory or model file at" in err
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "robustness", "--out", str(tmp_path / "file"), "--data-dir", str(mnist_dir))
    assert code == 2 and "--out" in err and "is a file" in err
    code, _, err = run_cli(capsys, "robustness", "--baseline", str(tmp_path / "nothing"), "--data-dir", str(mnist_dir))
    assert code == 2 and "--baseline" in err
    # A run that kept no validation split has no validation digits to measure.
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "run.json").write_text(json.dumps({"config": get_preset("fast").to_dict()}))
    code, _, err = run_cli(
        capsys, "robustness", str(tmp_path / "fast"), "--on", "validation", "--data-dir", str(mnist_dir)
    )
    assert code == 2 and "no validation digits" in err and "val_split 0" in err


@pytest.mark.slow
def test_the_command_on_a_small_trained_run(capsys, tmp_path, mnist, mnist_dir):
    from digits.train.loop import fit

    cfg = override(get_preset("seed"), train_limit=2000, epochs=1, batch_size=64, augment=AugmentConfig(rotate=10.0))
    fit(cfg, tmp_path / "run", data=mnist, progress=False, log=lambda s: None)
    code, out, err = run_cli(
        capsys, "robustness", str(tmp_path / "run"), "--severity", "all", "--limit", "100",
        "--data-dir", str(mnist_dir), "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert set(record["accuracy"]["rotate"]) == {"1", "2", "3", "4", "5"}
    assert record["training_transforms"] == ["rotation up to 10 degrees either way"]
    assert record["training_resembles"] == ["rotate"]
    assert (tmp_path / "run" / "robustness.json").is_file()  # beside the model
    assert dataclasses.asdict(R.RobustnessResult.from_dict(record))["n"] == 100
    assert record["digits"] == "test"

    # The digits the run held out (the last 20% of its 2,000), where a recipe may be tuned.
    code, out, err = run_cli(
        capsys, "robustness", str(tmp_path / "run"), "--severity", "3", "--on", "validation",
        "--data-dir", str(mnist_dir), "--json", "--out", str(tmp_path / "val"),
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["digits"] == "validation" and record["n"] == 400
    images, labels = R.validation_digits(tmp_path / "run", mnist)
    assert np.array_equal(images, mnist.train_images[1600:2000]) and np.array_equal(
        labels, mnist.train_labels[1600:2000]
    )
