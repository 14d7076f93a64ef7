"""How long preprocessing takes: decoding a photo and finding its digits, and one to_mnist.

Prints a table of median and 90th-percentile milliseconds over many runs, with the versions and the
machine it was measured on, and writes the same as JSON. The photo is synthetic (digits.testing.scenes):
1000x1000 pixels, four digits about 150 pixels tall, uneven light and sensor noise. Reading it needs
no torch, and neither does this script.

    python benchmarks/preprocess_speed.py [--runs 200] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import PIL

from digits.reading import load_image, prepare, to_mnist
from digits.reading.segment import segment
from digits.spec import to_model_input
from digits.testing import scenes


def measure(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and 90th percentile of ``runs`` calls, in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's choice)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/preprocess_speed.json"))
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    digits = [scenes.font_digit(d) for d in (3, 1, 4, 7)]
    scene = scenes.paper(digits, size=(1000, 1000), origin=(120, 420), height=150, rgb=True, noise=0.03)
    photo = scene.image  # (1000, 1000, 3) uint8
    jpeg = scenes.encode(photo, "JPEG", quality=90)
    png = scenes.encode(photo, "PNG")
    gray = load_image(photo)
    assert len(segment(gray)) == 4, "the benchmark photo should read as four digits"
    one = digits[0]
    glyphs = prepare(photo).images

    rows = [
        ("load JPEG bytes (1000x1000 RGB)", lambda: load_image(jpeg)),
        ("load PNG bytes (1000x1000 RGB)", lambda: load_image(png)),
        ("segment, 4 digits (1000x1000)", lambda: segment(gray)),
        ("load JPEG + segment", lambda: segment(load_image(jpeg))),
        ("load array + segment", lambda: segment(load_image(photo))),
        ("to_mnist (one 28x28)", lambda: to_mnist(one)),
        ("to_model_input (4 glyphs)", lambda: to_model_input(glyphs)),
    ]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    machine = {
        "commit": commit or None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "opencv_threads": cv2.getNumThreads(),
        "runs": args.runs,
    }
    print(" | ".join(f"{k} {v}" for k, v in machine.items()))
    print(f"{'step':36s} {'median ms':>10s} {'p90 ms':>8s}")
    results = []
    for name, fn in rows:
        median, p90 = measure(fn, args.runs)
        print(f"{name:36s} {median:10.3f} {p90:8.3f}")
        results.append({"step": name, "median_ms": median, "p90_ms": p90})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
