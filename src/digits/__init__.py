"""digits: handwritten digit recognition — verified MNIST, fast CPU training, honest evaluation.

    from digits import Recognizer
    r = Recognizer.load()            # the model shipped in the package
    r.predict("digit.png").digit     # one digit (None when there is none)
    r.read("number.jpg").text        # all the digits, e.g. "2026"

Importing ``digits`` is cheap and needs no torch: ``Recognizer`` is imported on first use, and the
training API lives in ``digits.train.loop``, ``digits.models`` and ``digits.train.evaluate``, imported when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Recognizer", "__version__"]

if TYPE_CHECKING:
    from digits.reading import Recognizer


def __getattr__(name: str) -> Any:
    # PEP 562: ``digits.Recognizer`` imports the reading code (numpy, OpenCV) only when asked for.
    if name == "Recognizer":
        from digits.reading import Recognizer

        return Recognizer
    raise AttributeError(f"module 'digits' has no attribute {name!r}")
