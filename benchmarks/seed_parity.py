"""The article's network and recipe (preset `seed`): accuracy and training time, optionally beside Keras.

    python benchmarks/seed_parity.py --seeds 3
    python benchmarks/seed_parity.py --seeds 3 --keras-python /path/to/tf-venv/bin/python

Prints a table (accuracy mean ± std over seeds, train_seconds median) and writes it as JSON with machine
info. The Keras column runs benchmarks/keras_seed.py — the article's own program — on the same data and
machine, each run in its own process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import mean_std, print_table, summarize, train_images, train_once, write_json

HERE = Path(__file__).resolve().parent


def keras_run(python: str, npz: Path, seed: int) -> dict:
    out = subprocess.run([python, str(HERE / "keras_seed.py"), str(npz), str(seed)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the Keras reference failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seed": seed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--keras-python", help="a Python with TensorFlow/Keras, to time the article's own program")
    p.add_argument("--json", default="benchmarks/results/seed_parity.json")
    args = p.parse_args()
    seeds = list(range(args.seeds))
    runs, keras = [], []
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "mnist.npz"
        if args.keras_python:  # the same verified bytes digits trains on
            from digits.data import load_mnist

            data = load_mnist(log=lambda s: None)
            np.savez(
                npz,
                train_images=data.train_images,
                train_labels=data.train_labels,
                test_images=data.test_images,
                test_labels=data.test_labels,
            )
        for seed in seeds:  # interleaved, so a slow spell on a shared machine hits both sides alike
            run = train_once("seed", seed)
            runs.append(run)
            print(f"digits seed {seed}: {run['test_accuracy']:.4f} in {run['train_seconds']:.1f}s", file=sys.stderr)
            if args.keras_python:
                k = keras_run(args.keras_python, npz, seed)
                keras.append(k)
                print(f"keras  seed {seed}: {k['test_accuracy']:.4f} in {k['train_seconds']:.1f}s", file=sys.stderr)
    rows = [summarize("seed (digits, torch)", runs, train_images("seed"))]
    if keras:
        m, s = mean_std([r["test_accuracy"] for r in keras])
        secs = [r["train_seconds"] for r in keras]
        rows.append(
            {
                "preset": f"seed (Keras {keras[0]['keras']}, the article's code)",
                "seeds": seeds,
                "accuracy_mean": m,
                "accuracy_std": s,
                "accuracies": [r["test_accuracy"] for r in keras],
                "train_seconds_median": statistics.median(secs),
                "train_seconds_min": min(secs),
                "train_seconds_max": max(secs),
                "process_seconds_median": float("nan"),
                "images_per_s": 48_000 * 10 / statistics.median(secs),
                "peak_rss_mb": float("nan"),
            }
        )
    print_table(rows)
    if keras:
        ratio = rows[1]["train_seconds_median"] / rows[0]["train_seconds_median"]
        print(f"\ndigits trains the article's network {ratio:.2f}x as fast as Keras on this machine")
    write_json(Path(args.json), rows)


if __name__ == "__main__":
    main()
