"""How long ``digits.train.augment.augment`` takes per batch, for several transform sets and batch sizes.

    python benchmarks/augment_speed.py [--batch-sizes 32 256 1024] [--repeats 100] [--threads N]
                                       [--dtype float32|bfloat16] [--device cpu|cuda]

Prints one row per (transform set, batch size): the median milliseconds per batch over --repeats
timed calls (after warm-up), the spread as the 10th-90th percentile, and images per second.
Timings on a shared machine are noisy; compare medians from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import machine_info
from digits.train.augment import augment
from digits.train.config import AugmentConfig, parse_augment

TRANSFORM_SETS: dict[str, str] = {
    "none": "none",
    "affine": "rotate=10,scale=0.1,shift=0.1",
    "affine+shear": "rotate=10,scale=0.1,shift=0.1,shear=10",
    "elastic": "elastic=34,elastic_sigma=4",
    "affine+elastic": "rotate=10,scale=0.1,shift=0.1,elastic=34,elastic_sigma=4",
    "blur": "blur=0.5",
    "erase": "erase=0.5",
    "noise": "noise=0.1",
    "full": "rotate=10,scale=0.1,shift=0.1,shear=10,elastic=34,elastic_sigma=4,erase=0.5,noise=0.1,blur=0.5",
}


def time_augment(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, repeats: int, warmup: int = 10
) -> list[float]:
    """Seconds per call of ``augment(x, cfg)``, one entry per timed call."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        augment(x, cfg, generator)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        augment(x, cfg, generator)
        sync()  # CUDA kernels run asynchronously; time until they are done
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sets", nargs="+", choices=list(TRANSFORM_SETS), default=list(TRANSFORM_SETS))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    info = machine_info()
    print(
        f"{info['cpu']} ({info['cores']} cores) | torch {info['torch']} | threads {info['torch_threads']} | "
        f"device {device} | dtype {args.dtype} | channels_last | median of {args.repeats}"
    )
    header = f"{'transform set':<16} {'batch':>6} {'ms/batch':>9} {'p10-p90 ms':>13} {'images/s':>11}"
    print(header)
    print("-" * len(header))
    generator = torch.Generator(device=device).manual_seed(0)
    for name in args.sets:
        cfg = parse_augment(TRANSFORM_SETS[name])
        for batch in args.batch_sizes:
            x = torch.rand(batch, 1, 28, 28, generator=generator, device=device).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            times = sorted(time_augment(x, cfg, generator, args.repeats))
            median = statistics.median(times)
            p10, p90 = times[len(times) // 10], times[(len(times) * 9) // 10]
            print(
                f"{name:<16} {batch:>6} {median * 1e3:>9.3f} {f'{p10 * 1e3:.2f}-{p90 * 1e3:.2f}':>13} "
                f"{batch / median:>11,.0f}"
            )
    print("\nsets: " + "; ".join(f"{name}: {spec}" for name, spec in TRANSFORM_SETS.items()))


if __name__ == "__main__":
    main()
