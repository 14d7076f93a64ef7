"""What a run shows and leaves behind: the progress bar, provenance, and the files of its run directory.

A finished run directory holds ``model.safetensors`` (weights, with name, options, temperature and test
accuracy in its metadata), ``run.json`` (the summary, resolved config, test metrics, history and
provenance), ``history.csv`` and, for two or more epochs, ``curves.png``. ``digits train`` puts runs in
``runs/<time>-<preset>-<model>-s<seed>`` unless told otherwise, and points ``runs/latest`` at the newest.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digits.data import MNIST
from digits.files import atomic_symlink, write_json, write_text
from digits.models import count_parameters
from digits.models.weights import CHECKSUM_KEY, save_weights
from digits.spec import META_NAME, WEIGHTS_NAME
from digits.train.config import TrainConfig
from digits.train.evaluate import EvalResult

Log = Callable[[str], None]

RUNS_DIR = Path("runs")  # where `digits train` puts a run without --out (relative to where it is run)
LATEST_NAME = "latest"  # RUNS_DIR / LATEST_NAME: a symbolic link to the newest run there


@dataclass
class Run:
    """What a finished training run produced."""

    dir: Path
    config: TrainConfig
    model: nn.Module
    history: list[dict[str, Any]]
    test: EvalResult | None  # None when the run was asked to leave the test set alone (a search's trials)
    train_seconds: float
    stopped_early: str = ""
    temperature: float = 1.0  # softmax temperature fitted on the validation split (1.0 without one)
    world_size: int = 1  # processes that trained it (digits.train.distributed)
    # What else it learned from, kept in run.json: "teacher" (made_from), "fonts" (each file's path and checksum).
    learned_from: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class Progress:
    """A tqdm bar per epoch on a terminal; one plain line per epoch otherwise (logs, CI, pipes)."""

    def __init__(self, enabled: bool, log: Log) -> None:
        self.tty = enabled and sys.stderr.isatty()
        self.log = log
        self.bar: Any = None

    def start(self, epoch: int, epochs: int, steps: int, batch_size: int) -> Callable[[int, float, float], None]:
        self.t0 = time.perf_counter()
        self.batch_size = batch_size
        if not self.tty:
            return lambda *_: None
        from tqdm import tqdm

        self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=True, dynamic_ncols=True)

        def update(step: int, loss: float, acc: float) -> None:
            self.bar.update(step - self.bar.n)
            ips = step * self.batch_size / (time.perf_counter() - self.t0)
            self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.4f} {ips:,.0f} img/s", refresh=False)

        return update

    def end(self, row: dict[str, Any]) -> None:
        val = (
            f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f}" if row["val_loss"] is not None else ""
        )
        line = (
            f"epoch {row['epoch']}/{row['epochs']}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
            f"{val} lr {row['lr']:.2e} {row['images_per_s']:,.0f} img/s {row['seconds']:.1f}s"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(line.split(": ", 1)[1])
            self.bar.close()
            self.bar = None
        else:
            self.log(line)


def provenance(data: MNIST) -> dict[str, Any]:
    """Where a result came from: data checksums, library versions, machine, git commit."""
    import numpy

    return {
        "data_sha256": data.sha256,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "threads": torch.get_num_threads(),
        },
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The commit of the checkout digits runs from ("-dirty" with uncommitted changes); None outside git."""
    root = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_record(model: str | Path) -> tuple[Path, dict[str, Any]]:
    """The weights file of a saved model (a run directory or a ``.safetensors`` file) and its record.

    The record is the run's ``run.json`` (for a run directory, or its ``model.safetensors``), or the ``.json``
    file of the same name beside a file (the shipped model's ``default.json``); empty when there is none or
    it cannot be read as one.
    """
    path = Path(model)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    candidates = [weights.parent / META_NAME] if weights.name == WEIGHTS_NAME else []
    for candidate in [*candidates, weights.with_suffix(".json")]:
        try:
            record = json.loads(candidate.read_text())
        except (OSError, ValueError):  # none there, or not JSON
            continue
        if isinstance(record, dict):
            return weights, record
    return weights, {}


def training_configs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The training configs behind a saved model's record (:func:`run_record`), as dicts: its run's own, the one
    of the run it was adapted from, or each member's of an ensemble (``digits ensemble``); empty when unknown."""
    own = record.get("config") or record.get("base_config")
    if isinstance(own, dict):
        return [own]
    members = record.get("members")
    if isinstance(members, list):
        return [m["config"] for m in members if isinstance(m, dict) and isinstance(m.get("config"), dict)]
    return []


def made_from(path: str | Path, meta: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """What a model's record keeps of another model it was made from (an ensemble's member, a teacher): where it
    was, what it is (``meta``: its weights' metadata, with their checksum) and how it was made (``record``: its
    :func:`run_record`): its training config, or the command that made it and its own members; the fonts it drew."""
    own = training_configs(record) if "members" not in record else []  # an ensemble's configs are its members'
    made = {
        "path": str(Path(path).resolve()),
        "model": meta["model"],
        "preset": record.get("preset"),
        CHECKSUM_KEY: meta.get(CHECKSUM_KEY),
        "test_accuracy": meta.get("test_accuracy"),
        "config": own[0] if own else None,
    }
    return made | {key: record[key] for key in ("trained_with", "made_with", "members", "fonts") if key in record}


def default_run_dir(preset: str | None, config: TrainConfig, now: datetime | None = None) -> Path:
    """``runs/<time>-<preset>-<model>-s<seed>``, or with ``-2``, ``-3``, ... when a run started in the same second
    already has that name (a script that starts several runs at once)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{preset}-{config.model}-s{config.seed}"
    path, n = RUNS_DIR / name, 1
    while path.exists():
        n += 1
        path = RUNS_DIR / f"{name}-{n}"
    return path


def link_latest(run_dir: Path) -> Path | None:
    """Point ``runs/latest`` at ``run_dir`` when the run is in ``runs/``; return the link, or None.

    The link is relative (``latest -> <run name>``), so the folder can be moved or copied whole. None when the
    run is elsewhere, or symbolic links cannot be made here (then there is simply no ``runs/latest``).
    """
    if Path(run_dir).resolve().parent != RUNS_DIR.resolve():
        return None
    link = RUNS_DIR / LATEST_NAME
    return link if atomic_symlink(link, Path(run_dir).name) else None


def write_run(run: Run, data: MNIST, preset: str | None, chosen_epoch: int) -> None:
    """Write the run directory's files and fill ``run.summary`` (what ``digits train --json`` prints)."""
    cfg = run.config
    out = run.dir
    run.summary = {
        "run_dir": str(out),
        "model": cfg.model,
        "preset": preset,
        "parameters": count_parameters(run.model),
        "test_accuracy": run.test.accuracy if run.test else None,
        "test_loss": run.test.loss if run.test else None,
        "val_accuracy": run.history[chosen_epoch - 1]["val_accuracy"] if run.history else None,
        "epochs_run": len(run.history),
        "chosen_epoch": chosen_epoch,
        "train_seconds": run.train_seconds,
        "stopped_early": run.stopped_early or None,
        "temperature": run.temperature,
        "world_size": run.world_size,
    }
    save_weights(
        run.model,
        out / WEIGHTS_NAME,
        cfg.model,
        cfg.model_options,
        test_accuracy=run.test.accuracy if run.test else None,
        temperature=run.temperature,
        eval_precision=cfg.eval_precision,
        data_sha256=data.sha256,
    )
    test = run.test.to_dict() if run.test else None
    record = {**run.summary, "config": cfg.to_dict(), "test": test, "history": run.history}
    record |= run.learned_from  # which model taught it and how that one was made; which fonts it drew from
    write_json(out / META_NAME, {**record, **provenance(data)})
    rows = [",".join(run.history[0])] + [",".join("" if v is None else str(v) for v in h.values()) for h in run.history]
    write_text(out / "history.csv", "\n".join(rows) + "\n")
    if len(run.history) > 1:  # one point is not a curve; a one-epoch run also skips matplotlib's ~1 s import
        from digits.train import plots

        plots.learning_curves(run.history, out / "curves.png")
