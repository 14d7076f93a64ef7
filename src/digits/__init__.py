"""digits: handwritten digit recognition — verified MNIST, fast CPU training, honest evaluation.

Importing ``digits`` is cheap and needs no torch: the training API lives in ``digits.train``,
``digits.models`` and ``digits.evaluate``, imported when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
