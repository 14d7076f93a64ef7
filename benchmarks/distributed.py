"""Data-parallel training: one process against N (digits train --nproc), the same global batch and steps.

    taskset -c 0,1 python benchmarks/distributed.py --preset fast --seeds 3 --nproc 2

Each run is its own `digits train` (with --nproc for N > 1, which starts torchrun), given the cores this script
may use (its affinity, e.g. under taskset): one process gets all of them as threads, each of N processes its
share. Prints a table (train seconds and whole-process wall time as medians, images/s, test accuracy mean ± std
over seeds) and writes it as JSON with machine info.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import markdown_table, mean_std, write_json


def cores() -> int:
    return len(os.sched_getaffinity(0))


def train(preset: str, seed: int, nproc: int, extra: list[str]) -> dict[str, Any]:
    """One run of ``preset`` in ``nproc`` processes; its run.json plus the wall time of the whole command."""
    threads = max(1, cores() // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "digits", "train", "--preset", preset, "--seed", str(seed), "--out", str(out)]
        cmd += ["--threads", str(threads), *extra, *(["--nproc", str(nproc)] if nproc > 1 else [])]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}{done.stdout[-3000:]}")
        record = json.loads((out / "run.json").read_text())
    images = sum(h["images"] for h in record["history"])
    return {
        "nproc": nproc,
        "threads": threads,
        "seed": seed,
        "test_accuracy": record["test_accuracy"],
        "train_seconds": record["train_seconds"],
        "process_seconds": wall,
        "images": images,
        "steps_per_epoch": -(-record["history"][0]["images"] // record["config"]["batch_size"]),
        "batch_size": record["config"]["batch_size"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="fast")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--nproc", type=int, default=2, help="the processes to compare with one")
    p.add_argument("--json", default="benchmarks/results/distributed.json")
    p.add_argument("extra", nargs="*", help="more `digits train` flags, after --")
    args = p.parse_args()
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):  # interleaved, so a slow spell on a shared machine hits both sides alike
        for nproc in (1, args.nproc):
            run = train(args.preset, seed, nproc, args.extra)
            runs.append(run)
            print(
                f"{nproc} process(es), seed {seed}: {run['test_accuracy']:.4f}, train {run['train_seconds']:.1f}s, "
                f"wall {run['process_seconds']:.1f}s",
                file=sys.stderr,
            )
    rows = []
    for nproc in (1, args.nproc):
        mine = [r for r in runs if r["nproc"] == nproc]
        acc_m, acc_s = mean_std([r["test_accuracy"] for r in mine])
        train_s = statistics.median(r["train_seconds"] for r in mine)
        rows.append(
            {
                "nproc": nproc,
                "threads_per_process": mine[0]["threads"],
                "global_batch": mine[0]["batch_size"],
                "steps_per_epoch": mine[0]["steps_per_epoch"],
                "train_seconds_median": train_s,
                "process_seconds_median": statistics.median(r["process_seconds"] for r in mine),
                "images_per_s": mine[0]["images"] / train_s,
                "accuracy_mean": acc_m,
                "accuracy_std": acc_s,
                "accuracies": [r["test_accuracy"] for r in mine],
            }
        )
    markdown_table(
        [
            "processes × threads",
            "global batch, steps",
            "train s (median)",
            "wall s (median)",
            "images/s",
            "test accuracy",
        ],
        [
            [
                f"{r['nproc']} × {r['threads_per_process']}",
                f"{r['global_batch']}, {r['steps_per_epoch']}/epoch",
                f"{r['train_seconds_median']:.2f}",
                f"{r['process_seconds_median']:.1f}",
                f"{r['images_per_s']:,.0f}",
                f"{100 * r['accuracy_mean']:.2f}% ± {100 * r['accuracy_std']:.2f} (n={args.seeds})",
            ]
            for r in rows
        ],
    )
    write_json(Path(args.json), rows, preset=args.preset, cores=cores(), extra=args.extra)


if __name__ == "__main__":
    main()
