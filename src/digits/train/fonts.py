"""Digits drawn in handwriting fonts, for training: shapes from writers other than MNIST's five hundred or so.

MNIST's writers are American census staff and students of the 1990s; a thin slanted 4 with an open top, a
looped 2 or a crossed 7 is rare among them. Handwriting fonts are other writers' digits, each drawn here many
times: slanted, rotated, stretched, at stroke widths from a hairline to a marker, then normalised like an MNIST
digit (and given captured copies like the others when the run has them). What they changed in the `reader`
network, over two seeds, is in benchmarks/README.md ("Digits in other handwriting fonts").

The fonts come from Debian packages (:data:`PACKAGES`), none of them a font the reading benchmarks
evaluate with (benchmarks/reading_sets.py; a test checks the two lists share nothing).
"""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.errors import ConfigError
from digits.reading.normalize import to_mnist
from digits.train.outliers import LETTERS

__all__ = ["FONT_GLOBS", "NOT_DIGITS", "PACKAGES", "font_digits", "font_files", "font_not_digits"]

# Handwriting-like faces (pen, brush, chancery), by the Debian package that installs them. A face whose hairlines
# vanish at MNIST's scale (fonts-ecolier-court's) is left out: its digits came out in pieces.
PACKAGES = (
    "fonts-seto fonts-kiloji fonts-nanum-extra fonts-isabella fonts-urw-base35 fonts-texgyre "
    "fonts-tomsontalks fonts-aoyagi-kouzan-t fonts-tlwg-purisa fonts-unfonts-extra fonts-yozvox-yozfont"
)
FONT_GLOBS = (
    "/usr/share/fonts/truetype/seto/setofont.ttf",
    "/usr/share/fonts/truetype/kiloji/kiloji*.ttf",
    "/usr/share/fonts/truetype/nanum/NanumPen.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBrush.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunpen*.ttf",
    "/usr/share/fonts/truetype/isabella/Isabella.ttf",
    "/usr/share/fonts/opentype/urw-base35/Z003-MediumItalic.otf",
    "/usr/share/texmf/fonts/opentype/public/tex-gyre/texgyrechorus-mediumitalic.otf",
    "/usr/share/fonts/truetype/tomsontalks/TomsonTalks.ttf",
    "/usr/share/fonts/truetype/aoyagi-kouzan-t/AoyagiKouzanT.ttf",
    "/usr/share/fonts/truetype/tlwg/Purisa*.ttf",
    "/usr/share/fonts/truetype/unfonts-extra/UnPilgia.ttf",
    "/usr/share/fonts/truetype/yozvox-yozfont/YOzBAF*.ttf",
)
# What the fonts draw that is not a digit: the letters and symbols of digits.train.outliers (none often written
# like a digit) and a few more.
NOT_DIGITS = "".join(k for k in LETTERS if len(k) == 1) + "cvx&@"
SIZE = 96  # the glyphs are drawn this many pixels tall, on a canvas twice as wide
STROKE = (1.2, 4.5)  # stroke widths at MNIST's 20-pixel scale, drawn log-uniformly (MNIST's median: 2.7)


def font_files(globs: Sequence[str] | None = None) -> list[Path]:
    """The installed font files among ``globs`` (:data:`FONT_GLOBS`); a :class:`ConfigError` naming the packages
    to install if none is."""
    files = sorted({Path(p) for pattern in globs or FONT_GLOBS for p in glob.glob(pattern)})
    if not files:
        raise ConfigError(f"no handwriting font is installed for fonts; install them: apt-get install {PACKAGES}")
    return files


def _glyphs(files: Sequence[Path], characters: str) -> list[list[np.ndarray]]:
    """Each font's ``characters`` as light ink on black, cropped to the ink (empty where the font draws none)."""
    out = []
    for path in files:
        try:
            font = ImageFont.truetype(str(path), SIZE)
        except OSError as e:  # missing, or not a font FreeType reads
            raise ConfigError(f"{path} is not a font file that can be read ({e}); give TrueType or OpenType") from e
        row = []
        for character in characters:
            canvas = Image.new("L", (2 * SIZE, 2 * SIZE), 0)
            ImageDraw.Draw(canvas).text((SIZE // 2, SIZE // 4), character, fill=255, font=font)
            ink = np.asarray(canvas)
            ys, xs = np.nonzero(ink > 0)
            row.append(ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else ink[:0, :0])
        out.append(row)
    return out


def _distort(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ink`` rotated up to 12 degrees, slanted up to 0.35, its aspect changed up to 1.4 times, on a margin."""
    angle, shear = math.radians(rng.uniform(-12, 12)), rng.uniform(-0.35, 0.35)
    aspect = math.exp(rng.uniform(-0.35, 0.35))
    m = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) @ np.array(
        [[aspect, shear], [0.0, 1.0]]
    )
    h, w = ink.shape
    side = int(2 * max(h, w) + 8)
    centre = np.array([side / 2, side / 2])
    offset = centre - m @ np.array([w / 2, h / 2])
    return cv2.warpAffine(ink, np.hstack([m, offset[:, None]]), (side, side), flags=cv2.INTER_LINEAR)


def font_digits(n: int, seed: int = 0, files: Sequence[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits in handwriting fonts, normalised like MNIST's: ((n, 28, 28) uint8 light on black, labels).

    Each picture is a (font, digit) drawn uniformly; a font that draws no ink for a digit is left out for that digit.
    """
    return _drawn(n, "0123456789", np.random.default_rng(seed), files)


def font_not_digits(n: int, seed: int = 0, files: Sequence[Path] | None = None) -> np.ndarray:
    """``n`` letters and symbols (:data:`NOT_DIGITS`) in handwriting fonts, drawn and normalised as
    :func:`font_digits` draws digits: (n, 28, 28) uint8, light on black."""
    return _drawn(n, NOT_DIGITS, np.random.default_rng([seed, 1]), files)[0]


def _drawn(
    n: int, characters: str, rng: np.random.Generator, files: Sequence[Path] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of ``characters``, each a (font, character) drawn uniformly, distorted and normalised like MNIST's;
    and the index of each one's character."""
    glyphs = _glyphs(files if files is not None else font_files(), characters)
    usable = [(f, c) for f, row in enumerate(glyphs) for c in range(len(characters)) if row[c].size]
    if not usable:
        raise ConfigError(f"none of the fonts draws any of {characters!r}")
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.zeros(n, np.int64)
    lo, hi = np.log(STROKE)
    for i in range(n):
        f, c = usable[int(rng.integers(len(usable)))]
        ink = _distort(glyphs[f][c], rng)
        images[i] = to_mnist(ink, stroke=float(np.exp(rng.uniform(lo, hi))))
        labels[i] = c
    return images, labels
