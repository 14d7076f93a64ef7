"""Decode whatever a user sends (path, bytes, PIL image, array) into one grayscale float image."""

from __future__ import annotations

import errno
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeAlias

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.errors import ImageError
from digits.spec import MAX_PIXELS

ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | np.ndarray"

# Formats a user may send. Restricting Image.open to these keeps Pillow from handing a file to
# decoders nobody meant to expose (EPS, for one, runs Ghostscript).
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")  # JPEG covers MPO, a phone's multi-picture JPEG
_FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF or WebP"
_WARNINGS_LOCK = threading.Lock()  # see _opened


def load_image(src: ImageSource, *, max_pixels: int = MAX_PIXELS, notes: list[str] | None = None) -> np.ndarray:
    """Decode ``src`` into a grayscale (H, W) float32 image in [0, 1].

    ``src`` is a path, the bytes of an image file, a PIL image, or a numpy array: (H, W), (H, W, 3) RGB
    or (H, W, 4) RGBA, of dtype uint8, uint16, bool or float in [0, 1]. EXIF orientation is applied and
    transparent pixels are filled with a background that contrasts with the drawn ink. Raises
    :class:`ImageError` for anything that is not a readable image of at most ``max_pixels`` pixels.
    What a user should know about how the picture was read (only the first frame of an animation, an
    unreadable EXIF orientation) is appended to ``notes``, when given.
    """
    notes = [] if notes is None else notes
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    if isinstance(src, Image.Image):
        with _decoding("the image"):  # a lazily opened image decodes only now
            return _from_pil(src, "the image", max_pixels, notes)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ImageError("the image data is empty (0 bytes); send the contents of an image file", "empty")
        return _decode(io.BytesIO(src), "the image data", max_pixels, notes)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            if path.is_symlink():
                raise ImageError(
                    f"{path} is a symbolic link that leads nowhere ({_dead_end(path)}); check the link", "missing"
                )
            raise ImageError(f"no such file: {path}; check the path", "missing")
        if not path.is_file():
            raise ImageError(f"{path} is not a file; give the path of an image file", "missing")
        if path.stat().st_size == 0:
            raise ImageError(f"{path} is empty (0 bytes); it is not an image", "empty")
        with path.open("rb") as f:
            return _decode(f, str(path), max_pixels, notes)
    raise ImageError(
        f"cannot read an image from a {type(src).__name__}; pass a path, bytes, a PIL image or a numpy array",
        "unsupported",
    )


def _dead_end(link: Path) -> str:
    """Why a symbolic link leads to no file: a loop, or the missing file it names."""
    try:
        link.resolve(strict=True)
    except RuntimeError:  # Python 3.10-3.12 raise this for a loop
        return "a loop of links"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of links"
    return f"it names {os.readlink(link)}, which does not exist"


def _decode(fp: BinaryIO, name: str, max_pixels: int, notes: list[str]) -> np.ndarray:
    with _decoding(name), _opened(fp) as im:
        # Image.open has read only the header: refuse a decompression bomb before decoding it.
        _check_size(im.size, name, max_pixels)
        if im.format in ("JPEG", "MPO") and im.mode == "RGB":
            # Let libjpeg hand over its luma channel: the BT.601 weights of convert("L"), and no
            # colour conversion to do.
            im.draft("L", None)
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format != "MPO":  # a phone's MPO holds the photo and a preview of it, not pages
            kind = "an animation" if im.format in ("GIF", "PNG", "WEBP") else "pages"
            notes.append(f"{name} holds {frames} frames ({kind}); only the first is read")
        im.load()  # a GIF or TIFF opens on its first frame, which is the one read
        return _from_pil(im, name, max_pixels, notes)


@contextmanager
def _opened(fp: BinaryIO) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's DecompressionBombWarning: digits applies its own limit (max_pixels)
    right after, with a message that says what to do."""
    # catch_warnings swaps the process's filter list and puts it back: two threads doing that at once can put
    # back each other's, so the swap is made by one thread at a time (opening reads only the header).
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(fp, formats=_FORMATS)
    with im:
        yield im


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Turn Pillow's many ways of failing into one ImageError that says what to do about it."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name} declares absurd dimensions ({e}); send a smaller image", "too_big") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name} is not an image that can be read; send a {_FORMAT_NAMES} file", "not_an_image") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name} could not be decoded ({e}); the file is truncated or corrupt", "corrupt") from e


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name} has no pixels ({w}x{h}); send a non-empty image", "empty")
    if w * h > max_pixels:
        raise ImageError(
            f"{name} is {w}x{h} pixels, more than the limit of {max_pixels:,}; shrink it first, or raise the "
            "limit (--max-pixels on the command line, max_pixels= in Python)",
            "too_big",
        )


def _from_pil(im: Image.Image, name: str, max_pixels: int, notes: list[str]) -> np.ndarray:
    _check_size(im.size, name, max_pixels)
    im.load()  # decode first (a no-op when done), so that a failure to rotate is only about EXIF
    im = _upright(im, name, notes)
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # 16- and 32-bit integer, 32-bit float
        return _scale_to_unit(np.asarray(im))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))
        gray = _luma(rgba[..., :3]).astype(np.float32) / np.float32(255.0)
        return _flatten_alpha(gray, rgba[..., 3].astype(np.float32) / np.float32(255.0))
    if mode == "LAB":  # L* is a lightness channel already; Pillow has no LAB -> L conversion
        return np.asarray(im.getchannel("L"), dtype=np.float32) / np.float32(255.0)
    try:
        gray = im.convert("L")  # RGB, CMYK, YCbCr, palette and 1-bit all have a luma conversion
    except ValueError as e:
        raise ImageError(f"{name} has pixel mode {mode!r}, which cannot be read; save it as RGB", "unsupported") from e
    return np.asarray(gray, dtype=np.float32) / np.float32(255.0)


def _upright(im: Image.Image, name: str, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation (tag 0x0112): phones store pictures sideways and record the turn."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError) as e:
        # A mangled EXIF block should not stop a readable picture from being read; say so, though.
        notes.append(f"{name}: its EXIF orientation cannot be read ({e}), so it is read as stored")
        return im


def _scale_to_unit(a: np.ndarray) -> np.ndarray:
    """Pixels of unknown range (32-bit TIFF): divide by the smallest usual full scale that fits."""
    a = np.clip(a.astype(np.float32), 0, None)
    top = float(a.max())
    for full in (1.0, 255.0, 65535.0):
        if top <= full:
            return a / np.float32(full)
    return a / np.float32(top)


def _from_array(a: np.ndarray, max_pixels: int) -> np.ndarray:
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(
            f"unsupported array shape {a.shape}; expected (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA", "unsupported"
        )
    _check_size((a.shape[1], a.shape[0]), f"the array of shape {a.shape}", max_pixels)
    if a.dtype in (np.uint8, np.uint16):
        full = float(np.iinfo(a.dtype).max)
    elif a.dtype == np.bool_:
        a, full = a.astype(np.uint8), 1.0
    elif np.issubdtype(a.dtype, np.floating):
        a, full = a.astype(np.float32), 1.0
        lo, hi = float(a.min()), float(a.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"float pixels must lie in [0, 1], got values in [{lo}, {hi}]; divide bytes by 255 "
                "or pass the uint8 array itself",
                "unsupported",
            )
    else:
        raise ImageError(
            f"unsupported array dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1]", "unsupported"
        )

    def unit(channel: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(channel, dtype=np.float32) / np.float32(full)

    if a.ndim == 2 or a.shape[2] == 1:
        return unit(a.reshape(a.shape[:2]))
    if a.shape[2] == 2:  # gray and alpha
        return _flatten_alpha(unit(a[..., 0]), unit(a[..., 1]))
    gray = unit(_luma(a[..., :3]))  # luma in the array's own type: a third of the work in float
    return gray if a.shape[2] == 3 else _flatten_alpha(gray, unit(a[..., 3]))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma, the weights of Pillow's convert("L"), in the type of ``rgb`` (uint8, uint16 or
    float32). Arrays are taken as RGB, not OpenCV's BGR."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto a background that makes the drawn ink visible.

    A web canvas usually draws black strokes on transparent pixels that are themselves (0, 0, 0, 0):
    dropping alpha would leave black on black. When little of the image is opaque, the opaque part is
    the ink, and it goes on white when dark and on black when light. When most of it is opaque, the
    opaque part has a background of its own, and transparent pixels take its median level.
    """
    alpha = alpha.astype(np.float32)
    if float(alpha.min()) >= 1.0:
        return np.ascontiguousarray(gray, dtype=np.float32)
    opaque = alpha >= 0.5
    n_opaque = int(np.count_nonzero(opaque))
    if n_opaque == 0:
        return np.zeros(gray.shape, np.float32)  # nothing was drawn
    level = float(np.median(gray[opaque]))
    ink_only = n_opaque <= opaque.size // 2
    fill = (1.0 if level < 0.5 else 0.0) if ink_only else level
    return (alpha * gray + (1.0 - alpha) * np.float32(fill)).astype(np.float32)
