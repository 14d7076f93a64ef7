"""Shared by the benchmark scripts: run `digits train` in a fresh process, collect figures, print a table.

Every measured run is a separate process so that start-up, data load and peak memory are its own.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def train_once(preset: str, seed: int, extra: list[str] | None = None) -> dict[str, Any]:
    """One `digits train --json` process: its summary plus process wall time and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "digits.cli",
            "train",
            "--preset",
            preset,
            "--seed",
            str(seed),
            "--json",
            "--out",
            str(Path(tmp) / "run"),
            *(extra or []),
        ]
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        t0 = time.perf_counter()
        with out_path.open("w") as fo, err_path.open("w") as fe:
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
            _, status, usage = os.wait4(proc.pid, 0)  # like wait(), plus this child's own peak memory
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err_path.read_text()[-3000:]}")
        out = out_path.read_text()
    summary = json.loads(out)
    summary["process_seconds"] = wall
    summary["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    summary["seed"] = seed
    return summary


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def train_images(preset: str) -> int:
    """Images one epoch of ``preset`` trains on: its train_limit (or all 60,000) less the validation split."""
    from digits.train.config import get_preset

    cfg = get_preset(preset)
    return int((cfg.train_limit or 60_000) * (1.0 - cfg.val_split))


def summarize(name: str, runs: list[dict[str, Any]], images: int) -> dict[str, Any]:
    acc = [r["test_accuracy"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    proc = [r["process_seconds"] for r in runs]
    m, s = mean_std(acc)
    return {
        "preset": name,
        "seeds": [r["seed"] for r in runs],
        "accuracy_mean": m,
        "accuracy_std": s,
        "accuracies": acc,
        "train_seconds_median": statistics.median(secs),
        "train_seconds_min": min(secs),
        "train_seconds_max": max(secs),
        "process_seconds_median": statistics.median(proc),
        "images_per_s": images * statistics.median([r["epochs_run"] for r in runs]) / statistics.median(secs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def markdown_table(header: list[str], lines: list[list[str]]) -> None:
    """Print rows of strings as a Markdown table with padded columns."""
    rows = [header, *lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def print_table(rows: list[dict[str, Any]]) -> None:
    """The preset table: accuracy mean ± std over seeds, train_seconds median (min–max), process time, memory."""
    header = [
        "preset",
        "n",
        "test accuracy (mean ± std)",
        "train_seconds median (min–max)",
        "process s",
        "images/s",
        "peak MB",
    ]
    markdown_table(
        header,
        [
            [
                r["preset"],
                str(len(r["seeds"])),
                f"{100 * r['accuracy_mean']:.2f}% ± {100 * r['accuracy_std']:.2f}",
                f"{r['train_seconds_median']:.1f} ({r['train_seconds_min']:.1f}–{r['train_seconds_max']:.1f})",
                f"{r['process_seconds_median']:.1f}",
                f"{r['images_per_s']:,.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def write_json(path: Path, rows: list[dict[str, Any]], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M"), **extra, "results": rows},
            indent=2,
        )
        + "\n"
    )
