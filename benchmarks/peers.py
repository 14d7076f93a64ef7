"""digits beside Tesseract, the OCR engine a user would reach for, on the same reading sets.

    apt-get install tesseract-ocr        # Debian's Tesseract with its English model
    python benchmarks/peers.py [--n 300] [--split test] [--json PATH]

Each set of benchmarks/reading_sets.py (its ``--split`` half, ``test`` unless asked) and MNIST test digits
photographed on paper are read by both: digits with ``Recognizer.predict`` (one digit) or ``.read`` (a
number, its best string), Tesseract through its command line with a digits-only whitelist, every picture
of a set in one process (a list file). Its page segmentation mode was chosen on the dev halves (100
pictures a set, modes 6, 7, 8, 10 and 13): 6, a uniform block, read the most single digits on every dev
set (fonts 38% against 30% for 10, the single-character mode); 8, a single word, the most numbers (26%).
Tesseract gets the pictures as a user would give them; it has no notion of "uncertain", so the table
compares what each reads, and how often it reads nothing. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import load_mnist
from digits.reading import Recognizer
from digits.testing import scenes
from reading_sets import ReadingSet, reading_sets

PSM = {"digit": 6, "number": 8}  # Tesseract's page segmentation mode by kind of set, chosen on the dev halves


def tesseract(pictures: list[np.ndarray], psm: int) -> list[str]:
    """What Tesseract reads in each picture, whitespace removed ("" when it reads nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, picture in enumerate(pictures):
            paths.append(Path(tmp) / f"{i:05d}.png")
            Image.fromarray(picture).save(paths[-1])
        listing = Path(tmp) / "pictures.txt"
        listing.write_text("\n".join(map(str, paths)) + "\n")
        command = ["tesseract", str(listing), "stdout", "--psm", str(psm), "-c", "tessedit_char_whitelist=0123456789"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    pages = out.split("\f")[: len(pictures)]  # one page a picture, each ended by a form feed
    return ["".join(page.split()) for page in pages] + [""] * (len(pictures) - len(pages))


def digits_reads(recognizer: Recognizer, rs: ReadingSet) -> list[str]:
    if rs.kind == "digit":
        return ["" if p.digit is None else str(p.digit) for p in (recognizer.predict(x) for x in rs.pictures)]
    return ["".join(str(d.digit) for d in recognizer.read(x).digits if d.digit is not None) for x in rs.pictures]


def photographed(mnist, n: int) -> ReadingSet:  # noqa: ANN001
    """MNIST test digits on paper with uneven light and noise: the pictures digits was made for."""
    index = np.random.default_rng(0).choice(len(mnist.test_images), n, replace=False)
    pictures = [
        scenes.paper([mnist.test_images[i]], size=(400, 400), origin=(100, 100), height=150, noise=0.03, seed=k).image
        for k, i in enumerate(index)
    ]
    labels = [str(mnist.test_labels[i]) for i in index]
    return ReadingSet("MNIST test digits photographed on paper", "digit", pictures, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="pictures per set (a random sample, the same each run)")
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/peers.json"))
    args = parser.parse_args()
    if shutil.which("tesseract") is None:
        sys.exit("peers.py needs Tesseract: apt-get install tesseract-ocr")
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    recognizer = Recognizer.load()
    mnist = load_mnist()
    sets = [photographed(mnist, args.n), *reading_sets(mnist, args.split)]
    rows = []
    print(f"digits ({recognizer.info['model']}, shipped) beside {version}, {args.split} halves, {args.n} of each")
    print(f"| {'set':52s} | {'n':>4s} | digits right | digits empty | Tesseract right | Tesseract empty |")
    print(f"|{'-' * 54}|{'-' * 6}|{'-' * 14}|{'-' * 14}|{'-' * 17}|{'-' * 17}|")
    for rs in sets:
        pick = np.sort(np.random.default_rng(0).choice(len(rs.labels), min(args.n, len(rs.labels)), replace=False))
        rs = ReadingSet(rs.name, rs.kind, [rs.pictures[i] for i in pick], [rs.labels[i] for i in pick])
        truth = np.array(rs.labels)
        ours = np.array(digits_reads(recognizer, rs))
        theirs = np.array(tesseract(rs.pictures, psm=PSM[rs.kind]))
        row = {
            "set": rs.name,
            "n": len(truth),
            "digits_right": float((ours == truth).mean()),
            "digits_empty": float((ours == "").mean()),
            "tesseract_right": float((theirs == truth).mean()),
            "tesseract_empty": float((theirs == "").mean()),
        }
        rows.append(row)
        print(
            f"| {rs.name[:52]:52s} | {row['n']:4d} | {row['digits_right']:12.1%} | {row['digits_empty']:12.1%} "
            f"| {row['tesseract_right']:15.1%} | {row['tesseract_empty']:15.1%} |"
        )
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "tesseract": version, "split": args.split, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
