"""The idx reader (difprog.idx): every type code round-trips, gzipped or not; corrupt files
(bad magic number, unknown type, missing or lying dimensions, truncated or trailing values, a
damaged gzip stream, other contents than a checksum) are refused in one line naming the file."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from difprog import idx
from difprog.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` in the idx format (the writer the tests and synthetic data sets use)."""
    code = {np.dtype(t).newbyteorder("="): c for c, t in idx.TYPES.items()}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("packed", [False, True])
def test_every_type_round_trips_gzipped_or_not(tmp_path, dtype, packed):
    array = (np.arange(24).reshape(2, 3, 4) - (0 if dtype == "uint8" else 7)).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"  # the name says nothing: gzip is known by its first bytes
    path.write_bytes(gzip.compress(data) if packed else data)
    read = idx.read(path, sha256=hashlib.sha256(data).hexdigest())
    assert read.dtype == np.dtype(dtype) and read.dtype.isnative
    np.testing.assert_array_equal(read, array)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize("data, message", [
    (b"", "is not an idx file: it starts with nothing"),
    (b"PK\x03\x04" + GOOD[4:], "is not an idx file: it starts with 504b0304"),
    (b"\0\0\x07\x02" + GOOD[4:], "unknown idx type code 0x07"),
    (b"\0\0\x08\x00", "declares 0 dimensions but holds none"),
    (b"\0\0\x08\x03" + GOOD[4:12], "declares 3 dimensions but ends before them"),
    (GOOD[:-1], "is shorter than its header declares (12 bytes of values, found 11)"),
    (GOOD + b"\0", "holds more than its header declares"),
    (b"\0\0\x0e\x03" + np.asarray([4096] * 3, ">u4").tobytes(), "more than 4 GiB of values"),
    (gzip.compress(GOOD, mtime=0)[:-12], "is a damaged gzip file"),
], ids=["empty", "zip magic", "type 0x07", "no dimensions", "dimensions cut", "truncated",
        "trailing", "4 GiB declared", "damaged gzip"])
def test_a_corrupt_file_is_refused_in_one_line_naming_it(tmp_path, data, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError) as caught:
        idx.read(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_other_contents_than_the_checksum_are_refused(tmp_path):
    (tmp_path / "f").write_bytes(GOOD)
    with pytest.raises(DataError, match="holds other contents than expected"):
        idx.read(tmp_path / "f", sha256="0" * 64)
