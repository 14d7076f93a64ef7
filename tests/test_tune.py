"""digits tune: the search space and its errors, the shared study, and tiny real studies end to end."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from digits.cli import main
from digits.errors import ConfigError
from digits.train.config import AugmentConfig, get_preset, override
from digits.train.tune import DEFAULT_SPACE, FULL_AUGMENT, Settings, apply_params, load_space, open_storage, open_study

BASE = override(get_preset("fast"), val_split=0.1)


def test_the_default_space_searches_what_it_promises_and_its_corners_are_valid():
    space = load_space(None, BASE)
    assert set(space) == {"lr", "batch_size", "widths", "dropout", "weight_decay", "label_smoothing", "augment"}
    assert space["lr"].log and space["batch_size"].choices and space["widths"].choices


def test_what_the_command_line_sets_is_not_searched():
    space = load_space(None, override(BASE, lr=0.02), fixed=frozenset({"lr", "dropout"}))
    assert "lr" not in space and "dropout" not in space and "widths" in space


def test_values_land_in_the_config_where_they_belong():
    cfg = apply_params(BASE, {"lr": 0.05, "widths": [16, 32, 64], "dropout": 0.1, "augment": 0.5})
    assert cfg.lr == 0.05
    assert cfg.model_options == {**BASE.model_options, "widths": [16, 32, 64], "dropout": 0.1}
    assert cfg.augment == AugmentConfig(
        rotate=FULL_AUGMENT.rotate / 2,
        scale=FULL_AUGMENT.scale / 2,
        shift=FULL_AUGMENT.shift / 2,
        shear=FULL_AUGMENT.shear / 2,
    )
    assert apply_params(BASE, {"augment": 0.0}).augment == AugmentConfig()


def test_a_space_file_replaces_and_fixes_entries(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("dropout = 0.0\nbatch_size = { choices = [64, 128] }\n[lr]\nlow = 0.01\nhigh = 0.05\n")
    space = load_space(path, BASE)
    assert space["dropout"].fixed == 0.0 and space["batch_size"].choices == (64, 128)
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (0.01, 0.05, False)
    assert space["widths"].choices == tuple(DEFAULT_SPACE["widths"]["choices"])  # the rest: the defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lr]\nlow = 0.1\nhigh = 0.01\n", "low < high"),
        ("[lr]\nlow = 0.0\nhigh = 0.1\nlog = true\n", "log scale needs low > 0"),
        ("[lr]\nlow = 0.01\nhigh = 0.1\nstep = 2\n", "unknown keys"),
        ("[lr]\nlow = 'a'\nhigh = 0.1\n", "needs low and high numbers"),
        ("batch_size = { choices = [] }\n", "non-empty list"),
        ("widths = [16, 32, 64]\n", "must be a table"),
        ("[wings]\nlow = 1\nhigh = 3\n", "corner is not a valid config"),  # no such field or model option
        ("[dropout]\nlow = 0.0\nhigh = 1.5\n", "corner is not a valid config"),
        ("[lr\nlow = 1\n", "not valid TOML"),
    ],
)
def test_a_bad_space_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_space(path, BASE)
    assert str(path) in str(caught.value)


def test_the_command_reports_a_bad_space_file_before_any_work(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text("lr: 1\n")
    assert main(["tune", "--space", str(tmp_path / "space.yaml"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "must be a .toml or .json file" in err
    assert not (tmp_path / "out").exists()


def test_a_database_storage_has_heartbeats(tmp_path):
    from optuna.storages import RDBStorage

    storage = open_storage(Settings(BASE, {}, tmp_path, 1, storage=f"sqlite:///{tmp_path / 'study.db'}"))
    assert isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() == 30
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        open_storage(Settings(BASE, {}, tmp_path, 1, storage="nosuchdialect://x/y"))


def test_a_trial_left_running_by_a_dead_process_is_marked_failed(tmp_path):
    import optuna

    settings = Settings(BASE, {}, tmp_path, 1)
    study = open_study(settings)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now belongs to no process (nothing reuses it this fast)
    trial = study.ask()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", dead.pid)
    alive = study.ask()  # this process's own trial stays running
    alive.set_user_attr("host", socket.gethostname())
    alive.set_user_attr("pid", __import__("os").getpid())
    lines: list[str] = []
    again = open_study(settings, log=lines.append)
    states = {t.number: t.state for t in again.get_trials()}
    assert states == {0: optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.RUNNING}
    assert lines == [f"trial 0 was left running by process {dead.pid}, which is gone: marked failed"]


TINY = ["--train-limit", "2000", "--epochs", "1", "--val-split", "0.2"]


@pytest.mark.slow
def test_a_tiny_study_chooses_on_validation_and_its_best_config_trains(tmp_path, mnist_dir, capsys):
    out = tmp_path / "study"
    assert main(["tune", "--trials", "3", "--out", str(out), "--data-dir", str(mnist_dir), *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\ntrial ") + printed.startswith("trial ") >= 3  # one line per finished trial, live
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["trials"].get(s, 0) for s in ("complete", "pruned")) == 3
    assert 0.5 < summary["best_val_accuracy"] <= 1 and 0.5 < summary["test_accuracy"] <= 1
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and {"lr", "widths", "augment"} <= set(rows[0])
    assert (out / "history.png").stat().st_size > 1000 and (out / "importance.png").stat().st_size > 1000
    for trial in sorted((out / "trials").iterdir()):  # the trials never looked at the test set
        record = json.loads((trial / "run.json").read_text()) if (trial / "run.json").exists() else {"test": None}
        assert record["test"] is None

    best = json.loads((out / "best.json").read_text())
    assert (
        main(
            [
                "train",
                "--config",
                str(out / "best.json"),
                "--out",
                str(tmp_path / "again"),
                "--data-dir",
                str(mnist_dir),
                "--json",
            ]
        )
        == 0
    )
    config = json.loads((tmp_path / "again" / "run.json").read_text())["config"]
    assert config == best


@pytest.mark.slow
def test_two_workers_share_one_journal_file_without_corrupting_it(tmp_path, mnist_dir):
    out = tmp_path / "study"
    args = ["tune", "--trials", "4", "--workers", "2", "--out", str(out), "--data-dir", str(mnist_dir), *TINY]
    done = subprocess.run([sys.executable, "-m", "digits", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import optuna

    study = optuna.load_study(study_name="digits", storage=open_storage(Settings(BASE, {}, out, 4)))
    trials = study.get_trials()
    assert 4 <= len(trials) <= 5  # two workers may each start a trial as the count reaches 4
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state.is_finished() for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers took trials
    assert all(Path(t.user_attrs["run_dir"]).is_dir() for t in trials)


@pytest.mark.slow
def test_a_trial_that_falls_behind_is_pruned_after_its_epoch(tmp_path, mnist_dir, monkeypatch):
    import optuna

    from digits.spec import CHECKPOINT_NAME, WEIGHTS_NAME
    from digits.train import tune as tune_mod

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):  # type: ignore[no-untyped-def]
            return True

    monkeypatch.setattr(tune_mod, "_pruner", lambda name: Always())
    base = override(BASE, train_limit=1000, epochs=2)
    settings = Settings(base, load_space(None, base), tmp_path, 2, data_dir=str(mnist_dir))
    lines: list[str] = []
    tune_mod.run_worker(settings, log=lines.append)
    trials = open_study(settings).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert [sorted(t.intermediate_values) for t in trials] == [[1], [1]]  # stopped after the first of two epochs
    run_dir = Path(trials[0].user_attrs["run_dir"])
    assert (run_dir / CHECKPOINT_NAME).is_file() and not (run_dir / WEIGHTS_NAME).exists()
    assert all(" pruned " in line for line in lines)
    with pytest.raises(ConfigError, match="no trial of study 'digits' completed"):
        tune_mod.summarize(open_study(settings), settings, log=lines.append)
