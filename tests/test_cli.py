"""The `digits` command end to end, in-process (fast) and as a real subprocess (what users run)."""

import json
import os
import subprocess
import sys

import pytest

from digits.cli import main
from digits.models.weights import load_weights


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_the_registry_with_parameter_counts(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "seed" in out and "693,962" in out and "lenet5" in out
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = {r["name"]: r["parameters"] for r in json.loads(out)}
    assert rows["seed"] == 693_962


def test_summary_prints_a_layer_table(capsys):
    code, out, _ = run_cli(capsys, "summary", "seed")
    assert code == 0 and "(None, 5408)" in out and "Total params: 693,962" in out
    code, out, _ = run_cli(capsys, "summary", "seed", "--head", "gap", "--batchnorm")
    assert "BatchNorm2d" in out and "AdaptiveAvgPool2d" in out
    code, out, _ = run_cli(capsys, "summary", "seed", "-O", "tta=true")  # five views, one row per layer
    assert code == 0 and out.count("(Conv2d)") == 1 and "Total params: 693,962" in out
    # A list is JSON or just its items with commas between them.
    for widths in ("[64,128,256]", "64,128,256"):
        code, out, err = run_cli(capsys, "summary", "fastnet", "-O", f"widths={widths}")
        assert code == 0 and "Total params: 393,162" in out, err


def test_bad_inputs_are_clear_errors_not_tracebacks(capsys, tmp_path):
    code, _, err = run_cli(capsys, "summary", "nonet")
    assert code != 0 and "unknown model 'nonet'" in err
    code, _, err = run_cli(capsys, "summary", "seed", "-O", "nonsense")
    assert code != 0 and "KEY=VALUE" in err
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "missing"))
    assert code != 0 and "no model file" in err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    code, _, err = run_cli(capsys, "evaluate", str(junk))
    assert code != 0 and "not a readable safetensors" in err
    with pytest.raises(SystemExit) as exit_:  # the parser knows the choices (from the config) and lists them
        main(["train", "--optimizer", "lbfgs", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "invalid choice: 'lbfgs' (choose from 'sgd'" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "nothing"))
    assert code != 0 and "nothing to resume" in err
    # Counts that must be positive are refused by the parser, not used (-5 calibration images took 59,995).
    for argv in (
        ["predict", "x.png", "--top-k", "-2"],
        ["export", "run", "--int8", "--calibration-images", "-5"],
        ["export", "run", "--atol", "nan"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "must be above 0" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["seed", "fast"])  # fast: a model with tta, evaluated in bf16
def test_train_json_then_evaluate(capsys, tmp_path, mnist_dir, preset):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "train",
        "--preset",
        preset,
        "--data-dir",
        str(mnist_dir),
        "--train-limit",
        "3000",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["run_dir"] == str(out_dir)
    assert 0.8 < summary["test_accuracy"] <= 1.0
    assert summary["train_seconds"] > 0
    assert "epoch 1/1" in err  # progress goes to stderr as plain lines when not a terminal

    code, out, _ = run_cli(capsys, "evaluate", str(out_dir), "--data-dir", str(mnist_dir), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)  # at the run's precision:
    assert load_weights(out_dir)[1]["eval_precision"] == ("bf16" if preset == "fast" else "fp32")
    assert len(report["per_class"]["f1"]) == 10 and sum(map(sum, report["confusion"])) == 10_000
    assert (out_dir / "confusion.png").stat().st_size > 1000 and (out_dir / "mistakes.png").stat().st_size > 1000

    code, out, _ = run_cli(capsys, "evaluate", str(out_dir / "model.safetensors"), "--data-dir", str(mnist_dir))
    assert code == 0 and "precision" in out and "confusion" in out


@pytest.mark.slow
def test_console_script_killed_mid_run_leaves_no_partial_file_and_resumes(tmp_path, mnist_dir):
    """A real process killed without warning (SIGKILL) after two epochs; --resume finishes the run."""
    out_dir = tmp_path / "killed"
    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "digits.cli",
        "train",
        "--train-limit",
        "6000",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--out",
        str(out_dir),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 2/4"):
            break
    proc.kill()
    proc.wait()
    assert (out_dir / "checkpoint.pt").is_file()
    assert not (out_dir / "model.safetensors").exists()
    assert not [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp")], "a partial file was left behind"

    (out_dir / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"half")  # as a kill in the middle of a write leaves
    done = subprocess.run(
        [sys.executable, "-m", "digits.cli", "train", "--resume", str(out_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    assert not [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads(done.stdout)
    assert summary["epochs_run"] == 4
    history = json.loads((out_dir / "run.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert not (out_dir / "checkpoint.pt").exists()


def test_help_and_parser_do_not_import_torch():
    """`digits --help` and the image-reading commands must start fast and work without torch."""
    code = "import sys, digits.cli; digits.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_data_errors_are_reported_without_a_traceback(capsys, monkeypatch):
    import digits.data
    from digits.data import DataError

    def no_source(*args, **kwargs):
        raise DataError("no source worked: tried a folder (missing), PyPI (offline)")

    monkeypatch.setattr(digits.data, "fetch_mnist", no_source)
    code, _, err = run_cli(capsys, "data", "fetch")
    assert code == 1 and err.startswith("error: no source worked")


def test_the_shape_fit_refuses_counts_it_cannot_use(capsys):
    from digits.train.shapes import main as fit_shapes

    for argv in (["--captures", "-1"], ["--quantile", "100"]):
        with pytest.raises(SystemExit) as raised:
            fit_shapes(argv)
        assert raised.value.code == 2 and "must be" in capsys.readouterr().err


# A runtime-only installation (pip install digits[runtime]): torch cannot be imported.
_WITHOUT_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "safetensors"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from digits.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["models"], ["summary", "seed"], ["train", "--epochs", "1"]])
def test_a_missing_extra_is_named_not_a_traceback(argv):
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "needs torch" in done.stderr and "digits[train]" in done.stderr


@pytest.mark.parametrize("finished_an_epoch", [False, True])
def test_ctrl_c_tells_what_was_saved_and_leaves_no_empty_folder(
    capsys, monkeypatch, tmp_path, mnist_dir, finished_an_epoch
):
    import digits.train.loop

    def interrupted_fit(cfg, out, **kwargs):
        out.mkdir(parents=True)
        if finished_an_epoch:
            (out / "checkpoint.pt").write_bytes(b"an epoch")
        raise KeyboardInterrupt

    monkeypatch.setattr(digits.train.loop, "fit", interrupted_fit)
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data-dir", str(mnist_dir), "--out", str(out_dir))
    assert code == 130
    if finished_an_epoch:
        assert f"digits train --resume {out_dir}" in err
        assert (out_dir / "checkpoint.pt").is_file()
    else:
        assert "nothing was saved" in err and "--resume" not in err
        assert not out_dir.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege on Windows")
def test_a_run_in_runs_becomes_runs_latest(capsys, monkeypatch, tmp_path, mnist_dir):
    monkeypatch.chdir(tmp_path)
    runs, latest = tmp_path / "runs", tmp_path / "runs" / "latest"
    tiny = ["--preset", "seed", "--data-dir", str(mnist_dir), "--train-limit", "500", "--epochs", "1"]
    code, out, err = run_cli(capsys, "train", *tiny, "--batch-size", "64")  # a real run of a second or two
    assert code == 0, err
    (first,) = (p for p in runs.iterdir() if p.name != "latest")
    assert latest.is_symlink() and os.readlink(latest) == first.name  # relative: runs/ can be moved whole
    assert (latest / "model.safetensors").is_file()
    assert "runs/latest now points to it" in out

    import digits.train.loop

    def fit(cfg, out, **kwargs):  # the rest need no training: only where the run goes matters
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"weights")
        return None

    monkeypatch.setattr(digits.train.loop, "fit", fit)
    code, out, _ = run_cli(capsys, "train", *tiny, "--seed", "7")
    (second,) = (p for p in runs.iterdir() if p.name not in ("latest", first.name))
    assert code == 0 and os.readlink(latest) == second.name and "runs/latest now points to it" in out

    code, out, _ = run_cli(capsys, "train", *tiny, "--out", str(tmp_path / "elsewhere"))
    assert code == 0 and os.readlink(latest) == second.name and "latest" not in out

    def no_symlinks(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)  # as on Windows without the privilege: quietly no link
    code, out, err = run_cli(capsys, "train", *tiny, "--seed", "8")
    assert code == 0 and os.readlink(latest) == second.name and "latest" not in out + err


# --- hostile inputs to the reading and evaluation commands: a clear message, nothing written or lost -----------


def _digit_png(path, frames=1):
    from PIL import Image, ImageDraw

    pictures = []
    for k in range(frames):
        im = Image.new("L", (100, 100), 255)
        ImageDraw.Draw(im).line([(50, 10), (50 + 10 * k, 90)], fill=0, width=8)
        pictures.append(im)
    pictures[0].save(path, save_all=frames > 1, append_images=pictures[1:])
    return path


def test_an_output_folder_that_cannot_be_written_is_named_with_its_flag_before_any_work(capsys, tmp_path, monkeypatch):
    import digits.train.evaluate
    from digits.spec import SHIPPED_SAFETENSORS

    image = str(_digit_png(tmp_path / "one.png"))
    (tmp_path / "afile").write_text("mine")
    code, out, err = run_cli(capsys, "predict", image, "--debug-dir", str(tmp_path / "afile"))
    assert code == 2 and "--debug-dir" in err and "is a file, not a folder" in err and not out
    assert (tmp_path / "afile").read_text() == "mine"

    def refused(*args, **kwargs):  # a read-only folder (tests may run as root, who may write anywhere)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("digits.cli.tempfile.TemporaryFile", refused)
    code, _, err = run_cli(capsys, "read", image, "--debug-dir", str(tmp_path / "ro"))
    assert code == 2 and "cannot write in" in err and "Permission denied" in err and "--debug-dir" in err
    monkeypatch.setattr(digits.train.evaluate, "evaluate_saved", lambda *a: pytest.fail("evaluated anyway"))
    code, _, err = run_cli(capsys, "evaluate", str(SHIPPED_SAFETENSORS), "--out", str(tmp_path / "ro"))
    assert code == 2 and "cannot write in" in err and "--out" in err


def test_only_the_first_frame_of_an_animation_or_a_multipage_file_is_read_and_the_user_is_told(capsys, tmp_path):
    gif = str(_digit_png(tmp_path / "anim.gif", frames=3))
    tiff = str(_digit_png(tmp_path / "pages.tiff", frames=2))
    code, out, err = run_cli(capsys, "predict", gif, tiff)
    assert code == 0 and "anim.gif: 1" in out
    assert "anim.gif holds 3 frames (an animation); only the first is read" in err
    assert "pages.tiff holds 2 frames (pages); only the first is read" in err
    code, out, _ = run_cli(capsys, "read", gif, "--json")
    assert json.loads(out)[0]["notes"] == [f"{gif} holds 3 frames (an animation); only the first is read"]


def test_bad_paths_and_sizes_say_what_is_wrong_and_which_flag_helps(capsys, tmp_path):
    os.symlink("loop", tmp_path / "loop")
    os.symlink("gone.png", tmp_path / "dangling")
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "loop"), str(tmp_path / "dangling"))
    assert code == 1 and "loop: error:" in err and "a loop of links" in err
    assert "names gone.png, which does not exist" in err
    image = str(_digit_png(tmp_path / "one.png"))  # 100 x 100 = 10,000 pixels
    code, _, err = run_cli(capsys, "predict", image, "--max-pixels", "5000")
    assert code == 1 and "more than the limit of 5,000" in err and "--max-pixels" in err
    code, out, _ = run_cli(capsys, "predict", image, "--max-pixels", "10000")
    assert code == 0 and ": 1 (" in out


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    image = str(_digit_png(tmp_path / "one.png"))
    done = subprocess.Popen(
        [sys.executable, "-m", "digits.cli", "predict", image, image], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    done.stdout.close()  # the reader leaves before anything is written, as `| head -0` would
    err = done.stderr.read().decode()
    assert done.wait() == 141 and err == ""


def test_another_model_than_the_presets_starts_from_its_own_options(capsys, tmp_path, monkeypatch):
    import digits.train.loop
    from digits.errors import RunError

    seen = []

    def fit(cfg, *args, **kwargs):  # what would be trained, without training it
        seen.append(cfg)
        raise RunError("stopped here")

    monkeypatch.setattr(digits.train.loop, "fit", fit)
    monkeypatch.setattr("digits.data.load_mnist", lambda *a, **k: None)
    code, _, err = run_cli(capsys, "train", "--preset", "fast", "--model", "mlp", "--out", str(tmp_path / "r"))
    assert code == 1 and "stopped here" in err and "has no option" not in err
    assert seen[0].model == "mlp" and seen[0].model_options == {}
    run_cli(capsys, "train", "--preset", "fast", "--model", "mlp", "--dropout", "0.1", "--out", str(tmp_path / "r"))
    assert seen[1].model_options == {"dropout": 0.1}
    run_cli(capsys, "train", "--preset", "fast", "--out", str(tmp_path / "r"))  # its own model keeps its options
    assert seen[2].model == "fastnet" and seen[2].model_options["stem"] == "dct"
