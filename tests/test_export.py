"""Tests of digits.export: the ONNX file is valid, batch-size free, equal to torch, and int8 costs little."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from digits.cli import main
from digits.errors import ModelFileError, ParityError
from digits.export import check_parity, export_onnx, onnx_logits, read_metadata
from digits.models import create_model
from digits.models.weights import load_weights
from digits.spec import ONNX_INPUT, ONNX_OUTPUT, SHIPPED_ONNX, SHIPPED_SAFETENSORS, to_model_input


def test_export_is_a_checked_onnx_file_with_the_models_metadata(model_dir):
    path = model_dir / "model.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert not list(model_dir.glob("*.data")), "the weights must be inside the one file"
    _, meta = load_weights(model_dir)
    exported = read_metadata(path)
    assert exported["model"] == meta["model"] and exported["int8"] is False
    assert exported["temperature"] == pytest.approx(meta.get("temperature", 1.0))
    assert exported["test_accuracy"] == pytest.approx(meta["test_accuracy"])
    assert exported["data_sha256"] == meta["data_sha256"]


def test_onnx_equals_torch_at_every_batch_size(model_dir, mnist):
    model, _ = load_weights(model_dir)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[0], str) and shape[1:] == [1, 28, 28], f"batch dimension not dynamic: {shape}"
    for n in (1, 7, 256):
        images = mnist.test_images[:n]
        x = to_model_input(images)
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert check_parity(model, model_dir / "model.onnx", mnist.test_images[:500]) <= 1e-4


def test_parity_check_catches_a_different_model(model_dir, mnist):
    other = create_model("fastnet").eval()  # untrained: its logits are nothing like the trained ones
    with pytest.raises(ParityError, match="differ from torch"):
        check_parity(other, model_dir / "model.onnx", mnist.test_images[:20])


def test_int8_loses_at_most_a_tenth_of_a_point(model_dir, mnist, mnist_dir, tmp_path, capsys):
    out = tmp_path / "int8.onnx"
    code = main(["export", str(model_dir), "--int8", "-o", str(out), "--data-dir", str(mnist_dir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["file"] == str(out) and report["calibration_images"] == 1000
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert read_metadata(out)["int8"] is True
    assert out.stat().st_size < (model_dir / "model.onnx").stat().st_size / 2  # 8-bit weights, not 32
    # Measured here again, not taken from the report: the whole test set through both files.
    labels = mnist.test_labels.astype(np.int64)
    fp32 = float((onnx_logits(model_dir / "model.onnx", mnist.test_images).argmax(1) == labels).mean())
    int8 = float((onnx_logits(out, mnist.test_images).argmax(1) == labels).mean())
    assert fp32 - int8 <= 0.001
    assert report["test_accuracy_int8"] == pytest.approx(int8) and report["test_accuracy_fp32"] == pytest.approx(fp32)


def test_export_command_writes_beside_the_run_and_checks_parity(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert "ONNX logits equal torch's within" in out and (run / "model.onnx").is_file()
    assert main(["export", str(run / "model.safetensors")]) == 2  # a file, not a run: -o is needed
    assert "-o FILE" in capsys.readouterr().err


def test_bad_export_requests_are_clear_errors(model_dir, tmp_path):
    with pytest.raises(ValueError, match="calibration_images"):
        export_onnx(model_dir, tmp_path / "x.onnx", int8=True)
    with pytest.raises(ModelFileError, match="no model file"):
        export_onnx(tmp_path / "nothing", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ModelFileError):
        load_weights(Path(tmp_path / "nothing"))


def export_noise(model: torch.nn.Module, path: Path, caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    """The warnings, and the log lines of WARNING or above (torch's handler prints them), of one export_onnx call.

    caplog listens on the root logger: torch resets the handlers of its own loggers when it exports.
    """
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, however often it was shown before
        export_onnx(model, path)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [f"{w.category.__name__}: {w.message}" for w in caught], logged


def test_export_prints_no_torch_internal_warnings(tmp_path, caplog):
    # Before: "torchvision is not installed. Skipping torchvision::nms" (and three more) logged, and
    # "FutureWarning: `isinstance(treespec, LeafSpec)` is deprecated", on every export.
    assert export_noise(create_model("fastnet"), tmp_path / "m.onnx", caplog) == ([], [])


def test_export_still_shows_warnings_it_does_not_know(tmp_path, monkeypatch, caplog):
    real_export = torch.onnx.export

    def export_with_news(*args, **kwargs):
        warnings.warn("something new and real", UserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", DeprecationWarning, stacklevel=1)
        logging.getLogger("torch.onnx._internal.exporter._registration").warning("registry is broken")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_with_news)
    caught, logged = export_noise(create_model("fastnet"), tmp_path / "m.onnx", caplog)
    assert caught == [
        "UserWarning: something new and real",
        "DeprecationWarning: `isinstance(treespec, LeafSpec)` is deprecated",  # same words, another category
    ]
    assert logged == ["registry is broken"]


def test_the_shipped_onnx_is_the_shipped_weights(mnist):
    """default.onnx must be re-exported whenever default.safetensors changes."""

    if not (SHIPPED_ONNX.is_file() and SHIPPED_SAFETENSORS.is_file()):
        pytest.skip("the package ships no ONNX model yet")
    assert check_parity(SHIPPED_SAFETENSORS, SHIPPED_ONNX, mnist.test_images[:500]) <= 1e-4
    _, meta = load_weights(SHIPPED_SAFETENSORS)
    exported = read_metadata(SHIPPED_ONNX)
    assert exported["temperature"] == pytest.approx(meta["temperature"]) and exported["int8"] is False


def test_a_model_with_tta_exports_its_shifts_too(tmp_path, mnist):
    torch.manual_seed(0)
    model = create_model("fastnet", stem="dct", widths=[16, 24, 48], tta=True).eval()
    path = export_onnx(model, tmp_path / "tta.onnx")
    images = mnist.test_images[:64]
    with torch.inference_mode():
        expected = model(torch.from_numpy(to_model_input(images))).numpy()
        plain = model.net(torch.from_numpy(to_model_input(images))).log_softmax(1).numpy()
    np.testing.assert_allclose(onnx_logits(path, images), expected, atol=1e-4, rtol=0)
    assert np.abs(plain - expected).max() > 1e-3  # the shifts are in the file, not left behind


def test_a_model_with_levels_exports_them_too(tmp_path, mnist):
    torch.manual_seed(0)
    model = create_model("fastnet", widths=[8, 8, 8], levels=True).eval()
    path = export_onnx(model, tmp_path / "levels.onnx")
    digits = mnist.test_images
    images = np.concatenate([digits[:32], 255 - digits[32:64], 100 + digits[64:96] // 3])  # as given, negative, grey
    with torch.inference_mode():
        expected = model(torch.from_numpy(to_model_input(images))).numpy()
    np.testing.assert_allclose(onnx_logits(path, images), expected, atol=1e-4, rtol=0)


def test_export_never_writes_over_the_model_or_an_existing_file_unless_forced(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    weights = (model_dir / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(weights)
    (run / "run.json").write_text("{}")
    for target in ("model.safetensors", "run.json"):  # the model itself, or the run's own files: never
        for force in ([], ["--force"]):
            assert main(["export", str(run), "-o", str(run / target), *force]) == 2
            assert "-o" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == weights and (run / "run.json").read_text() == "{}"

    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's own file")
    assert main(["export", str(run), "-o", str(mine)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and mine.read_bytes() == b"the user's own file"
    assert main(["export", str(run), "-o", str(mine), "--force"]) == 0
    assert mine.read_bytes() != b"the user's own file" and onnx_logits(mine, np.zeros((1, 28, 28), np.uint8)).shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.onnx", "run"]  # no partial file left


def test_an_export_that_fails_its_check_leaves_the_old_file_and_nothing_else(model_dir, tmp_path, monkeypatch, capsys):
    import digits.export

    old = tmp_path / "model.onnx"
    old.write_bytes(b"the export that worked")

    def broken(path, images):  # noqa: ANN001, ANN202 - a model whose ONNX logits came out NaN
        return np.full((len(images), 10), np.nan, np.float32)

    monkeypatch.setattr(digits.export, "onnx_logits", broken)
    assert main(["export", str(model_dir / "model.safetensors"), "-o", str(old), "--force"]) == 1
    assert "not finite" in capsys.readouterr().err
    assert old.read_bytes() == b"the export that worked" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _flip_bytes(path: Path, at: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + n] = bytes(b ^ 0xFF for b in data[at : at + n])
    path.write_bytes(bytes(data))


def test_an_onnx_file_whose_weights_changed_is_refused_as_damaged(model_dir, tmp_path):
    from digits.files import GRAPH_CHECKSUM, onnx_graph_sha256
    from digits.reading import Recognizer

    path = tmp_path / "model.onnx"
    path.write_bytes((model_dir / "model.onnx").read_bytes())
    assert read_metadata(path)[GRAPH_CHECKSUM] == onnx_graph_sha256(path.read_bytes())
    Recognizer.load(path)  # intact: loads
    proto = onnx.load(str(path))
    weights = max(proto.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    _flip_bytes(path, path.read_bytes().index(weights[:256]) + 1000)  # inside the largest weight tensor
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # onnxruntime alone would run it
    with pytest.raises(ModelFileError, match=r"model\.onnx is damaged.*export it again"):
        Recognizer.load(path)


def test_the_graph_checksum_reads_what_onnx_writes():
    from digits.files import onnx_graph_sha256

    proto = onnx.load(str(SHIPPED_ONNX))
    assert onnx_graph_sha256(proto.SerializeToString()) == hashlib.sha256(proto.graph.SerializeToString()).hexdigest()
    assert onnx_graph_sha256(SHIPPED_ONNX.read_bytes()[:-7]) is None  # truncated: no checksum, not a wrong one
    assert onnx_graph_sha256(b"not a protocol buffer at all") is None
