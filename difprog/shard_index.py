"""The index of a sharded checkpoint (`difprog.shards`) and the reading of its pieces.

`index.json` records the format, each leaf's dtype, shape and pieces (the file and the bounds of
each), each file's SHA-256, each leaf's NaN and infinite counts, the user's metadata, and a
SHA-256 over all of it. `read_index` trusts none of it: it checks the checksum, then every
field (file names of the form `process_00000-of-00002.safetensors` only, inside the checkpoint;
bounds inside the shape; pieces that cover each leaf exactly once), so that a damaged or crafted
index gives one CheckpointError, never a read outside the directory or uninitialised values.
`Reader` reads a leaf's values within any bounds from the pieces that overlap them, checking each
file's SHA-256 before its first use and reading only the tensors it needs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import safe_open

from difprog.errors import CheckpointError
from difprog.leaves import Bounds, storable, true_dtype

__all__ = ["FORMAT", "INDEX", "Reader", "file_name", "index_bytes", "read_index", "tensor_name"]

FORMAT = 1
INDEX = "index.json"
_FILE = re.compile(r"^process_\d{5}-of-\d{5}\.safetensors$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20  # bytes hashed at a time


def file_name(process: int, processes: int) -> str:
    """The file process `process` of `processes` writes: `process_00001-of-00002.safetensors`."""
    return f"process_{process:05d}-of-{processes:05d}.safetensors"


def tensor_name(key: str, bounds: Bounds) -> str:
    """A piece's tensor name in its file: the leaf's key and bounds, `params/w[0:64,0:10]`."""
    return f"{key}[{','.join(f'{a}:{b}' for a, b in bounds)}]"


def index_bytes(leaves: Mapping[str, dict], counts: Mapping[str, list[int]],
                digests: Mapping[str, str], user: dict) -> bytes:
    """index.json's bytes: `leaves` ({key: {dtype, shape, pieces}}), the non-finite `counts`,
    the files' `digests`, the user's metadata and the checksum of it all."""
    body = {"format": FORMAT, "leaves": dict(leaves), "nonfinite": dict(counts),
            "metadata": user, "files": dict(digests)}
    body["sha256"] = _digest(body)
    return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode()


def _digest(body: Mapping[str, Any]) -> str:
    """The SHA-256 of an index's contents, its own checksum left out."""
    text = json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_index(path: pathlib.Path) -> dict:
    """index.json of the sharded checkpoint `path`, checked whole; CheckpointError otherwise."""
    if not (path / INDEX).is_file():
        raise CheckpointError(f"no sharded checkpoint at {str(path)!r} (no {INDEX} in it); "
                              f"check the path (checkpoint.latest(directory) finds the newest)")
    broken = f"{str(path)!r} is corrupted or not a difprog sharded checkpoint"
    try:
        index = json.loads((path / INDEX).read_text())
        intact = isinstance(index, dict) and index.get("sha256") == _digest(index)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{broken} ({type(err).__name__}: {err}); restore it or use an "
                              f"earlier checkpoint") from err
    if intact and index.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} has checkpoint format {index.get('format')!r}, "
                              f"this difprog reads format {FORMAT}; load it with the difprog "
                              f"that wrote it")
    if not intact:
        raise CheckpointError(f"{broken}: the checksum of its {INDEX} does not match (a damaged "
                              f"or edited copy); restore it or use an earlier checkpoint")
    try:
        _check(index)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{broken}: {err}; restore it or use an earlier checkpoint") from None
    return index


def _check(index: dict) -> None:
    """Raises ValueError (or TypeError, KeyError) naming the first field of `index` that is not
    as `index_bytes` writes it; turns bounds into tuples."""
    files, leaves, counts = index["files"], index["leaves"], index["nonfinite"]
    if not all(isinstance(d, dict) for d in (files, leaves, counts, index["metadata"])):
        raise ValueError("its files, leaves, nonfinite and metadata must be objects")
    for name, digest in files.items():
        if not _FILE.match(name) or not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"it names the file {name!r} (or its SHA-256) wrongly")
    for key, leaf in leaves.items():
        _check_leaf(key, leaf, files)
    for key, pair in counts.items():
        if key not in leaves or not (isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(n, int) and n >= 0 for n in pair)):
            raise ValueError(f"its non-finite counts of {key!r} are not two counts of a leaf")


def _check_leaf(key: str, leaf: dict, files: Mapping[str, str]) -> None:
    """One leaf of the index: a known dtype, a shape, and pieces that tile it exactly."""
    dtype = true_dtype(leaf["dtype"])
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_ or dtype.kind == "V"):
        raise ValueError(f"{key!r} has dtype {leaf['dtype']!r}, which checkpoints do not hold")
    shape = leaf["shape"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"{key!r} has the shape {shape!r}")
    pieces = []
    for name, bounds in leaf["pieces"]:
        bounds = tuple(tuple(pair) for pair in bounds)
        if name not in files or len(bounds) != len(shape) or not all(
                isinstance(a, int) and isinstance(b, int) and 0 <= a <= b <= n
                for (a, b), n in zip(bounds, shape)):
            raise ValueError(f"a piece of {key!r} ({name!r}, {bounds!r}) is not in its shape "
                             f"{tuple(shape)} or not in a listed file")
        pieces.append((name, bounds))
    sizes = sum(int(np.prod([b - a for a, b in bounds])) for _, bounds in pieces)
    overlap = any(all(a < d and c < b for (a, b), (c, d) in zip(p, q))
                  for (_, p), (_, q) in itertools.combinations(pieces, 2))
    if overlap or sizes != int(np.prod(shape)):
        raise ValueError(f"the pieces of {key!r} do not cover its shape {tuple(shape)} once")
    leaf["pieces"] = pieces


class Reader:
    """Reads leaves of a checked index (`read_index`) from the files of checkpoint `path`."""

    def __init__(self, path: pathlib.Path, index: dict):
        self.path, self.index, self.checked = path, index, set()

    def _verified(self, name: str) -> pathlib.Path:
        """The file `name`, once its SHA-256 matches the index (hashed on first use)."""
        file = self.path / name
        if name not in self.checked:
            digest = hashlib.sha256()
            try:
                with open(file, "rb") as handle:
                    for block in iter(lambda: handle.read(_BLOCK), b""):
                        digest.update(block)
            except OSError as err:
                raise CheckpointError(f"{str(file)!r} of the sharded checkpoint cannot be read "
                                      f"({err.strerror}); restore it or use an earlier "
                                      f"checkpoint") from None
            if digest.hexdigest() != self.index["files"][name]:
                raise CheckpointError(f"{str(file)!r} is corrupted: its checksum does not match "
                                      f"{INDEX} (a damaged or partial copy); restore it or use "
                                      f"an earlier checkpoint")
            self.checked.add(name)
        return file

    def _piece(self, key: str, name: str, bounds: Bounds, dtype: np.dtype) -> np.ndarray:
        """The tensor of one piece, checked against its bounds and the leaf's stored dtype."""
        wanted = tensor_name(key, bounds)
        with safe_open(self._verified(name), framework="numpy") as file:
            values = file.get_tensor(wanted) if wanted in file.keys() else None
        if values is None or values.dtype != dtype or values.shape != tuple(
                b - a for a, b in bounds):
            raise CheckpointError(f"{str(self.path / name)!r} is corrupted: its tensor {wanted!r} "
                                  f"is missing or not of the {dtype} and bounds {INDEX} records")
        return values

    def read(self, key: str, bounds: Bounds | None) -> np.ndarray:
        """The values of leaf `key` within `bounds` (None: all of it), from its pieces (which
        `read_index` proved to tile the leaf, so every value is read once)."""
        leaf = self.index["leaves"][key]
        bounds = tuple((0, n) for n in leaf["shape"]) if bounds is None else bounds
        dtype = storable(key, np.empty(0, true_dtype(leaf["dtype"]))).dtype
        out = np.zeros([b - a for a, b in bounds], dtype)
        for name, piece in leaf["pieces"]:
            common = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(bounds, piece)]
            if any(a >= b for a, b in common):
                continue
            values = self._piece(key, name, piece, dtype)
            out[tuple(slice(a - t, b - t) for (a, b), (t, _) in zip(common, bounds))] = \
                values[tuple(slice(a - p, b - p) for (a, b), (p, _) in zip(common, piece))]
        return out.view(true_dtype(leaf["dtype"]))
