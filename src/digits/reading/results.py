"""What reading a picture gives back: a Prediction per digit, a Reading per picture, a FileResult per input.

Plain data (numpy arrays and strings) with ``to_dict`` for JSON; the reasons a digit is uncertain are
named here, once, for the CLI, the Python API and the HTTP API alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Below this calibrated probability a digit is reported as uncertain. For the shipped model, 1.2% of MNIST
# test digits fall below it, a quarter of them wrong answers, and two thirds of its wrong answers do;
# answers between 0.5 and 0.9 are right 77% of the time. Chosen with the shape limit
# (digits.reading.recognizer) on the dev halves of benchmarks/reading_sets.py, 0.7-0.9 with limits 1-2: the
# fewest right answers doubted and wrong ones trusted on other writers' digits, letters still doubted.
DEFAULT_THRESHOLD = 0.9

# Two digits of a line further apart than this many times the line's median digit height belong to two
# numbers, written with a space between them ("12 345"). Digits within a number are rarely more than half
# a height apart; people leave about a digit's width (0.6-1 height) or more between numbers.
_SPACE = 0.75

# How many alternatives a reading lists for each digit, most probable first.
ALTERNATIVES = 3

NO_DIGIT = "no digit found"
LOW_CONFIDENCE = "low confidence"
UNLIKE_A_DIGIT = "unlike a handwritten digit"
TEXTURE = "most shapes in the picture are doubtful: noise or texture, not writing"


@dataclass(frozen=True, eq=False)
class Prediction:
    """One digit: what it is, how sure, and what the model saw.

    digit: the most probable digit, or None when the picture holds no digit at all.
    confidence: the calibrated probability of ``digit`` (0.0 when there is none).
    probabilities: (10,) float32 calibrated probabilities; all zero when there is no digit.
    uncertain: True when the answer should not be trusted; ``reason`` says why ("no digit found",
        "low confidence", "unlike a handwritten digit", or several of these joined by "; ").
    image28: (28, 28) uint8, light ink on black: exactly what the model saw (None without a digit).
    box: (x, y, w, h) of the digit's ink in the picture; line: its line of text, 0 at the top.
    symbol: "." or "-" for a decimal point or minus sign in a number read by ``read`` (found by its size and
        place, not by the model: ``digit`` is None, ``confidence`` 1); None for a digit.
    """

    digit: int | None
    confidence: float
    probabilities: np.ndarray
    uncertain: bool
    reason: str = ""
    image28: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    line: int = 0
    symbol: str | None = None

    @property
    def text(self) -> str:
        """What it reads as in a string: the symbol, the digit, or "?" when uncertain."""
        if self.symbol is not None:
            return self.symbol
        return "?" if self.uncertain else str(self.digit)

    def __repr__(self) -> str:  # the probabilities and the 28x28 image are data, not a summary
        if self.symbol is not None:
            return f"Prediction(symbol={self.symbol!r}, box={self.box}, line={self.line})"
        doubt = f", uncertain ({self.reason})" if self.uncertain else ""
        where = f", box={self.box}, line={self.line}" if self.box is not None else ""
        return f"Prediction(digit={self.digit}, confidence={self.confidence:.3f}{doubt}{where})"

    def top(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable digits with their probabilities, most probable first."""
        if self.digit is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        """Plain JSON-ready values; with ``top_k``, also the k most probable digits."""
        out: dict[str, Any] = {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "uncertain": self.uncertain,
            "reason": self.reason,
            "box": list(self.box) if self.box is not None else None,
        }
        if top_k is not None:
            out["top"] = [{"digit": d, "probability": round(p, 6)} for d, p in self.top(top_k)]
        return out


@dataclass(frozen=True, eq=False)
class Reading:
    """The digits of a picture in reading order (top line first, left to right).

    text: the digits as a string, one line of text per line of the picture, joined by newlines, and a
        space where a line's digits are further apart than _SPACE of their height ("12 345"); an
        uncertain digit is written "?", and a picture without digits reads "".
    digits: one :class:`Prediction` per digit, with its box and line.
    best: the same string with the most probable digit in place of every "?": a guess, for an
        application that would rather have one (``digits[i].top(3)`` are each digit's alternatives).
    """

    text: str
    digits: tuple[Prediction, ...]

    @classmethod
    def of(cls, digits: tuple[Prediction, ...]) -> Reading:
        """The reading of ``digits`` (in reading order, each with its line)."""
        return cls(text=_joined(digits, best=False), digits=digits)

    def __repr__(self) -> str:
        doubt = sum(d.uncertain for d in self.digits)
        return f"Reading(text={self.text!r}, best={self.best!r}, digits={len(self.digits)}, uncertain={doubt})"

    @property
    def best(self) -> str:
        return _joined(self.digits, best=True)

    @property
    def numbers(self) -> list[dict[str, Any]]:
        """Each number (digits of a line with no space between them) in reading order: its ``text`` and
        ``best`` strings, the ``box`` around its digits, and its ``confidence``: the product of its digits'
        (the probability that all of them are right, if their errors are independent)."""
        out = []
        for group in _groups(self.digits):
            boxes = np.array([d.box for d in group if d.box is not None]).reshape(-1, 4)
            box = None
            if len(boxes):
                x0, y0 = boxes[:, :2].min(axis=0)
                x1, y1 = (boxes[:, :2] + boxes[:, 2:]).max(axis=0)
                box = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
            out.append(
                {
                    "text": "".join(d.text for d in group),
                    "best": "".join(d.symbol or str(d.digit) for d in group),
                    "box": box,
                    "line": group[0].line,
                    "confidence": round(float(np.prod([d.confidence for d in group])), 6),
                }
            )
        return out

    @property
    def uncertain(self) -> bool:
        """True when some digit is uncertain or nothing was found."""
        return not self.digits or any(d.uncertain for d in self.digits)

    def to_dict(self, alternatives: int = ALTERNATIVES) -> dict[str, Any]:
        """Plain JSON-ready values; each digit lists its ``alternatives`` most probable readings."""
        return {
            "text": self.text,
            "best": self.best,
            "numbers": self.numbers,
            "digits": [
                {
                    "digit": d.digit,
                    "symbol": d.symbol,
                    "confidence": round(d.confidence, 6),
                    "box": list(d.box) if d.box is not None else None,
                    "line": d.line,
                    "uncertain": d.uncertain,
                    "reason": d.reason,
                    "top": [{"digit": k, "probability": round(p, 6)} for k, p in d.top(alternatives)],
                }
                for d in self.digits
            ],
        }


def _groups(digits: tuple[Prediction, ...]) -> list[list[Prediction]]:
    """The digits split into numbers: by line, and where two neighbours on a line are further apart than
    _SPACE of the line's median digit height."""
    groups: list[list[Prediction]] = []
    lines: dict[int, list[Prediction]] = {}
    for d in digits:
        lines.setdefault(d.line, []).append(d)
    for line in (lines[k] for k in sorted(lines)):
        heights = [d.box[3] for d in line if d.box is not None and d.symbol is None]
        space = _SPACE * float(np.median(heights)) if heights else float("inf")
        groups.append([line[0]])
        for left, right in zip(line, line[1:]):
            apart = left.box is not None and right.box is not None and right.box[0] - (left.box[0] + left.box[2])
            if apart and apart > space:
                groups.append([])
            groups[-1].append(right)
    return groups


def _joined(digits: tuple[Prediction, ...], best: bool) -> str:
    """Each line's numbers as a string, a space between numbers, lines joined by newlines; an uncertain digit
    is "?", or with ``best`` its most probable digit."""
    lines: dict[int, list[str]] = {}
    for group in _groups(digits):
        text = "".join(d.symbol or str(d.digit) if best else d.text for d in group)
        lines.setdefault(group[0].line, []).append(text)
    return "\n".join(" ".join(lines[k]) for k in sorted(lines))


@dataclass(frozen=True, eq=False)
class FileResult:
    """What became of one input of a batch: its result, or the error that stopped it."""

    file: str
    result: Prediction | Reading | None
    error: str | None = None
    notes: tuple[str, ...] = ()  # how the picture was read, when a user should know (only its first frame)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        if self.result is None:
            return {"file": self.file, "error": self.error}
        body = self.result.to_dict(top_k) if isinstance(self.result, Prediction) else self.result.to_dict()
        return {"file": self.file, **({"notes": list(self.notes)} if self.notes else {}), **body}
