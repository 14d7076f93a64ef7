"""How well the shipped model reads, and how well it knows when not to: figures for the README.

On MNIST *test* digits (through the whole reading path: preprocess, model, calibration, shape check):

* as given (28x28 arrays) and photographed on paper (digits.testing.scenes: uneven light, noise, thin and
  thick pens, RGBA drawings): accuracy, how often a right answer is marked uncertain (false doubt),
  how often a wrong one is (caught), and how often a wrong one is confident;

on digits from other writers and other capture pipelines (benchmarks/reading_sets.py: scikit-learn's
optdigits, handwriting fonts, MNIST scanned at 8x8 / 16x16 and stretched, ink touching the frame,
touching pairs read as numbers), the ``--split`` half (``test`` unless asked; choose settings on ``dev``):
accuracy, "no digit found", right-but-flagged and wrong-and-confident;

and on things that are not digits: letters and symbols (OpenCV fonts and pen strokes), scribbles and
noise, and letters in the ``--split`` half's handwriting fonts: how many are marked uncertain or give no
digit at all.

    python benchmarks/reading_quality.py [--model M] [--n 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from digits.data import load_mnist
from digits.reading import Recognizer
from digits.reading.calibration import auroc
from digits.testing import scenes


def not_digits() -> dict[str, np.ndarray]:
    """Pictures with no digit in them: letters, symbols, scribbles and noise."""
    out: dict[str, np.ndarray] = {}

    def on_paper(name: str, ink28: np.ndarray) -> None:
        out[name] = scenes.paper([ink28], size=(500, 400), origin=(150, 100), height=180, seed=len(out)).image

    for font, tag in ((cv2.FONT_HERSHEY_SIMPLEX, ""), (cv2.FONT_HERSHEY_DUPLEX, "bold ")):
        for ch in "AEFHKMNRWXY#&*+":
            canvas = np.zeros((260, 300), np.uint8)
            cv2.putText(canvas, ch, (40, 200), font, 5.0, 255, 14 if not tag else 18, cv2.LINE_AA)
            on_paper(f"{tag}{ch}", scenes.mnist_like(canvas))
    t = np.linspace(0, 6 * np.pi, 300)
    pen = {
        "pen W": [[(10, 20), (50, 180), (100, 60), (150, 180), (190, 20)]],
        "pen M": [[(15, 180), (30, 20), (100, 140), (170, 20), (185, 180)]],
        "pen A": [[(20, 185), (100, 15), (180, 185)], [(55, 115), (145, 115)]],
        "pen H": [[(30, 15), (30, 185)], [(170, 15), (170, 185)], [(30, 100), (170, 100)]],
        "pen N": [[(30, 185), (30, 15), (170, 185), (170, 15)]],
        "pen K": [[(40, 15), (40, 185)], [(160, 15), (40, 110), (165, 185)]],
        "spiral": [[(int(100 + 85 * a / t[-1] * np.cos(a)), int(100 + 85 * a / t[-1] * np.sin(a))) for a in t]],
        "star": [[(100, 10), (155, 185), (10, 70), (190, 70), (45, 185), (100, 10)]],
        "hash": [[(20, 65), (180, 65)], [(20, 135), (180, 135)], [(65, 15), (65, 185)], [(135, 15), (135, 185)]],
        "zigzag": [[(10, 40), (45, 170), (80, 40), (115, 170), (150, 40), (190, 170)]],
        "square": [[(20, 20), (180, 20), (180, 180), (20, 180), (20, 20)]],
        "triangle": [[(100, 10), (190, 180), (10, 180), (100, 10)]],
    }
    for name, strokes in pen.items():
        for thickness in (8, 14):
            on_paper(f"{name} ({thickness}px pen)", scenes.stroke_digit(strokes, thickness=thickness))
    rng = np.random.default_rng(0)
    out["uniform noise"] = rng.integers(0, 256, (400, 400), dtype=np.uint8)
    out["gaussian noise"] = np.clip(rng.normal(128, 40, (400, 400)), 0, 255).astype(np.uint8)
    out["pepper 5%"] = np.where(rng.random((400, 400)) < 0.05, 0, 255).astype(np.uint8)
    out["blank paper"] = np.full((400, 400), 235, np.uint8)
    return out


def other_pipelines(recognizer: Recognizer, mnist, split: str) -> list[dict[str, object]]:  # noqa: ANN001
    """Each reading set of benchmarks/reading_sets.py, read as a user would: predict a digit, read a number."""
    from reading_sets import reading_sets

    rows = []
    print(
        f"{'other writers and pipelines (' + split + ')':46s} {'n':>5s} {'right':>7s} {'no digit':>9s} "
        f"{'right, doubted':>15s} {'wrong, confident':>17s}"
    )
    for rs in reading_sets(mnist, split):
        if rs.kind == "digit":
            results = [recognizer.predict(p) for p in rs.pictures]
            got = ["" if r.digit is None else str(r.digit) for r in results]
            doubted = np.array([r.uncertain for r in results])
        else:
            readings = [recognizer.read(p) for p in rs.pictures]
            # The best string (each digit's most probable class, doubtful or not); `doubted` says whether any was.
            got = ["".join(str(d.digit) for d in r.digits if d.digit is not None) for r in readings]
            doubted = np.array([r.uncertain for r in readings])
        right = np.array(got) == np.array(rs.labels)
        row = {
            "set": rs.name,
            "split": split,
            "n": len(rs.labels),
            "accuracy": float(right.mean()),
            "no_digit": float(np.mean([g == "" for g in got])),
            "right_but_uncertain": float((right & doubted).mean()),
            "wrong_and_confident": float((~right & ~doubted).mean()),
        }
        rows.append(row)
        print(
            f"{rs.name[:46]:46s} {row['n']:5d} {row['accuracy']:7.1%} {row['no_digit']:9.1%} "
            f"{row['right_but_uncertain']:15.1%} {row['wrong_and_confident']:17.1%}"
        )
    return rows


def uncertainty_tradeoff(
    recognizer: Recognizer,
    mnist,
    split: str,
    others: dict[str, np.ndarray],  # noqa: ANN001
) -> dict[str, object]:
    """How well "uncertain" separates what to trust from what not to, as curves rather than one point.

    Scores: 1 - calibrated confidence, and the digit-shape score (above 1: "unlike a handwritten digit").
    AUROC of each for "not a digit" (``others``: the pictures of not_digits and the split's font letters)
    against the digits of the handwriting fonts and optdigits sets; and, on those digits, risk-coverage: the
    error rate among the most confident answers when only that share of them is kept.
    """
    from reading_sets import reading_sets

    def scores(pictures: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
        predictions = [recognizer.predict(p) for p in pictures]
        doubt = np.array([1.0 - p.confidence if p.digit is not None else 1.0 for p in predictions])
        shape = np.array(
            [
                float(recognizer.shapes.score(p.image28[None], np.array([p.digit]))[0])
                if p.digit is not None and recognizer.shapes is not None
                else np.inf
                for p in predictions
            ]
        )
        return doubt, shape, predictions

    others_doubt, others_shape, _ = scores(list(others.values()))
    record: dict[str, object] = {}
    for rs in reading_sets(mnist, split):
        if rs.kind != "digit" or not rs.name.startswith(("handwriting fonts", "optdigits")):
            continue
        doubt, shape, predictions = scores(rs.pictures)
        wrong = np.array([str(p.digit) != label for p, label in zip(predictions, rs.labels)])
        order = np.argsort(doubt, kind="stable")  # most confident first
        coverage = {
            f"{c:.0%}": float(wrong[order[: max(1, round(c * len(order)))]].mean()) for c in (1.0, 0.9, 0.8, 0.7, 0.5)
        }
        record[rs.name] = {
            "auroc_not_a_digit_by_confidence": auroc(others_doubt, doubt),
            "auroc_not_a_digit_by_shape": auroc(others_shape, shape),
            "auroc_wrong_by_confidence": auroc(doubt[wrong], doubt[~wrong]) if wrong.any() and (~wrong).any() else None,
            "risk_at_coverage": coverage,
        }
        row = record[rs.name]
        risks = ", ".join(f"{k} {v:.1%}" for k, v in coverage.items())
        print(
            f"{rs.name[:44]:44s} AUROC not-a-digit: confidence {row['auroc_not_a_digit_by_confidence']:.3f}, "
            f"shape {row['auroc_not_a_digit_by_shape']:.3f}; "
            f"wrong: {row['auroc_wrong_by_confidence'] or float('nan'):.3f}; risk at coverage {risks}"
        )
    return record


def summary(predictions: list, labels: np.ndarray) -> dict[str, float]:
    digit = np.array([-1 if p.digit is None else p.digit for p in predictions])
    uncertain = np.array([p.uncertain for p in predictions])
    right = digit == labels
    return {
        "n": len(labels),
        "accuracy": float(right.mean()),
        "right_but_uncertain": float((right & uncertain).mean()),
        "wrong_and_caught": float(uncertain[~right].mean()) if (~right).any() else float("nan"),
        "wrong_and_confident": float((~right & ~uncertain).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="run directory, .safetensors or .onnx (default: the shipped model)")
    parser.add_argument("--data-dir", help="where MNIST is cached")
    parser.add_argument("--n", type=int, default=2000, help="MNIST test digits per condition")
    parser.add_argument("--split", choices=["dev", "test"], default="test", help="which half of the other sets")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/reading_quality.json"))
    args = parser.parse_args()
    recognizer = Recognizer.load(args.model)
    mnist = load_mnist(args.data_dir)
    index = np.random.default_rng(0).choice(len(mnist.test_images), args.n, replace=False)
    digits, labels = mnist.test_images[index], mnist.test_labels[index].astype(int)

    def photographed(pen: int) -> list:
        out = []
        for i, d in enumerate(digits):
            scene = scenes.paper([d], size=(400, 400), origin=(100, 100), height=150, stroke=pen, noise=0.03, seed=i)
            out.append(recognizer.predict(scene.image))
        return out

    conditions = {
        "MNIST test digits as 28x28 arrays": lambda: [recognizer.predict(d) for d in digits],
        "photographed on paper": lambda: photographed(0),
        "photographed, thin pen (-2 px)": lambda: photographed(-2),
        "photographed, thick pen (+6 px)": lambda: photographed(6),
        "RGBA canvas drawings": lambda: [recognizer.predict(scenes.rgba_drawing(d)) for d in digits],
    }
    rows = []
    print(
        f"{'MNIST test digits':36s} {'n':>5s} {'accuracy':>9s} {'right, doubted':>15s} "
        f"{'wrong, caught':>14s} {'wrong, confident':>17s}"
    )
    for name, run in conditions.items():
        row = {"condition": name, **summary(run(), labels)}
        rows.append(row)
        print(
            f"{name:36s} {row['n']:5d} {row['accuracy']:9.2%} {row['right_but_uncertain']:15.2%} "
            f"{row['wrong_and_caught']:14.1%} {row['wrong_and_confident']:17.2%}"
        )

    pipelines = other_pipelines(recognizer, mnist, args.split)
    non_digits = not_digits()
    from reading_sets import letters

    # Positives for "not a digit": the pictures above and the letters of the split's handwriting fonts.
    positives = {**non_digits, **{f"font letter {i}": p for i, p in enumerate(letters(args.split))}}
    tradeoff = uncertainty_tradeoff(recognizer, mnist, args.split, positives)

    others = []
    for name, picture in non_digits.items():
        p = recognizer.predict(picture)
        confident = p.digit is not None and not p.uncertain
        others.append({"picture": name, "digit": p.digit, "confidence": p.confidence, "confident": confident})
    caught = [o for o in others if not o["confident"]]
    missed = [f"{o['picture']} -> {o['digit']} ({o['confidence']:.2f})" for o in others if o["confident"]]
    print(f"not digits: {len(caught)} of {len(others)} uncertain or empty; confident: {', '.join(missed) or 'none'}")
    letters_flagged = None
    found = [recognizer.predict(p) for k, p in positives.items() if k.startswith("font letter")]
    if found:
        letters_flagged = float(np.mean([p.digit is None or p.uncertain for p in found]))
        share = f"{letters_flagged:.1%} of {len(found)}"
        print(f"letters in the handwriting fonts ({args.split}): {share} uncertain or empty")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": recognizer.info,
        "mnist_test_digits": rows,
        "other_pipelines": pipelines,
        "uncertainty": tradeoff,
        "not_digits": others,
        "letters_flagged": letters_flagged,
    }
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
