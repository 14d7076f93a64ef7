"""Reading and writing the IDX format the MNIST files are stored in.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data in C order
(LeCun's MNIST page). The magic is two zero bytes, a type code (0x08 = unsigned byte) and the number
of dimensions, so MNIST images start with 0x00000803 and labels with 0x00000801.
"""

import struct

import numpy as np

from digits.errors import DataError

UBYTE = 0x08  # the only element type MNIST uses


def encode_idx(array: np.ndarray) -> bytes:
    """Return the IDX bytes (magic, big-endian dims, data) for a uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX encoding here supports uint8 only, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, UBYTE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def parse_idx(data: bytes, *, name: str = "IDX data", ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic, dimensions and length.

    The array is a view of ``data`` (no copy, read-only when ``data`` is bytes), which is what makes
    loading MNIST fast.
    ``ndim`` is the number of dimensions expected (3 for images, 1 for labels); ``name`` is used in
    error messages.
    """
    fix = "delete the file and fetch it again"
    if len(data) < 4:
        raise DataError(f"{name}: only {len(data)} bytes, too short for an IDX header; {fix}")
    zero1, zero2, dtype, dims = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if ndim is not None and magic != (UBYTE << 8 | ndim):
        raise DataError(
            f"{name}: bad IDX magic 0x{magic:08x}, expected 0x{UBYTE << 8 | ndim:08x} "
            f"(unsigned bytes, {ndim} dimensions); {fix}"
        )
    if zero1 != 0 or zero2 != 0 or dtype != UBYTE or dims == 0:
        raise DataError(f"{name}: bad IDX magic 0x{magic:08x}, expected 0x000008NN; {fix}")
    header_size = 4 + 4 * dims
    if len(data) < header_size:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, need {header_size}); {fix}")
    shape = struct.unpack_from(f">{dims}I", data, 4)
    count = int(np.prod(shape, dtype=np.int64))
    expected = header_size + count
    if len(data) != expected:
        raise DataError(
            f"{name}: IDX header says shape {shape} ({expected} bytes in all) but the file has "
            f"{len(data)} bytes (truncated or padded); {fix}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=header_size).reshape(shape)
