"""Accuracy under the 26 corruptions of digits.train.corruptions, for the shipped model and trained runs.

    digits train --preset seed --out runs/seed-0
    digits train --preset fast --out runs/fast-0
    python benchmarks/robustness.py runs/seed-0 runs/fast-0            # the shipped model is measured too
    python benchmarks/robustness.py runs/seed-0 runs/best-0 --severity 3 --reader   # ... and through the reader

Each model goes through ``evaluate_robustness_saved`` on the MNIST test digits (all 10,000 unless
``--limit``) at every severity (or the ``--severity`` given), with the corruptions' seed 0, so every model sees
the same corrupted images. With ``--reader`` the shipped model is also measured through digits' reader
(``evaluate_robustness_reading``: each corrupted digit read as a picture, as ``digits predict`` reads one).
Printed: mean corrupted accuracy at severity 3 and over the severities measured, the mCE relative to the first
``seed``-preset run given (Hendrycks & Dietterich 2019), and the accuracy per corruption; runs of the same
preset are summarised as mean ± std. The time to make all 130 corrupted copies of the 10,000 test digits
(without any model, whatever ``--limit``) and each model's measuring time are recorded as well.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import markdown_table, write_json
from digits.data import load_mnist
from digits.spec import META_NAME, SHIPPED_SAFETENSORS
from digits.train.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from digits.train.robustness import RobustnessResult, corruption_rng, evaluate_robustness_saved

SEVERITY_CHOICES = {"all": SEVERITIES, **{str(s): (s,) for s in SEVERITIES}}


def preset_of(model: Path) -> str:
    """The preset a run was trained from (its run.json), 'shipped' for the shipped model."""
    if model.resolve() == SHIPPED_SAFETENSORS.resolve():
        return "shipped"
    meta = (model if model.is_dir() else model.parent) / META_NAME
    try:
        return str(json.loads(meta.read_text()).get("preset") or "custom")
    except (OSError, ValueError):
        return "custom"


def corruption_seconds(images: np.ndarray, seed: int) -> float:
    """Seconds to make every corruption at every severity of ``images``, no model involved."""
    start = time.perf_counter()
    for name in CORRUPTIONS:
        for s in SEVERITIES:
            corrupt(images, name, s, corruption_rng(seed, name, s))
    return time.perf_counter() - start


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return pct(values[0])
    return f"{pct(statistics.mean(values))} ± {100 * statistics.stdev(values):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="run directories or .safetensors files")
    p.add_argument("--no-shipped", dest="shipped", action="store_false", help="leave the shipped model out")
    p.add_argument("--limit", type=int, help="the first N test digits only (default: all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default: %(default)s)")
    p.add_argument("--severity", choices=SEVERITY_CHOICES, default="all", help="(default: %(default)s; 3 is in all)")
    p.add_argument("--reader", action="store_true", help="also measure the shipped model through digits' reader")
    p.add_argument("--json", default="benchmarks/results/robustness.json")
    args = p.parse_args()
    severities = SEVERITY_CHOICES[args.severity]
    if 3 not in severities:
        p.error("the table leads with severity 3: measure 3 or all")
    models = ([SHIPPED_SAFETENSORS] if args.shipped else []) + [Path(r) for r in args.runs]
    if not models and not args.reader:
        p.error("nothing to measure: give runs, leave the shipped model in, or measure it --reader")
    data = load_mnist(log=lambda s: None)
    images, labels = data.test_images[: args.limit], data.test_labels[: args.limit]

    making = corruption_seconds(np.asarray(data.test_images), args.seed)  # always all 10,000: the suite's cost
    print(f"making all {len(CORRUPTIONS)} corruptions x 5 severities of the 10,000 test digits: {making:.1f} s")
    results: list[tuple[str, str, RobustnessResult, float]] = []
    ways = [(model, False) for model in models] + ([(SHIPPED_SAFETENSORS, True)] if args.reader else [])
    for model, reader in ways:
        start = time.perf_counter()
        r = evaluate_robustness_saved(model, images, labels, reader=reader, severities=severities, seed=args.seed)
        seconds = time.perf_counter() - start
        name = "shipped" if model == SHIPPED_SAFETENSORS else str(model)
        way = " (through the reader)" if reader else ""
        results.append((name + way, preset_of(model) + way, r, seconds))
        print(f"{name}: {pct(r.mean_corrupted_accuracy_by_severity[3])} at severity 3, {seconds:.0f} s", flush=True)
    baseline = next((r for _, preset, r, _ in results if preset == "seed"), None)

    print(f"\n{len(images):,} MNIST test digits, corruption seed {args.seed}; mCE relative to the first seed run")
    markdown_table(
        ["model", "preset", "clean", "severity 3", "severities measured", "mCE", "training resembled"],
        [
            [
                name,
                preset,
                pct(r.clean_accuracy),
                pct(r.mean_corrupted_accuracy_by_severity[3]),
                pct(r.mean_corrupted_accuracy),
                f"{r.mean_corruption_error(baseline):.3f}" if baseline else "-",
                ", ".join(r.training_resembles or ()) or "none",
            ]
            for name, preset, r, _ in results
        ],
    )
    presets: dict[str, list[RobustnessResult]] = {}
    for _, preset, r, _ in results:
        presets.setdefault(preset, []).append(r)
    summary = {
        preset: {
            "runs": len(rs),
            "clean": [r.clean_accuracy for r in rs],
            "severity_3": [r.mean_corrupted_accuracy_by_severity[3] for r in rs],
            "all_severities": [r.mean_corrupted_accuracy for r in rs],
        }
        for preset, rs in presets.items()
    }
    if any(len(rs) > 1 for rs in presets.values()):
        print("\nper preset, mean ± std over runs")
        markdown_table(
            ["preset", "runs", "clean", "severity 3", "all severities"],
            [
                [preset, str(s["runs"]), mean_std(s["clean"]), mean_std(s["severity_3"]), mean_std(s["all_severities"])]
                for preset, s in summary.items()
            ],
        )
    print("\naccuracy per corruption: severity 3 / mean over the severities measured")
    markdown_table(
        ["corruption", *[name for name, *_ in results]],
        [
            [c, *[f"{pct(r.accuracy[c][3])} / {pct(r.corruption_accuracy(c))}" for _, _, r, _ in results]]
            for c in CORRUPTIONS
        ],
    )
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "preset": preset,
            "seconds": seconds,
            **r.to_dict(baseline),
        }
        for name, preset, r, seconds in results
    ]
    write_json(
        Path(args.json),
        rows,
        n=len(images),
        severities=list(severities),
        corruption_seed=args.seed,
        corruption_seconds=making,
        summary=summary,
    )
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
