"""digits.train.outliers and outlier exposure: non-digits trained towards no digit in particular."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import digits.train.loop as train_loop
from digits.models.weights import load_weights
from digits.reading import Recognizer
from digits.train.config import TrainConfig, get_preset, override, parse_augment
from digits.train.loop import OUTLIER, OUTLIER_WEIGHT, _loss, fit
from digits.train.outliers import LETTERS, outlier_images


def test_outlier_images_are_mnist_like_deterministic_and_varied():
    a, b = outlier_images(200, seed=0), outlier_images(200, seed=0)
    assert a.shape == (200, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, outlier_images(200, seed=1))
    assert (a.reshape(200, -1).max(axis=1) == 255).all()  # every one has ink, stretched like MNIST's strokes
    assert len({x.tobytes() for x in a}) == 200
    assert not set(LETTERS) & set("OIlSZBGqgbD0123456789")  # nothing often written like a digit


def _outlier_exposure_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return _loss(logits, y, TrainConfig(outliers=1, label_smoothing=label_smoothing), None)


def test_the_outlier_term_is_least_at_the_uniform_distribution():
    y = torch.full((4,), OUTLIER)
    uniform = _outlier_exposure_loss(torch.zeros(4, 10), y, 0.0)
    assert uniform.item() == pytest.approx(OUTLIER_WEIGHT * math.log(10), rel=1e-6)
    peaked = torch.zeros(4, 10)
    peaked[:, 3] = 2.0
    assert _outlier_exposure_loss(peaked, y, 0.0) > uniform
    # Digits keep plain cross-entropy, and a batch mixes both.
    digits = torch.tensor([3, 3, OUTLIER, OUTLIER])
    expected = (torch.nn.functional.cross_entropy(peaked[:2], digits[:2], reduction="sum") + 2 * uniform) / 4
    mixed = _outlier_exposure_loss(torch.cat([peaked[:2], torch.zeros(2, 10)]), digits, 0.0)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_with_outliers_lowers_the_confidence_on_them(mnist, tmp_path):
    lines: list[str] = []
    base = override(get_preset("fast"), train_limit=8000, val_split=0.1, threads=1, model_options={"tta": False})
    fit(base, tmp_path / "plain", data=mnist, progress=False, log=lambda _: None)
    run = fit(override(base, outliers=2000), tmp_path / "oe", data=mnist, progress=False, log=lines.append)
    assert any(line.startswith("adding 2,000 non-digit shapes") for line in lines), lines
    assert run.test.accuracy > 0.95
    held_out = outlier_images(300, seed=99)  # other shapes than those trained on
    flagged = {}
    for name in ("plain", "oe"):
        # At a threshold of 0.7 (at the default 0.9 a model this short-trained doubts most shapes either way).
        recognizer = Recognizer.load(tmp_path / name, backend="torch", shape_check=False, threshold=0.7)
        flagged[name] = np.mean([p.uncertain for p in recognizer.classify(held_out)])
    assert flagged["oe"] > flagged["plain"] + 0.08, flagged  # 52% -> 65% in one short epoch


def test_a_teacher_takes_its_share_of_each_digits_loss_and_none_of_an_outliers():
    logits = torch.tensor([[2.0, 0.0, -1.0] + [0.0] * 7, [0.0] * 10])
    y = torch.tensor([0, OUTLIER])
    taught = torch.full((2, 10), 0.1)
    log_p = torch.log_softmax(logits, dim=1)
    cfg = TrainConfig(outliers=1, teacher="teacher.safetensors", distill=0.25)
    digit = 0.75 * -log_p[0, 0] + 0.25 * -(taught[0] * log_p[0]).sum()
    outlier = OUTLIER_WEIGHT * -log_p[1].mean()
    assert _loss(logits, y, cfg, taught).item() == pytest.approx(((digit + outlier) / 2).item(), rel=1e-6)
    # All of it from the teacher: the label no longer counts.
    only = TrainConfig(teacher="teacher.safetensors", distill=1.0)
    assert _loss(logits[:1], torch.tensor([5]), only, taught[:1]).item() == pytest.approx(
        -(taught[0] * log_p[0]).sum().item(), rel=1e-6
    )


def test_a_run_learns_from_a_teacher_on_the_clean_pictures(mnist, tmp_path, monkeypatch):
    base = override(get_preset("fast"), train_limit=4000, val_split=0.1, threads=1, model_options={"tta": False})
    teacher = fit(base, tmp_path / "teacher", data=mnist, progress=False, log=lambda _: None)
    shown: list[torch.Tensor] = []  # what the teacher was given
    real = train_loop._teacher

    def watched(*args, **kwargs):
        network, taught_by = real(*args, **kwargs)
        network.register_forward_hook(lambda _module, inputs, _output: shown.append(inputs[0].detach().clone()))
        return network, taught_by

    monkeypatch.setattr(train_loop, "_teacher", watched)
    lines: list[str] = []
    cfg = override(
        base, teacher=str(teacher.dir), distill=0.5, augment=parse_augment("rotate=10,lines=0.5,impulse=0.1")
    )
    run = fit(cfg, tmp_path / "student", data=mnist, progress=False, log=lines.append)
    assert any(line.startswith(f"learning from {teacher.dir}") for line in lines), lines
    assert sum(len(x) for x in shown) == 3600  # every training picture, once
    # Rotated but never marked: salt and pepper would have lit the top row of almost every picture.
    top_rows = torch.cat(shown)[:, 0, 0, :]
    assert (top_rows.amax(dim=1) < 0.5).float().mean() > 0.99
    assert run.test.accuracy > 0.9
    record = json.loads((run.dir / "run.json").read_text())
    assert record["config"]["teacher"] == str(teacher.dir)
    # The record names the teacher by its weights' checksum and keeps how it was trained.
    taught_by = json.loads((teacher.dir / "run.json").read_text())
    assert record["teacher"]["tensors_sha256"] == load_weights(teacher.dir / "model.safetensors")[1]["tensors_sha256"]
    assert record["teacher"]["config"] == taught_by["config"]
    assert record["teacher"]["test_accuracy"] == pytest.approx(taught_by["test_accuracy"])
