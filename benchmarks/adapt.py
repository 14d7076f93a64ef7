"""How much a model learns from one writer's corrections, and what it keeps of MNIST: `digits adapt` measured.

The writer is simulated (:func:`digits.testing.domains.slanted_writer`): MNIST digits leaning ~45 degrees, drawn
with a broad pen and squeezed, as pictures read through digits' own pipeline. The writer writes digits from
the part of MNIST's training set that the base model only validated on (never replayed when adapting, never a
test digit); each time the base model reads one wrong, the writer corrects it, until there are K corrections.
Then ``digits.train.adapt.adapt`` runs (its default settings, its gate, the guard on all 10,000 MNIST test
digits), and both models read the writer's own held-out digits (other digits, the same hand) through the
Recognizer. A refused model counts as the base (it is not used). Mean ± std over seeds (each seed: another
stream of the writer's digits and another adaptation seed).

    python benchmarks/adapt.py [--counts 5 10 20 50] [--seeds 3] [--test 500]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import markdown_table, mean_std, write_json
from digits.corrections import CorrectionStore
from digits.data import load_mnist
from digits.reading import Recognizer
from digits.testing.domains import slanted_writer
from digits.train.adapt import adapt
from digits.train.config import AdaptConfig

# The base model's validation digits (the shipped model's val_split is 0.1): the writer writes these.
WRITER_DIGITS = slice(54_000, 60_000)


def png(picture: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    return out.getvalue()


def accuracy(recognizer: Recognizer, pictures: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean([recognizer.predict(p).digit == y for p, y in zip(pictures, labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test", type=int, default=500, help="the writer's held-out digits")
    parser.add_argument("--steps", type=int, help="override AdaptConfig.steps")
    parser.add_argument("--lr", type=float, help="override AdaptConfig.lr")
    parser.add_argument("--layers", choices=["all", "head"], help="override AdaptConfig.layers")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/adapt.json"))
    args = parser.parse_args()
    config = replace(
        AdaptConfig(),
        **{k: v for k, v in {"steps": args.steps, "lr": args.lr, "layers": args.layers}.items() if v is not None},
    )
    data = load_mnist(log=lambda s: None)
    ink, labels = data.train_images[WRITER_DIGITS], data.train_labels[WRITER_DIGITS].astype(np.int64)
    base = Recognizer.load()
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(ink))
        test, stream = order[: args.test], order[args.test :]
        test_pictures = [slanted_writer(ink[i], rng) for i in test]
        base_writer = accuracy(base, test_pictures, labels[test])
        print(f"seed {seed}: the base model reads {base_writer:.1%} of the writer's {len(test)} digits", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            store = CorrectionStore(Path(tmp) / "store")
            position = 0
            for count in sorted(args.counts):
                while len(store) < count:  # the writer writes on, correcting what the base reads wrong
                    i = stream[position]
                    position += 1
                    picture = slanted_writer(ink[i], rng)
                    p = base.predict(picture)
                    if p.image28 is not None and p.digit != labels[i]:
                        store.add(png(picture), p.image28, label=int(labels[i]), predicted=p.digit, source="bench")
                t0 = time.perf_counter()
                done = adapt(
                    store,
                    Path(tmp) / f"run{count}",
                    config=replace(config, seed=seed),
                    data=data,
                    log=lambda s: None,
                )
                seconds = time.perf_counter() - t0
                adapted = Recognizer.load(done.dir) if done.accepted else base
                row = {
                    "seed": seed,
                    "corrections": count,
                    "digits_written": position,
                    "accepted": done.accepted,
                    "writer_before": base_writer,
                    "writer_after": accuracy(adapted, test_pictures, labels[test]),
                    "mnist_before": done.summary["mnist"]["before"],
                    "mnist_after": done.summary["mnist"]["after"] if done.accepted else done.summary["mnist"]["before"],
                    "mnist_candidate": done.summary["mnist"]["after"],
                    "held_out": done.summary["held_out"],
                    "adapt_seconds": seconds,
                }
                rows.append(row)
                print(
                    f"  {count:>3} corrections ({position} digits written): "
                    f"{'accepted' if done.accepted else 'refused '} writer {row['writer_after']:.1%}, "
                    f"MNIST {row['mnist_after']:.2%} (candidate {row['mnist_candidate']:.2%}), {seconds:.0f} s",
                    flush=True,
                )
    header = ["corrections", "accepted", "writer's digits: before → after", "MNIST test: before → after", "adapt s"]
    lines = []
    for count in sorted(args.counts):
        rs = [r for r in rows if r["corrections"] == count]
        wb, wa = mean_std([r["writer_before"] for r in rs]), mean_std([r["writer_after"] for r in rs])
        mb, ma = mean_std([r["mnist_before"] for r in rs]), mean_std([r["mnist_after"] for r in rs])
        lines.append(
            [
                str(count),
                f"{sum(r['accepted'] for r in rs)}/{len(rs)}",
                f"{100 * wb[0]:.1f}% ± {100 * wb[1]:.1f} → **{100 * wa[0]:.1f}% ± {100 * wa[1]:.1f}**",
                f"{100 * mb[0]:.2f}% → {100 * ma[0]:.2f}% ± {100 * ma[1]:.2f}",
                f"{np.median([r['adapt_seconds'] for r in rs]):.0f}",
            ]
        )
    markdown_table(header, lines)
    write_json(args.json, rows, config=config.to_dict(), argv=sys.argv[1:])


if __name__ == "__main__":
    main()
