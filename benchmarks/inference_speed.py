"""How fast the shipped model reads: model-only latency, batched throughput, and end-to-end `read`.

Prints a table and writes it as JSON with the machine it was measured on:

* model only, one image: one (1, 1, 28, 28) forward pass, onnxruntime and torch, median and 90th
  percentile (goal: median <= 0.2 ms on onnxruntime);
* batched throughput: images per second at batch 256 and 1000 (goal: >= 20,000/s on 2 cores);
* end to end: ``Recognizer.read`` of a 1000x1000 photo of four digits 150 pixels tall (the photo of
  preprocess_speed.py: uneven light, noise), from the decoded array and from JPEG bytes (goal:
  median <= 15 ms).

    python benchmarks/inference_speed.py [--model M] [--int8] [--runs 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from common import machine_info, write_json
from digits.data import load_mnist
from digits.export import CALIBRATION_IMAGES, export_onnx
from digits.models.weights import load_weights
from digits.reading import Recognizer
from digits.spec import IMAGE_SIZE, ONNX_INPUT, ONNX_OUTPUT, SHIPPED_ONNX, SHIPPED_SAFETENSORS, to_model_input
from digits.testing import scenes


def timings(fn: Callable[[], object], runs: int, warmup: int = 20) -> np.ndarray:
    """Milliseconds of ``runs`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1e3


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per physical core
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _row(what: str, backend: str, ms: np.ndarray, batch_size: int) -> dict[str, object]:
    median = float(np.median(ms))
    return {
        "what": what,
        "backend": backend,
        "batch": batch_size,
        "median_ms": median,
        "p90_ms": float(np.percentile(ms, 90)),
        "images_per_s": batch_size / median * 1e3,
    }


def model_only(model: torch.nn.Module, onnx_path: Path, runs: int) -> list[dict[str, object]]:
    """The forward pass on an input already in memory, onnxruntime and torch, one thread and the default."""
    rng = np.random.default_rng(0)
    sizes = ((1, runs), (256, 200), (1000, 50))
    batch = {n: to_model_input(rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)) for n, _ in sizes}
    rows = []
    for threads in (1, 0):
        s = session(onnx_path, threads)
        name = f"onnxruntime, {threads or 'default'} thread{'s' if threads != 1 else ''}"
        for n, k in sizes:
            ms = timings(lambda s=s, x=batch[n]: s.run([ONNX_OUTPUT], {ONNX_INPUT: x}), k)
            rows.append(_row("model only", name, ms, n))
    threads_before = torch.get_num_threads()
    for threads in (1, threads_before):
        torch.set_num_threads(threads)
        name = f"torch, {threads} thread{'s' if threads != 1 else ''}"
        with torch.inference_mode():
            for n, k in sizes:
                x = torch.from_numpy(batch[n])
                rows.append(_row("model only", name, timings(lambda x=x: model(x), k), n))
    torch.set_num_threads(threads_before)
    return rows


def end_to_end(model: Path | None, backends: tuple[str, ...] = ("onnx", "torch")) -> list[dict[str, object]]:
    """Decode, find the digits, normalise them, run the model, calibrate, check shapes: a 1000x1000 photo."""
    digits = [scenes.font_digit(d) for d in (3, 1, 4, 7)]
    scene = scenes.paper(digits, size=(1000, 1000), origin=(120, 420), height=150, rgb=True, noise=0.03)
    photo = scene.image  # (1000, 1000, 3) uint8
    jpeg = scenes.encode(photo, "JPEG", quality=90)
    rows = []
    for backend in backends:
        r = Recognizer.load(model, backend=backend)
        # Printed digits, as in preprocess_speed.py: the flagged 1 of this font may read "?" (unlike handwriting).
        assert len(r.read(photo).digits) == 4, "the benchmark photo should hold four digits"
        rows.append(
            _row("read 1000x1000 photo, 4 digits (array)", r.backend, timings(lambda r=r: r.read(photo), 200, 5), 1)
        )
        rows.append(
            _row("read 1000x1000 photo, 4 digits (JPEG)", r.backend, timings(lambda r=r: r.read(jpeg), 200, 5), 1)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="run directory or .safetensors (default: the shipped model)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="run onnxruntime on the model quantized to int8, as digits export --int8 makes it (torch stays fp32)",
    )
    parser.add_argument("--runs", type=int, default=2000, help="single-image runs (batches and reads take fewer)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/inference_speed.json"))
    args = parser.parse_args()

    weights = args.model or SHIPPED_SAFETENSORS
    model, meta = load_weights(weights)
    model.eval()
    onnx_path = SHIPPED_ONNX if args.model is None and not args.int8 else Path("/tmp") / "digits-benchmark.onnx"
    if args.int8:  # activation ranges from training digits, as digits export --int8 takes them
        calibration = load_mnist().train_images[:CALIBRATION_IMAGES]
        export_onnx(weights, onnx_path, int8=True, calibration_images=calibration)
    elif args.model is not None:
        export_onnx(weights, onnx_path)
    # The int8 file is read by onnxruntime only; the torch rows are the fp32 network's.
    read = end_to_end(onnx_path, ("onnx",)) if args.int8 else end_to_end(args.model)
    rows = model_only(model, onnx_path, args.runs) + read

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    info = {
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "model": meta["model"],
        "test_accuracy": meta.get("test_accuracy"),
        "onnx_file": onnx_path.name,
        "int8": args.int8,
        "commit": commit or None,
    }
    machine = machine_info()
    print(" | ".join(f"{k} {v}" for k, v in {**machine, **info}.items() if k not in ("platform", "cuda")))
    print(f"| {'what':40s} | {'backend':28s} | {'batch':>5s} | {'median ms':>9s} | {'p90 ms':>7s} | {'images/s':>9s} |")
    print(f"|{'-' * 42}|{'-' * 30}|{'-' * 7}|{'-' * 11}|{'-' * 9}|{'-' * 11}|")
    for r_ in rows:
        print(
            f"| {r_['what']:40s} | {r_['backend']:28s} | {r_['batch']:>5} | {r_['median_ms']:9.3f} "
            f"| {r_['p90_ms']:7.3f} | {r_['images_per_s']:9,.0f} |"
        )
    write_json(args.json, rows, inference=info)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
