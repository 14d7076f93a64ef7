"""Things that are not digits, drawn for training: letters, symbols, polygons and scribbles.

A network trained on digits alone calls a letter a digit with confidence: its softmax must spread the
probability over ten digits, and nothing taught it to spread it evenly. Outlier exposure (Hendrycks,
Mazeika and Dietterich, "Deep Anomaly Detection with Outlier Exposure", ICLR 2019) adds such pictures to
training with the uniform distribution as their target, so the model's confidence falls on what is
not a digit. The pictures here are drawn from stroke templates, jittered (each point, slant, aspect,
pen width), never from the fonts or OpenCV's Hershey letters the reading benchmarks test with
(benchmarks/reading_sets.py, benchmarks/reading_quality.py). Letters that are often written like a
digit (O, I, l, S, Z, B, G, q, g, b, D) are left out.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from digits.reading.normalize import to_mnist

__all__ = ["LETTERS", "draw", "outlier_images"]

Stroke = list[tuple[float, float]]  # points in a unit box, x to the right, y down


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 16) -> Stroke:
    """Points along an ellipse from ``start`` to ``end`` degrees (0: right, counter-clockwise as displayed)."""
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy - ry * math.sin(a)) for a in angles]


LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.6), (0.75, 0.6)]],
    "C": [_arc(0.55, 0.5, 0.45, 0.5, 50, 310)],
    "E": [[(0.9, 0), (0, 0), (0, 1), (0.9, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(0.9, 0), (0, 0), (0, 1)], [(0, 0.5), (0.7, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "J": [[(0.3, 0), (1, 0)], [(0.7, 0), (0.7, 0.8), (0.5, 1), (0.2, 1), (0, 0.8)]],
    "K": [[(0, 0), (0, 1)], [(0.9, 0), (0, 0.6)], [(0.3, 0.4), (1, 1)]],
    "L": [[(0, 0), (0, 1), (0.8, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "P": [[(0, 1), (0, 0), (0.6, 0), (0.9, 0.15), (0.9, 0.35), (0.6, 0.5), (0, 0.5)]],
    "R": [[(0, 1), (0, 0), (0.6, 0), (0.9, 0.15), (0.9, 0.35), (0.6, 0.5), (0, 0.5)], [(0.35, 0.5), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0, 0), (0, 0.7), (0.25, 1), (0.75, 1), (1, 0.7), (1, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "a": [_arc(0.45, 0.7, 0.4, 0.3, 0, 360), [(0.85, 0.4), (0.85, 1)]],
    "e": [[(0.1, 0.65), (0.9, 0.65), *_arc(0.5, 0.65, 0.4, 0.35, 0, 300)]],
    "h": [[(0, 0), (0, 1)], [(0, 0.6), *_arc(0.45, 0.65, 0.45, 0.25, 180, 0, 8), (0.9, 1)]],
    "k": [[(0, 0), (0, 1)], [(0.8, 0.35), (0, 0.75)], [(0.3, 0.6), (0.85, 1)]],
    "m": [
        [(0, 0.4), (0, 1)],
        [(0, 0.55), (0.25, 0.4), (0.5, 0.55), (0.5, 1)],
        [(0.5, 0.55), (0.75, 0.4), (1, 0.55), (1, 1)],
    ],
    "n": [[(0, 0.4), (0, 1)], [(0, 0.6), *_arc(0.45, 0.65, 0.45, 0.25, 180, 0, 8), (0.9, 1)]],
    "r": [[(0, 0.4), (0, 1)], [(0, 0.65), (0.35, 0.42), (0.8, 0.45)]],
    "u": [[(0, 0.4), (0, 0.85), (0.3, 1), (0.7, 0.9), (0.85, 0.7)], [(0.85, 0.4), (0.85, 1)]],
    "w": [[(0, 0.4), (0.25, 1), (0.5, 0.55), (0.75, 1), (1, 0.4)]],
    "y": [[(0, 0.3), (0.5, 0.75)], [(1, 0.3), (0.3, 1.1)]],
    "+": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.33), (1, 0.33)], [(0, 0.67), (1, 0.67)]],
    "=": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "%": [_arc(0.2, 0.2, 0.18, 0.18, 0, 360, 12), [(0.9, 0), (0.1, 1)], _arc(0.8, 0.8, 0.18, 0.18, 0, 360, 12)],
    "<": [[(0.9, 0.1), (0.1, 0.5), (0.9, 0.9)]],
    ">": [[(0.1, 0.1), (0.9, 0.5), (0.1, 0.9)]],
    "?": [[*_arc(0.5, 0.3, 0.4, 0.3, 160, -60, 12), (0.5, 0.65)], [(0.5, 0.9), (0.5, 0.95)]],
    "check": [[(0, 0.6), (0.35, 1), (1, 0)]],
}
# What else is drawn, besides the letters and symbols (one of each kind per letter drawn, about).
KINDS = ("letter", "letter", "letter", "polygon", "scribble", "zigzag", "spiral")
CANVAS = 112  # the shapes are drawn at this size, then normalised like MNIST's digits


def _polygon(rng: np.random.Generator) -> list[Stroke]:
    n = int(rng.integers(3, 7))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n)) if rng.random() < 0.5 else np.linspace(0, 2 * np.pi, n + 1)[:-1]
    points = [(0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)) for a in angles + rng.uniform(0, np.pi)]
    return [[*points, points[0]]]


def _scribble(rng: np.random.Generator) -> list[Stroke]:
    """A smooth random curve through a few random points (a Catmull-Rom spline)."""
    p = rng.uniform(0, 1, (int(rng.integers(4, 9)), 2))
    p = np.vstack([p[:1], p, p[-1:]])
    out: Stroke = []
    for i in range(1, len(p) - 2):
        for t in np.linspace(0, 1, 8, endpoint=False):
            a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
            q = 0.5 * (2 * b + (c - a) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (3 * b - a - 3 * c + d) * t**3)
            out.append((float(q[0]), float(q[1])))
    return [out]


def _zigzag(rng: np.random.Generator) -> list[Stroke]:
    n = int(rng.integers(3, 7))
    return [[(i / n, float(i % 2)) for i in range(n + 1)]]


def _spiral(rng: np.random.Generator) -> list[Stroke]:
    turns = rng.uniform(1.5, 3.5)
    t = np.linspace(0, turns * 2 * np.pi, 60)
    r = 0.5 * t / t[-1]
    return [[(0.5 + float(x), 0.5 + float(y)) for x, y in zip(r * np.cos(t), r * np.sin(t))]]


def draw(strokes: list[Stroke], rng: np.random.Generator) -> np.ndarray:
    """The strokes jittered (points, slant, aspect ratio, pen width) as light ink on black, (CANVAS, CANVAS) uint8."""
    angle, shear = math.radians(rng.uniform(-15, 15)), rng.uniform(-0.3, 0.3)
    aspect = math.exp(rng.uniform(-0.4, 0.4))
    m = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) @ np.array(
        [[aspect, shear], [0.0, 1.0]]
    )
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    margin, size = 0.2 * CANVAS, 0.6 * CANVAS
    width = int(rng.integers(3, 12))
    for stroke in strokes:
        p = np.asarray(stroke, np.float64) + rng.normal(0, 0.04, (len(stroke), 2))
        p = (p - 0.5) @ m.T + 0.5
        pts = np.round((margin + size * p) * 4).astype(np.int32)  # 2 bits of sub-pixel precision
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 255, width, cv2.LINE_AA, shift=2)
    return canvas


def outlier_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` non-digit shapes, each normalised like an MNIST digit: (n, 28, 28) uint8, light ink on black."""
    rng = np.random.default_rng(seed)
    names = list(LETTERS)
    out = np.zeros((n, 28, 28), np.uint8)
    makers = {"polygon": _polygon, "scribble": _scribble, "zigzag": _zigzag, "spiral": _spiral}
    for i in range(n):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        strokes = LETTERS[names[int(rng.integers(len(names)))]] if kind == "letter" else makers[kind](rng)
        out[i] = to_mnist(draw(strokes, rng))
    return out
