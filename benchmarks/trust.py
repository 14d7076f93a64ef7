"""How far each model's confidence can be trusted: calibration before and after its temperature, the error
among its most confident answers, and how well its uncertainty tells pictures that are no digit.

Measured on MNIST's 10,000 test digits against Fashion-MNIST (Debian's ``dataset-fashion-mnist``), letters
and symbols in Hershey fonts, noise and blank pictures (:mod:`digits.train.trust`). Prints a table; the figures
go to ``benchmarks/results/trust.json``.

    python benchmarks/trust.py [RUN_OR_FILE ...]      # default: the shipped model
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import markdown_table, write_json
from digits.data import load_mnist
from digits.models.weights import load_weights
from digits.spec import SHIPPED_SAFETENSORS
from digits.train.report import run_record
from digits.train.trust import measure_trust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, default=[SHIPPED_SAFETENSORS])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/trust.json"))
    args = parser.parse_args()
    data = load_mnist(log=lambda s: None)
    rows = []
    for source in args.models:
        weights, record = run_record(source)
        network, meta = load_weights(weights)
        measured = measure_trust(network, data, temperature=float(meta.get("temperature", 1.0)))
        rows.append({"model": str(source), "preset": record.get("preset"), **measured.to_dict()})
        print(f"measured {source}", flush=True)
    sets = list(rows[0]["ood"])
    header = ["model", "ECE raw", "ECE scaled", "error at 100% / 95% answered", *(f"AUROC / FPR@95: {s}" for s in sets)]
    lines = []
    for r in rows:
        risk = r["risk_at_coverage"]
        ood = [f"{r['ood'][s]['auroc']:.3f} / {r['ood'][s]['fpr_at_95_tpr']:.1%}" for s in sets]
        name = r["preset"] or Path(r["model"]).name
        lines.append(
            [name, f"{r['ece']:.2%}", f"{r['ece_scaled']:.2%}", f"{risk['100%']:.2%} / {risk['95%']:.2%}", *ood]
        )
    markdown_table(header, lines)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
