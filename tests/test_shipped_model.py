"""The model shipped inside the package: what its metadata claims must be true."""

import json
from importlib import resources

import pytest

from digits.data import FILES
from digits.models.weights import load_weights
from digits.train.config import TrainConfig, get_preset
from digits.train.evaluate import evaluate, to_tensors

WEIGHTS = resources.files("digits") / "weights"
# The reader's MNIST test accuracy may not fall below this (the goal). It was 99.52% before it was trained
# to read other scanners and to doubt letters (captured copies, outlier exposure), 99.42% after, and is
# 99.59% with label smoothing.
MNIST_FLOOR = 0.995


def test_shipped_model_is_small_and_documented():
    path = WEIGHTS / "default.safetensors"
    assert path.is_file()
    assert path.stat().st_size <= 2 * 1024 * 1024
    meta = json.loads((WEIGHTS / "default.json").read_text())
    assert meta["data_sha256"] == FILES
    assert meta["trained_with"].startswith("digits train --preset ")
    cfg = TrainConfig.from_dict(meta["config"])
    assert cfg.augment.enabled, "the shipped model must be trained with augmentation"
    assert meta["test_accuracy"] >= MNIST_FLOOR


def test_shipped_metadata_describes_the_shipped_weights():
    """default.json is what a person reads about the model: it must be the file beside it, not an earlier one."""
    meta = json.loads((WEIGHTS / "default.json").read_text())
    model, stored = load_weights(WEIGHTS / "default.safetensors")
    assert meta["model"] == stored["model"]
    assert meta["config"]["model_options"] == stored["model_options"]
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["temperature"] == pytest.approx(stored["temperature"], rel=1e-9)
    assert meta["test_accuracy"] == pytest.approx(stored["test_accuracy"], abs=1e-9)
    # The command it names gives the config it was trained with.
    preset = meta["trained_with"].split("--preset ")[1].split()[0]

    # (Read back, so that fields added to the config since, at their defaults, mean what they meant then.)
    def as_json(cfg: TrainConfig) -> object:
        return json.loads(json.dumps(cfg.to_dict()))

    assert as_json(TrainConfig.from_dict(meta["config"])) == as_json(get_preset(preset))


def test_shipped_model_scores_what_its_metadata_says(mnist):
    model, meta = load_weights(WEIGHTS / "default.safetensors")
    result = evaluate(model, *to_tensors(mnist.test_images, mnist.test_labels))
    assert result.accuracy == pytest.approx(meta["test_accuracy"], abs=2e-4)
    assert result.accuracy >= MNIST_FLOOR
