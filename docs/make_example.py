"""Make the README's picture of what digits reads: docs/example.png and docs/example_boxes.png.

A page with a number written in MNIST *test* digits (the first test image of each digit needed, so
nothing is picked by hand), photographed lying turned on a desk (digits.testing.scenes), is saved as
docs/example.png; then the real command is run on it:

    digits read docs/example.png
    digits read docs/example.png -v
    digits read docs/example.png --debug-dir <tmp>

and the debug folder's boxes.png is saved as docs/example_boxes.png (at most WIDTH pixels wide, in a small
palette, so that both pictures stay well under 300 KB). What the first two commands print is printed here
too: the README shows it.

Run from the repository root, in its virtualenv (MNIST is fetched into the cache if it is not there):

    python docs/make_example.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import load_mnist
from digits.testing import scenes

DOCS = Path(__file__).resolve().parent
EXAMPLE = DOCS / "example.png"
BOXES = DOCS / "example_boxes.png"
LINES = ("2026", "1789")  # what is written on the page, one string a line
WIDTH = 640  # pixels, for both pictures


def first_test_digits(text: str) -> list[np.ndarray]:
    """The first MNIST test image of each digit in ``text``, in order (a digit used twice, twice)."""
    mnist = load_mnist(log=lambda message: print(message, file=sys.stderr))
    first = {d: int(np.flatnonzero(mnist.test_labels == d)[0]) for d in range(10)}
    return [np.array(mnist.test_images[first[int(c)]]) for c in text]


def make_photo() -> np.ndarray:
    """The page, photographed on a desk: (H, W) uint8, WIDTH pixels wide."""
    lines = [first_test_digits(text) for text in LINES]
    page = scenes.paper(lines, size=(900, 700), height=150, origin=(120, 120), gap=30, line_gap=90, seed=3)
    return scenes.on_desk(page.image, size=(WIDTH, WIDTH * 3 // 4), degrees=6.0, tilt=0.1, seed=3)


def downscale(path: Path, width: int = WIDTH) -> None:
    """Shrink the picture at ``path`` to ``width`` pixels wide (if wider), in place, as an optimised PNG with
    a palette of 62 greys and boxes.png's red and green (a photo's noise makes full colour twice the size)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    colours = [(v, v, v) for v in np.linspace(0, 255, 62).round().astype(int)] + [(255, 0, 0), (0, 200, 0)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([c for rgb in colours for c in rgb])
    im.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def digits_command() -> str:
    """The digits command of this virtualenv (beside its python), else the one on PATH."""
    beside = Path(sys.executable).with_name("digits")
    return str(beside) if beside.exists() else "digits"


def main() -> None:
    Image.fromarray(make_photo()).save(EXAMPLE, optimize=True)
    read = [digits_command(), "read", os.path.relpath(EXAMPLE)]
    for extra in ([], ["-v"]):
        print("$ " + " ".join(["digits", *read[1:], *extra]))
        print(subprocess.run([*read, *extra], check=True, capture_output=True, text=True).stdout, end="", flush=True)
    with tempfile.TemporaryDirectory() as debug:
        subprocess.run([*read, "--debug-dir", debug], check=True, capture_output=True, text=True)
        boxes = sorted(Path(debug).rglob("boxes.png"))
        if not boxes:
            raise SystemExit(f"digits read --debug-dir wrote no boxes.png into {debug}")
        shutil.copyfile(boxes[0], BOXES)
    downscale(BOXES)
    for path in (EXAMPLE, BOXES):
        with Image.open(path) as im:
            print(f"{path.name}: {im.width}x{im.height}, {path.stat().st_size / 1024:.0f} KB", file=sys.stderr)


if __name__ == "__main__":
    main()
