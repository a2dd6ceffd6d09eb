"""The idx file format of MNIST, Fashion-MNIST and KMNIST: `read(path)` gives its array.

An idx file is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32,
then the values, big-endian, row-major. A gzipped file is read as the same (known by its first
bytes, whatever its name). A file whose magic number, type, dimensions or length are wrong is
refused in one line naming it, before more than its header is trusted: nothing larger than the
file's actual contents is allocated.

Example:
    >>> labels = read("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype
    ((10000,), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib

import numpy as np

from difprog.errors import DataError

__all__ = ["LIMIT", "TYPES", "read"]

TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
         0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
LIMIT = 1 << 32  # bytes of values an idx file may declare (4 GiB)
_CHUNK = 1 << 20


def read(path: str | os.PathLike, *, sha256: str | None = None) -> np.ndarray:
    """The array an idx file (gzipped or not) holds, in native byte order.

    Args:
        path: the file.
        sha256: when given, the SHA-256 its (decompressed) contents must have.

    Raises:
        DataError naming the file: not an idx file, an unknown type code, a declared size
        larger than `LIMIT`, fewer or more values than declared, a bad gzip stream, or other
        contents than `sha256`. OSError when it cannot be read.
    """
    name = os.fspath(path)
    with open(name, "rb") as file:
        gzipped = file.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(name, "rb") as stream:
            header = stream.read(4)
            dtype, shape = _header(name, header, stream)
            expected = math.prod(shape) * dtype.itemsize
            body = _body(name, stream, expected)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{name!r} is a damaged gzip file ({error}); download it again") from None
    if sha256 is not None:
        digest = hashlib.sha256(header + _dims(shape) + body).hexdigest()
        if digest != sha256:
            raise DataError(f"{name!r} holds other contents than expected (SHA-256 "
                            f"{digest[:16]}... instead of {sha256[:16]}...); remove it to "
                            f"download it again")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _header(name: str, header: bytes, stream) -> tuple[np.dtype, tuple[int, ...]]:
    if len(header) < 4 or header[:2] != b"\0\0":
        start = header[:4].hex() or "nothing"
        raise DataError(f"{name!r} is not an idx file: it starts with {start} instead of 0000 "
                        f"followed by a type code and a number of dimensions")
    if header[2] not in TYPES:
        raise DataError(f"{name!r}: unknown idx type code 0x{header[2]:02x}; known: "
                        f"{', '.join(f'0x{code:02x}' for code in TYPES)}")
    ndim = header[3]
    raw = stream.read(4 * ndim)
    if ndim == 0 or len(raw) < 4 * ndim:
        raise DataError(f"{name!r}: its header declares {ndim} dimensions but "
                        f"{'holds none' if ndim == 0 else 'ends before them'}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4"))
    dtype = TYPES[header[2]]
    if math.prod(shape) * dtype.itemsize > LIMIT:
        raise DataError(f"{name!r}: its header declares shape {shape}, more than "
                        f"{LIMIT >> 30} GiB of values")
    return dtype, shape


def _body(name: str, stream, expected: int) -> bytes:
    """Exactly `expected` bytes of values, read as they come (a lie in the header allocates
    nothing the file does not hold)."""
    chunks, size = [], 0
    while size <= expected:
        chunk = stream.read(min(_CHUNK, expected + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size != expected:
        state = "is shorter than" if size < expected else "holds more than"
        raise DataError(f"{name!r} {state} its header declares ({expected:,} bytes of values, "
                        f"{'found ' + format(size, ',') if size < expected else 'found more'}); "
                        f"download it again")
    return b"".join(chunks)


def _dims(shape: tuple[int, ...]) -> bytes:
    return np.asarray(shape, ">u4").tobytes()
