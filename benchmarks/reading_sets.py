"""Reading sets from other writers and other capture pipelines, each in a dev half and a test half.

Figures on pictures made from MNIST's own digits say little about other writers and scanners, so:

* ``optdigits``: real handwritten digits by 13 writers who are not MNIST's (the UCI optdigits test set,
  which scikit-learn ships inside its package as sklearn/datasets/data/digits.csv.gz; nothing is
  fetched): NIST's form reader stretched each digit to fill 32x32, then 4x4 blocks were counted into 8x8.
  Shown upsampled to 64x64, light ink on dark. Dev: the first half of the file; test: the second.
* ``fonts``: digits in handwriting fonts from Debian's packages (``apt-get install fonts-dkg-handwriting
  fonts-breip fonts-bwht fonts-femkeklaver fonts-humor-sans fonts-comic-neue fonts-klee fonts-kristi
  fonts-dancingscript fonts-kaushanscript``), dark on paper with noise, at sizes and slants that vary.
  Dev and test are different font families, alternately.
* ``more_fonts``: eight more handwriting font families, a test only (``apt-get install fonts-aoyagi-soseki
  fonts-kouzan-mouhitsu fonts-sjfonts fonts-rufscript fonts-yusei-magic fonts-havana fonts-leckerli-one
  fonts-lobster``): added after every setting of the shipped model was chosen, and never chosen on since, to
  measure other writers with more families than one half of ``fonts`` has. Drawn as ``fonts`` draws.
* MNIST's digits through other pipelines (digits.testing.domains): scanned at 8x8 or 16x16 and stretched
  to fill the frame, or cropped so the ink touches the frame; and touching pairs of digits read as a
  two-digit number. Dev: MNIST training digits 54,000-59,999 (the ``reader`` preset's validation split,
  never trained on); test: MNIST test digits.

Not digits: ``letters`` in the same font families (dev and test halves), and ``script_letters`` in OpenCV's
Hershey script faces, a dev check only.

Choose settings on ``dev`` only; ``test`` is for reporting (benchmarks/reading_quality.py).
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.data import MNIST
from digits.testing import domains

SPLITS = ("dev", "test")
FONT_GLOBS = (
    "/usr/share/fonts/truetype/fifthhorseman/dkg*.ttf",
    "/usr/share/fonts/truetype/breip/*.ttf",
    "/usr/share/fonts/opentype/bwht/*.otf",
    "/usr/share/fonts/truetype/femkeklaver/*.ttf",
    "/usr/share/fonts/truetype/humor-sans/*.ttf",
    "/usr/share/fonts/opentype/comic-neue/*.otf",
    "/usr/share/fonts/truetype/klee/*.ttf",
    "/usr/share/fonts/truetype/kristi/*.ttf",
    "/usr/share/fonts/opentype/dancingscript/*.otf",
    "/usr/share/fonts/opentype/kaushanscript/*.otf",
)

# A test only: no setting is chosen on these (see the docstring). kouzan-mouhitsu's three faces draw the same
# digits, so one of them is read.
MORE_FONT_GLOBS = (
    "/usr/share/fonts/truetype/aoyagi-soseki/aoyagi-soseki.ttf",
    "/usr/share/fonts/truetype/kouzan-mouhitsu/kouzan-mouhitsu.ttf",
    "/usr/share/fonts/truetype/sjfonts/*.ttf",
    "/usr/share/fonts/truetype/rufscript/*.ttf",
    "/usr/share/fonts/truetype/yusei-magic/*.ttf",
    "/usr/share/fonts/opentype/havana/*.otf",
    "/usr/share/fonts/truetype/leckerli-one/*.ttf",
    "/usr/share/fonts/opentype/lobster/*.otf",
)


@dataclass(frozen=True)
class ReadingSet:
    """Pictures as a user would give them, and what is written in each."""

    name: str
    kind: str  # "digit": one digit a picture, read with predict; "number": read with read, compared as text
    pictures: list[np.ndarray]
    labels: list[str]


def _mnist_digits(mnist: MNIST, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if split == "dev":
        return mnist.train_images[54_000 : 54_000 + n], mnist.train_labels[54_000 : 54_000 + n]
    return mnist.test_images[:n], mnist.test_labels[:n]


def optdigits(split: str) -> ReadingSet:
    from sklearn.datasets import load_digits  # reads the CSV inside the installed package

    data = load_digits()
    half = len(data.images) // 2
    part = slice(0, half) if split == "dev" else slice(half, None)
    pictures = [domains.enlarge((x * (255 / 16)).round().astype(np.uint8), 8) for x in data.images[part]]
    return ReadingSet(
        "optdigits 8x8, 13 other writers (upsampled)", "digit", pictures, [str(t) for t in data.target[part]]
    )


def mnist_pipelines(mnist: MNIST, split: str, n: int = 1000) -> list[ReadingSet]:
    images, labels = _mnist_digits(mnist, split, n)
    texts = [str(int(y)) for y in labels]
    touching_pictures, touching_labels = [], []
    rng = np.random.default_rng(1)
    for i in range(n):
        j = int(rng.integers(len(images)))
        pair = domains.touching(images[i], images[j], overlap=int(rng.integers(0, 3)))
        touching_pictures.append(domains.dark_on_light(domains.enlarge(pair, 4)))
        touching_labels.append(texts[i] + texts[j])
    return [
        ReadingSet(
            "MNIST at 8x8, stretched to fill, upsampled", "digit", [domains.low_resolution(d, 8) for d in images], texts
        ),
        ReadingSet(
            "MNIST at 16x16, stretched to fill, upsampled",
            "digit",
            [domains.low_resolution(d, 16) for d in images],
            texts,
        ),
        ReadingSet(
            "MNIST ink touching the frame, dark on light",
            "digit",
            [domains.dark_on_light(domains.enlarge(domains.ink_box(d), 4)) for d in images],
            texts,
        ),
        ReadingSet("two MNIST digits touching, as a number", "number", touching_pictures, touching_labels),
    ]


def font_families(globs: tuple[str, ...] = FONT_GLOBS) -> dict[str, list[Path]]:
    """Installed handwriting font files by family (a folder, or each font of the six-writer bwht set)."""
    families: dict[str, list[Path]] = {}
    for pattern in globs:
        for path in sorted(Path(p) for p in glob.glob(pattern)):
            family = path.stem if path.parent.name == "bwht" else path.parent.name
            families.setdefault(family, []).append(path)
    return families


def fonts(split: str, per_digit: int = 10) -> ReadingSet:
    families = sorted(font_families().items())
    chosen = families[0::2] if split == "dev" else families[1::2]
    rng = np.random.default_rng(0 if split == "dev" else 1)
    return _font_digits(f"handwriting fonts, {len(chosen)} families ({split})", chosen, per_digit, rng)


def more_fonts(split: str, per_digit: int = 10) -> ReadingSet:
    """Digits in the :data:`MORE_FONT_GLOBS` families: a test only, so the dev half has none."""
    families = sorted(font_families(MORE_FONT_GLOBS).items()) if split == "test" else []
    rng = np.random.default_rng(5)
    return _font_digits(f"handwriting fonts, {len(families)} more families (test only)", families, per_digit, rng)


def _font_digits(
    name: str, families: list[tuple[str, list[Path]]], per_digit: int, rng: np.random.Generator
) -> ReadingSet:
    pictures, labels = [], []
    for _, paths in families:
        for path in paths:
            for digit in range(10):
                for _ in range(per_digit):
                    pictures.append(_font_picture(path, digit, rng))
                    labels.append(str(digit))
    return ReadingSet(name, "digit", pictures, labels)


def _font_picture(path: Path, glyph: int | str, rng: np.random.Generator) -> np.ndarray:
    """One digit (or letter) in a font: drawn 120 px tall, slanted up to 8 degrees, 30-110 px tall on noisy paper."""
    canvas = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(canvas).text((60, 40), str(glyph), fill=255, font=ImageFont.truetype(str(path), 120))
    ink = np.asarray(canvas.rotate(float(rng.uniform(-8, 8)), resample=Image.BILINEAR))
    ink = domains.ink_box(ink)
    height = int(rng.integers(30, 111))
    scale = height / ink.shape[0]
    ink = cv2.resize(ink, (max(1, round(ink.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    side = max(int(height * 1.6), ink.shape[1])  # (only a wide letter is wider)
    page = np.zeros((side, side), np.uint8)
    y, x = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    page[y : y + ink.shape[0], x : x + ink.shape[1]] = ink
    picture = domains.dark_on_light(page).astype(np.float32) + rng.normal(0, 6, page.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


# Letters that are not written like any digit (no O, I, l, S, Z, B, G, q, g, b, D, T, A, i, o, s, z, e: each
# has a digit it is often written as).
LETTERS = "CEFHJKLMNPRUVWXYacdfhkmnpruvwxy"


def letters(split: str) -> list[np.ndarray]:
    """Pictures of letters (:data:`LETTERS`) in the ``split`` half's handwriting font families: not digits."""
    families = sorted(font_families().items())
    chosen = families[0::2] if split == "dev" else families[1::2]
    rng = np.random.default_rng(2 if split == "dev" else 3)
    return [_font_picture(path, letter, rng) for _, paths in chosen for path in paths for letter in LETTERS]


# OpenCV's Hershey faces that neither training nor the non-digits of benchmarks/reading_quality.py (simplex,
# duplex) draw: two scripts, a serif italic, a triplex and a plain italic.
SCRIPT_FACES = (
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
    cv2.FONT_HERSHEY_COMPLEX | cv2.FONT_ITALIC,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN | cv2.FONT_ITALIC,
)


def script_letters() -> list[np.ndarray]:
    """Letters (:data:`LETTERS`) in :data:`SCRIPT_FACES`, 8-16 px strokes at 180 px, on paper: not digits, and
    drawn by stroke, not by a font outline. A dev check only (settings were chosen with it): no test half."""
    from digits.testing import scenes

    pictures = []
    for i, face in enumerate(SCRIPT_FACES):
        scale = 10.0 if face & 15 == cv2.FONT_HERSHEY_PLAIN else 5.0  # the plain face is drawn half as large
        for j, letter in enumerate(LETTERS):
            canvas = np.zeros((260, 300), np.uint8)
            cv2.putText(canvas, letter, (60, 190), face, scale, 255, 8 + 4 * ((i + j) % 3), cv2.LINE_AA)
            paper = scenes.paper(
                [scenes.mnist_like(canvas)], size=(500, 400), origin=(150, 100), height=180, seed=i * 100 + j
            )
            pictures.append(paper.image)
    return pictures


def reading_sets(mnist: MNIST, split: str) -> list[ReadingSet]:
    """Every set, ``split`` half ("dev" or "test"); a set whose source is not installed is left out, said why."""
    sets: list[ReadingSet] = []
    sources: list[tuple[str, Callable[[str], ReadingSet]]] = [("fonts", fonts), ("scikit-learn", optdigits)]
    if split == "test":
        sources.insert(1, ("more fonts", more_fonts))
    for what, build in sources:
        try:
            built = build(split)
        except ImportError as e:
            print(f"left out: {what} is not installed ({e})")
            continue
        if built.pictures:
            sets.append(built)
        else:
            print(f"left out: no {what} installed (see this module's docstring)")
    return sets + mnist_pipelines(mnist, split)
