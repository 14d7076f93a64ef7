"""Hyperparameter search with Optuna (``digits tune``): trials chosen on validation data, the test set touched once.

    base config (a preset and flags) + search space (defaults below, a TOML/JSON file over them)
      -> K local worker processes, each: ask the study for a trial -> fit() with test=False, reporting
         validation accuracy after every epoch (the pruner may stop it) -> tell the study
      -> the study's results: trials.csv, a table, history.png and importance.png, best.json (the best trial's
         config, which ``digits train --config`` takes), and the best trial's test accuracy, measured once.

The study lives in a storage every worker shares: by default a journal file in the output folder (Optuna's
JournalStorage: appends under a file lock, safe for local worker processes, where SQLite is not); any database
URL (``--storage postgresql://...``) shares one study between machines, with heartbeats so that the trial of a
worker that died is marked failed. A journal has no heartbeat, so each trial records its host and process, and
a trial left running by a process of this host that is gone is marked failed when ``digits tune`` starts and
ends.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digits.errors import ConfigError, DigitsError
from digits.files import write_json, write_text
from digits.train.config import AugmentConfig, TrainConfig, read_table

if TYPE_CHECKING:
    import optuna

Log = Callable[[str], None]

JOURNAL_NAME = "study.journal"
BEST_NAME = "best.json"
PRUNERS = ("median", "hyperband", "none")
# Seconds between a trial's heartbeats in a database storage, and how long without one makes it failed.
HEARTBEAT_S = 30
GRACE_S = 120

# The augmentation at strength 1 (the `reader` preset's); a trial's strength s in [0, 1] scales each of them.
FULL_AUGMENT = AugmentConfig(rotate=12.0, scale=0.15, shift=0.1, shear=8.0)

# The default search space: each entry a range (low, high, log) or a list of choices. Names are TrainConfig
# fields, "augment" (the strength above) or options of the model (widths, dropout); a file's entries replace
# these, and a plain value in a file fixes that name instead of searching it.
DEFAULT_SPACE: dict[str, Any] = {
    "lr": {"low": 3e-3, "high": 0.1, "log": True},
    "batch_size": {"choices": [128, 256, 512]},
    "widths": {"choices": [[16, 24, 48], [16, 32, 64], [16, 48, 96]]},  # the fast preset's DCT stem: 18 at most
    "dropout": {"low": 0.0, "high": 0.3},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "augment": {"low": 0.0, "high": 1.0},
}


@dataclass(frozen=True)
class Param:
    """One name of the search space: a range (``low``..``high``, on a log scale with ``log``), a list of
    ``choices``, or a ``fixed`` value."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()
    fixed: Any = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.fixed is not None:
            return self.fixed
        if self.choices:
            if all(c is None or isinstance(c, bool | int | float | str) for c in self.choices):
                return trial.suggest_categorical(self.name, list(self.choices))
            # Optuna's choices must be plain scalars: lists (widths) travel as their JSON text.
            encoded = [json.dumps(c) for c in self.choices]
            return json.loads(trial.suggest_categorical(self.name, encoded))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


Space = dict[str, Param]


def _param(name: str, spec: Any, where: str) -> Param:
    """A Param from a space entry, or a ConfigError that names it and says what is wrong."""
    if not isinstance(spec, dict):
        if spec is None or isinstance(spec, list):
            raise ConfigError(f"{where}: {name} must be a table (low/high/log or choices) or one fixed value")
        return Param(name, fixed=spec)
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise ConfigError(f"{where}: {name} has unknown keys {sorted(unknown)}; use low, high and log, or choices")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {name}.choices must be a non-empty list, and alone (no low/high/log)")
        return Param(name, choices=tuple(choices))
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers:
        raise ConfigError(f"{where}: {name} needs low and high numbers, got low={low!r} high={high!r}")
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if not low < high:
        raise ConfigError(f"{where}: {name} needs low < high, got {low} and {high}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: {name}.log must be true or false, and a log scale needs low > 0")
    return Param(name, float(low), float(high), log, integer=isinstance(low, int) and isinstance(high, int))


def load_space(path: str | Path | None, base: TrainConfig, fixed: frozenset[str] = frozenset()) -> Space:
    """The default search space with a TOML or JSON file's entries over it, less the names in ``fixed`` (set
    on the command line: ``base`` holds their values), checked against ``base``: every name must be a
    TrainConfig field, "augment" or an option of ``base.model``, and the space's corners must make valid
    configs."""
    entries = dict(DEFAULT_SPACE)
    where = "the default search space"
    if path is not None:
        where = f"search space {path}"
        entries.update(read_table(path, "search space"))
    entries = {name: spec for name, spec in entries.items() if name not in fixed}
    space = {name: _param(name, spec, where) for name, spec in entries.items()}
    from digits.models import create_model  # the corners are built once, so a bad value fails here, not per trial

    for corner in ("low", "high"):
        values = {n: _corner(p, corner) for n, p in space.items()}
        try:
            cfg = apply_params(base, values)
            create_model(cfg.model, **cfg.model_options)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{where}: its {corner} corner is not a valid config: {exc}") from None
    return space


def _corner(p: Param, corner: str) -> Any:
    """The value of ``p`` at the low or high corner of the space (the first or last choice)."""
    if p.fixed is not None:
        return p.fixed
    if p.choices:
        return p.choices[0 if corner == "low" else -1]
    value = p.low if corner == "low" else p.high
    return int(value) if p.integer and value is not None else value


def apply_params(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``base`` with a trial's values: TrainConfig fields replaced, "augment" as a strength of FULL_AUGMENT,
    anything else an option of the model."""
    fields = set(TrainConfig.__dataclass_fields__)
    changes: dict[str, Any] = {}
    options = dict(base.model_options)
    for name, value in values.items():
        if name == "augment":
            strength = float(value)
            if not 0.0 <= strength <= 1.0:
                raise ConfigError(f"augment is a strength in [0, 1], got {value!r}")
            changes["augment"] = AugmentConfig(
                **{f: getattr(FULL_AUGMENT, f) * strength for f in ("rotate", "scale", "shift", "shear")}
            )
        elif name in fields:
            changes[name] = value
        else:
            options[name] = value
    return replace(base, **changes, model_options=options)


@dataclass(frozen=True)
class Settings:
    """Everything a worker process needs to take part in the study (picklable: it is sent to each)."""

    base: TrainConfig
    space: Space
    out: Path
    trials: int
    study: str = "digits"
    storage: str | None = None  # a database URL, a journal file, or None: out/study.journal
    pruner: str = "median"
    data_dir: str | None = None
    seed: int = 0


def open_storage(settings: Settings) -> optuna.storages.BaseStorage:
    """The study's storage: RDB (with heartbeats) for a database URL, else a journal file."""
    import optuna

    url = settings.storage
    if url and "://" in url:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what a shared study needs
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as exc:  # SQLAlchemy's many errors: a bad URL, a driver missing, no server
            raise ConfigError(f"cannot open the study storage {url}: {str(exc).splitlines()[0]}") from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(url) if url else settings.out / JOURNAL_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _pruner(name: str) -> optuna.pruners.BasePruner:
    import optuna

    if name == "median":  # stop a trial whose validation accuracy is below the median of earlier trials' there
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; choose one of: {', '.join(PRUNERS)}")


def open_study(settings: Settings, worker: int = 0, log: Log = print) -> optuna.Study:
    """The shared study, made by whichever worker comes first; each worker samples with its own seed.

    Trials that a dead process of this host left running are marked failed first.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines below say what matters
    storage = open_storage(settings)
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed + worker),
        pruner=_pruner(settings.pruner),
        load_if_exists=True,
    )
    _fail_abandoned_trials(storage, settings.study, log)
    return study


def _fail_abandoned_trials(storage: optuna.storages.BaseStorage, name: str, log: Log) -> None:
    """Mark failed the running trials whose worker process, on this host, is gone (a journal has no heartbeat)."""
    import optuna

    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(name)
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") == host and isinstance(pid, int) and not _alive(pid):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            log(f"trial {t.number} was left running by process {pid}, which is gone: marked failed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def run_worker(settings: Settings, worker: int = 0, threads: int = 0, log: Log = print) -> None:
    """Take trials from the study until it holds ``settings.trials``; one line per finished trial."""
    import optuna
    import torch

    from digits.data import load_mnist
    from digits.train.loop import fit

    if threads:
        torch.set_num_threads(threads)  # this process is a worker: its share of the cores
    study = open_study(settings, worker, log)
    data = load_mnist(settings.data_dir, log=lambda _: None)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        cfg = apply_params(settings.base, {name: p.suggest(trial) for name, p in settings.space.items()})
        run_dir = settings.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("config", cfg.to_dict())

        def report(row: dict[str, Any]) -> None:
            trial.report(row["val_accuracy"], row["epoch"])
            # After the last epoch there is nothing left to save: the trial is complete, whatever its rank.
            if row["epoch"] < row["epochs"] and trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {row['val_accuracy']:.4f} after epoch {row['epoch']}")

        t0 = time.perf_counter()
        try:
            run = fit(cfg, run_dir, data=data, progress=False, log=lambda _: None, on_epoch=report, test=False)
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
        return float(run.summary["val_accuracy"])

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = f"val {trial.value:.4f}" if trial.value is not None else "val   -   "
        last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
        if trial.value is None and last is not None:
            value = f"val {last:.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:  # no complete trial yet
            best = "best -"
        log(
            f"trial {trial.number:>3} {trial.state.name.lower():<8} {value}  "
            f"{trial.user_attrs.get('seconds', 0):5.1f}s  {_short(trial.params)}  {best}"
        )

    if len(study.get_trials(deepcopy=False)) >= settings.trials:
        return  # the study is as large as asked already (MaxTrialsCallback only stops it after one more trial)
    study.optimize(
        objective,
        n_trials=settings.trials,
        catch=(DigitsError,),  # a trial that diverged is a failed trial, not the end of the study
        callbacks=[optuna.study.MaxTrialsCallback(settings.trials, states=None), announce],
        gc_after_trial=True,
    )


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")


def _worker_main(settings: Settings, worker: int, threads: int) -> None:
    """A worker process's entry point (multiprocessing's spawn: a fresh interpreter, nothing inherited)."""
    run_worker(settings, worker, threads, log=lambda s: print(s, flush=True))


@dataclass
class Result:
    """What a search leaves: the best trial, its config file and its one test accuracy."""

    out: Path
    best_trial: int
    best_val: float
    best_config: Path
    test_accuracy: float | None
    counts: dict[str, int]
    files: list[Path]


def tune(settings: Settings, workers: int = 1, log: Log = print) -> Result:
    """Run the study with ``workers`` local processes, then summarise it (see the module's docstring)."""
    import multiprocessing

    if settings.base.val_split <= 0:
        raise ConfigError("a search chooses on validation data: set --val-split above 0, e.g. 0.1")
    if workers < 1 or settings.trials < 1:
        raise ConfigError("--workers and --trials must be at least 1")
    settings.out.mkdir(parents=True, exist_ok=True)
    open_study(settings, log=log)  # made here once, so that workers starting together find it
    from digits.train.distributed import usable_cores

    threads = max(1, usable_cores() // workers)
    log(
        f"study {settings.study!r} in {settings.storage or settings.out / JOURNAL_NAME}: until it holds "
        f"{settings.trials} trials, {workers} worker process(es) of {threads} thread(s), pruner {settings.pruner}; "
        f"trials train {settings.base.model} and are chosen on the last {settings.base.val_split:.0%} of the "
        "training set; the test set waits for the best"
    )
    if workers == 1:
        run_worker(settings, 0, 0, log)  # in this process: its threads are left as they are
    else:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        procs = [ctx.Process(target=_worker_main, args=(settings, w, threads)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [(w, p.exitcode) for w, p in enumerate(procs) if p.exitcode != 0]
        for w, code in failed:
            log(f"worker {w} ended with status {code}")
        if len(failed) == workers:
            raise ConfigError("every worker failed; their errors are printed above")
    return summarize(open_study(settings, log=log), settings, log)


def summarize(study: optuna.Study, settings: Settings, log: Log = print) -> Result:
    """The table and trials.csv, history.png and importance.png, best.json, and the best trial's test accuracy."""
    import optuna

    from digits.train import plots

    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in states if any(t.state == s for t in trials)}
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        raise ConfigError(f"no trial of study {settings.study!r} completed ({counts}); see the lines above")
    names = sorted({k for t in trials for k in t.params})
    header: list[Any] = ["trial", "state", "val_accuracy", "seconds", *names]
    rows: list[list[Any]] = [
        [
            t.number,
            t.state.name.lower(),
            "" if t.value is None else f"{t.value:.4f}",
            f"{t.user_attrs.get('seconds', 0):.1f}",
            *(_fmt(t.params[n]) if n in t.params else "" for n in names),
        ]
        for t in trials
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    out = settings.out
    write_text(out / "trials.csv", buffer.getvalue())
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        log("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))

    files = [out / "trials.csv"]
    plots.study_history([(t.number, t.value, t.state.name.lower()) for t in trials], out / "history.png")
    files.append(out / "history.png")
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # too few complete trials, or nothing that varied
        log(f"no parameter importance: {exc}")
    else:
        plots.param_importances(importances, out / "importance.png")
        files.append(out / "importance.png")

    best = study.best_trial
    config = best.user_attrs.get("config")
    best_path = out / BEST_NAME
    if config is not None:
        write_json(best_path, config)  # a file of TrainConfig fields: digits train --config best.json
        files.append(best_path)
    test = _test_once(best, settings.data_dir, log)
    write_json(
        out / "summary.json",
        {
            "study": settings.study,
            "storage": settings.storage or str(out / JOURNAL_NAME),
            "trials": counts,
            "best_trial": best.number,
            "best_val_accuracy": best.value,
            "best_params": best.params,
            "best_run_dir": best.user_attrs.get("run_dir"),
            "test_accuracy": test,
        },
    )
    files.append(out / "summary.json")
    assert best.value is not None
    log(
        f"best: trial {best.number}, validation accuracy {best.value:.4f}"
        + (f", test accuracy {test:.4f} (the test set's one use)" if test is not None else "")
        + f"; its config is {best_path}: digits train --config {best_path}"
    )
    return Result(out, best.number, best.value, best_path, test, counts, files)


def _test_once(best: optuna.trial.FrozenTrial, data_dir: str | None, log: Log) -> float | None:
    """The best trial's test accuracy: the one time the search looks at the test set."""
    from digits.data import load_mnist
    from digits.models.weights import load_weights
    from digits.spec import WEIGHTS_NAME
    from digits.train.evaluate import evaluate, to_tensors

    run_dir = Path(best.user_attrs.get("run_dir", ""))
    if not (run_dir / WEIGHTS_NAME).is_file():
        log(f"the best trial's weights are not on this machine ({run_dir}); its test accuracy is not measured here")
        return None
    model, meta = load_weights(run_dir)
    data = load_mnist(data_dir, log=lambda _: None)
    precision = meta.get("eval_precision", "fp32")
    return evaluate(model, *to_tensors(data.test_images, data.test_labels), precision=precision).accuracy
