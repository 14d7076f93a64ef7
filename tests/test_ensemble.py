"""An ensemble model: built from the registry, joined from runs, saved, exported and read like any network."""

import json

import numpy as np
import pytest
import torch

from digits.errors import ConfigError, RunError
from digits.models import count_parameters, create_model
from digits.models.weights import load_weights
from digits.spec import SHIPPED_SAFETENSORS
from digits.train.config import get_preset, override
from digits.train.ensemble import join
from digits.train.loop import fit


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):
    """Two small runs of different networks that held out the same validation digits, and one that did not."""
    base = override(get_preset("fast"), train_limit=6000, val_split=0.1)
    out = tmp_path_factory.mktemp("members")
    made = {}
    for name, cfg in {
        "a": base,
        "b": override(base, model_options={"widths": [8, 16, 32]}, seed=1),
        "other_split": override(base, val_split=0.2),
    }.items():
        fit(cfg, out / name, data=mnist, progress=False, log=_quiet)
        made[name] = out / name
    return made


def test_an_ensemble_answers_with_the_mean_of_its_members_probabilities():
    torch.manual_seed(0)
    members = [{"model": "fastnet", "model_options": {"widths": [8, 8, 8]}}, {"model": "mlp"}]
    model = create_model("ensemble", members=members).eval()
    a, b = create_model("fastnet", widths=[8, 8, 8]).eval(), create_model("mlp").eval()
    a.load_state_dict(model.members[0].state_dict())
    b.load_state_dict(model.members[1].state_dict())
    x = torch.rand(5, 1, 28, 28)
    expected = (a(x).softmax(1) + b(x).softmax(1)) / 2
    torch.testing.assert_close(model(x).softmax(1), expected, atol=1e-6, rtol=1e-5)
    assert count_parameters(model) == count_parameters(a) + count_parameters(b)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([{"model": "mlp"}], "two or more members"),
        ("mlp", "two or more members"),
        ([{"model": "mlp"}, "seed"], "member 1"),
        ([{"model": "mlp"}, {"model": "nonet"}], "unknown model 'nonet'"),
        ([{"model": "mlp"}, {"model": "mlp", "weights": 2}], "'weights'"),
        ([{"model": "mlp"}, {"model": "mlp", "model_options": {"hidden": 0.5, "nope": 1}}], "no option 'nope'"),
    ],
)
def test_bad_members_are_refused_with_what_is_wrong(members, message):
    with pytest.raises(ConfigError, match=message):
        create_model("ensemble", members=members)


def test_joined_runs_are_one_model_that_every_reader_takes(tmp_path, runs, mnist):
    from digits.export import onnx_logits
    from digits.reading import Recognizer

    out = tmp_path / "joined"
    summary = join([runs["a"], runs["b"]], out, data=mnist, log=_quiet)
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.onnx", "run.json"}
    model, meta = load_weights(out)
    assert meta["model"] == "ensemble" and len(meta["members"]) == 2
    assert meta["temperature"] == pytest.approx(summary["temperature"]) and summary["temperature"] > 0
    # The saved model is the average of the two runs' networks, as evaluate averages them.
    images = torch.from_numpy(mnist.test_images[:300].copy())
    nets = [load_weights(runs[k])[0] for k in ("a", "b")]
    x = images.float().div(255).unsqueeze(1)
    with torch.no_grad():
        expected = sum(n(x).softmax(1) for n in nets) / 2
        torch.testing.assert_close(model(x).softmax(1), expected, atol=1e-5, rtol=1e-4)
    # The test accuracy is the ensemble's, on all 10,000 test digits, with the run.json beside it saying so.
    record = json.loads((out / "run.json").read_text())
    assert record["test_accuracy"] == summary["test_accuracy"] and record["test"]["n"] == 10_000
    assert [m["config"]["val_split"] for m in record["members"]] == [0.1, 0.1]
    # ONNX and the reader give the same answers as torch.
    onnx = onnx_logits(out / "model.onnx", mnist.test_images[:300])
    np.testing.assert_allclose(torch.from_numpy(onnx).softmax(1).numpy(), expected.numpy(), atol=1e-4)
    reader = Recognizer.load(out)
    read = [reader.predict(img).digit for img in mnist.test_images[:50]]
    assert np.mean(np.array(read) == mnist.test_labels[:50]) >= 0.9


def test_an_ensemble_in_int8_reads_as_in_fp32(tmp_path, runs, mnist):
    """The pair served in int8 (digits export --int8, then --model FILE.onnx): both members quantized, read alike."""
    from digits.export import export_onnx, onnx_logits, read_metadata
    from digits.reading import Recognizer

    out = tmp_path / "joined"
    join([runs["a"], runs["b"]], out, data=mnist, log=_quiet)
    int8 = export_onnx(out, tmp_path / "pair-int8.onnx", int8=True, calibration_images=mnist.train_images[:500])
    meta = read_metadata(int8)
    assert meta["int8"] is True and meta["model"] == "ensemble"
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    fp32_right = onnx_logits(out / "model.onnx", images).argmax(1) == labels
    int8_right = onnx_logits(int8, images).argmax(1) == labels
    assert int8_right.mean() >= fp32_right.mean() - 0.005
    reader = Recognizer.load(int8)
    assert reader.temperature == pytest.approx(load_weights(out)[1]["temperature"])
    read = np.array([reader.predict(img).digit for img in images[:50]])
    assert np.mean(read == labels[:50]) >= 0.9


def test_what_cannot_be_joined_is_refused_before_any_work(tmp_path, runs, mnist):
    with pytest.raises(ConfigError, match="different validation digits"):
        join([runs["a"], runs["other_split"]], tmp_path / "x", data=mnist, log=_quiet)
    with pytest.raises(ConfigError, match="two or more"):
        join([runs["a"]], tmp_path / "x", data=mnist, log=_quiet)
    with pytest.raises(ConfigError, match="ONNX"):
        join([runs["a"], runs["b"] / "model.onnx"], tmp_path / "x", data=mnist, log=_quiet)
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((runs["a"] / "model.safetensors").read_bytes())  # weights without a run.json
    with pytest.raises(ConfigError, match="no training record"):
        join([runs["a"], lone], tmp_path / "x", data=mnist, log=_quiet)
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists"):
        join([runs["a"], runs["b"]], used, data=mnist, log=_quiet)
    assert not (tmp_path / "x").exists()


def test_the_command_joins_and_the_robustness_report_names_each_members_training(tmp_path, runs, mnist_dir, capsys):
    from digits.cli import main
    from digits.train.robustness import training_configs_of, training_transforms

    out = tmp_path / "joined"
    assert main(["ensemble", str(runs["a"]), str(runs["b"]), "-o", str(out), "--data-dir", str(mnist_dir)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    cfgs = training_configs_of(out)
    assert len(cfgs) == 2 and cfgs[1].model_options == {"widths": [8, 16, 32]}
    assert training_transforms(*cfgs)[0].startswith("member 1: ")
    assert main(["ensemble", str(runs["a"]), "-o", str(tmp_path / "y"), "--tta", "--data-dir", str(mnist_dir)]) == 2


def test_the_report_of_a_joined_model_names_its_members(tmp_path, runs, mnist):
    from digits.data import MNIST
    from digits.train.html_report import measure, render
    from digits.train.trust import near_ood

    out = tmp_path / "joined"
    join([runs["a"], runs["b"]], out, data=mnist, log=_quiet)
    small = MNIST(
        mnist.train_images, mnist.train_labels, mnist.test_images[:500], mnist.test_labels[:500], mnist.sha256
    )
    others = {name: images[:50] for name, images in near_ood().items()}
    page = render([measure(out, small, severity=None, others=others, log=_quiet)])
    assert "<dt>member 1</dt><dd>fastnet" in page and f"{runs['b']}" in page
    assert "member 2: model_options" in page  # every member's settings
    shipped = render([measure(SHIPPED_SAFETENSORS, small, severity=None, others=others, log=_quiet)])
    assert "<dt>member 2</dt><dd>fastnet, 99.23% on the test set, digits train --preset reader --augment" in shipped


def test_adapting_an_ensemble_head_only_teaches_every_members_head(mnist):
    import dataclasses

    from digits.train.adapt import _fine_tune
    from digits.train.config import AdaptConfig
    from digits.train.evaluate import to_tensors

    torch.manual_seed(0)
    model = create_model("ensemble", members=[{"model": "fastnet"}, {"model": "mlp"}]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    digits = to_tensors(mnist.train_images[:64], mnist.train_labels[:64])
    _fine_tune(model, digits, digits, dataclasses.replace(AdaptConfig(), steps=3, layers="head"), 0.0)
    changed = {k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])}
    heads = {"members.0.14.weight", "members.0.14.bias", "members.1.7.weight", "members.1.7.bias"}
    assert changed == heads, sorted(changed)
