"""Run presets over several seeds and print one table: accuracy mean ± std, train_seconds, images/s, memory.

    python benchmarks/presets.py                        # fast x5 seeds, seed x3
    python benchmarks/presets.py --preset fast=5 --preset best=3 --preset seed=3
    python benchmarks/presets.py --preset fast=5 -- --device cuda   # extra flags go to `digits train`

Each run is its own `digits train --json` process (start-up and data load included in `process s`).
The table is also written as JSON with machine info (CPU model, cores, torch version).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import print_table, summarize, train_images, train_once, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", action="append", metavar="NAME=SEEDS", help="preset and number of seeds")
    p.add_argument("--json", default="benchmarks/results/presets.json")
    p.add_argument("extra", nargs="*", help="flags passed on to digits train (after --)")
    args = p.parse_args()
    plan = [s.split("=") for s in (args.preset or ["fast=5", "seed=3"])]
    rows = []
    for name, n in plan:
        runs = []
        for seed in range(int(n)):
            run = train_once(name, seed, args.extra)
            runs.append(run)
            print(
                f"{name} seed {seed}: test {run['test_accuracy']:.4f}, train {run['train_seconds']:.2f}s, "
                f"process {run['process_seconds']:.2f}s",
                file=sys.stderr,
                flush=True,
            )
        rows.append(summarize(name, runs, train_images(name)))
    print_table(rows)
    write_json(Path(args.json), rows, extra_flags=args.extra)


if __name__ == "__main__":
    main()
