"""Ensembles of trained runs, with and without test-time shifts: the test accuracy of every combination.

    digits train --preset best --seed 0 --out runs/best-0     # ... and more seeds
    python benchmarks/ensemble.py runs/best-0 runs/best-1 runs/best-2

Each model's test-set probabilities are computed once with ``predict_probabilities`` (plain, and averaged
over the one-pixel TTA shifts); an ensemble averages its members' probabilities, exactly as
``digits ensemble`` does. The test set is only scored here, never used to choose anything: which runs
to combine is the user's choice, and every combination is reported, not the best one.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from common import markdown_table, write_json
from digits.data import load_mnist
from digits.errors import ModelFileError
from digits.models.weights import load_weights
from digits.train.evaluate import predict_probabilities, to_tensors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories or weight files (at least two)")
    p.add_argument("--json", default="benchmarks/results/ensemble.json")
    args = p.parse_args()
    if len(args.runs) < 2:
        p.error("an ensemble needs at least two runs")
    try:
        models = [load_weights(run)[0] for run in args.runs]
    except ModelFileError as exc:
        p.error(str(exc))
    data = load_mnist(log=lambda s: None)
    images, labels = to_tensors(data.test_images, data.test_labels)
    names = [Path(r).name or r for r in args.runs]
    # Each model's probabilities once; an ensemble's are their mean, as predict_probabilities computes them.
    probs: dict[tuple[str, bool], torch.Tensor] = {}
    for name, model in zip(names, models):
        for tta in (False, True):
            probs[name, tta] = predict_probabilities(model, images, tta=tta)
            print(f"{name}{' + TTA' if tta else ''}: {accuracy(probs[name, tta], labels):.4f}", flush=True)
    rows: list[dict[str, object]] = []
    for size in range(1, len(names) + 1):
        for members in itertools.combinations(names, size):
            for tta in (False, True):
                mean = torch.stack([probs[m, tta] for m in members]).mean(0)
                rows.append(
                    {
                        "members": " + ".join(members),
                        "n": size,
                        "tta": "yes" if tta else "no",
                        "test accuracy": f"{accuracy(mean, labels) * 100:.2f}%",
                        "errors": int((mean.argmax(1) != labels).sum()),
                    }
                )
    print()
    markdown_table(list(rows[0]), [[str(v) for v in r.values()] for r in rows])
    write_json(Path(args.json), rows, runs=args.runs)


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return (probabilities.argmax(1) == labels).float().mean().item()


if __name__ == "__main__":
    main()
