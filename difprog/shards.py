"""Sharded checkpoints: a tree whose arrays span processes, written piece by piece by the
processes that hold them, and read back on any number of processes and devices.

A sharded checkpoint is a directory, `checkpoint_0003.shards/`, holding
  - `process_00000-of-00002.safetensors` and its siblings: one plain safetensors file per
    process with the pieces of every array that process holds. Each distinct piece is written
    once, by the process of the lowest-numbered device holding it; a tensor is named after its
    leaf and bounds, `params/dense_0/w[0:64,0:10]`;
  - `index.json`: the format, each leaf's dtype, shape and pieces (file and bounds), each file's
    SHA-256, the NaN and infinite counts, the user's metadata, and a SHA-256 over all of it.

Every process calls `save` (a collective, like a training step). The files are written into
`.checkpoint_0003.shards.partial/`; once all are on disk, process 0 writes the index and renames
the directory: a crash at any moment leaves the last complete checkpoint (and a partial directory
the next save removes). The bytes depend on the values and on the split (the number of processes
and devices), nothing else. `load` reads on each process only the files its devices' pieces are
in, and checks their checksums; `difprog.checkpoint.load` and `save` call these for a path ending
in `.shards`.

Why not Orbax: its checkpoints name data files at random and record timestamps, which breaks
difprog's promise that the same seed gives the same checkpoint bytes, and it brings tensorstore
(80 MB); this format keeps the single-file checkpoint's checks (a SHA-256, NaN refused, no
pickle) and each file stays readable with `safetensors.numpy.load_file`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import safetensors.numpy
from jax.experimental import multihost_utils

from difprog.errors import CheckpointError
from difprog.files import atomic, write_bytes
from difprog.leaves import (
    Bounds,
    bounds_of,
    checked_against,
    flatten,
    metadata_json,
    nest,
    nonfinite_problems,
    placed,
    storable,
    true_dtype,
)

__all__ = ["FORMAT", "INDEX", "SUFFIX", "is_sharded", "load", "metadata", "remove", "save"]

INDEX = "index.json"
SUFFIX = ".shards"
FORMAT = 1


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether `path` names a sharded checkpoint (a directory ending in .shards)."""
    return pathlib.Path(path).suffix == SUFFIX


def save(path: str | os.PathLike, tree: Any, *, metadata: Mapping[str, Any] | None = None,
         allow_nonfinite: bool = False) -> pathlib.Path:
    """Writes `tree` as the sharded checkpoint `path` (a directory ending in .shards); every
    process of the run calls it with the same tree and metadata. NaN and infinite values are
    refused (on every process, before anything is written) unless `allow_nonfinite`."""
    path = pathlib.Path(path)
    if not is_sharded(path):
        raise CheckpointError(f"a sharded checkpoint is a directory ending in {SUFFIX}, "
                              f"got {str(path)!r}")
    leaves = flatten(tree, on_host=False)
    user = metadata_json(path, metadata)
    owned = {key: _owned_pieces(leaf) for key, leaf in leaves.items()}
    counts = _global_counts(owned)
    if not allow_nonfinite:
        problems = nonfinite_problems(counts, {k: int(np.prod(np.shape(v))) for k, v in
                                               leaves.items()})
        if problems:
            raise CheckpointError(f"refusing to save {str(path)!r} (nothing was written): "
                                  f"{problems}; a diverged run: lower the learning rate or "
                                  f"check the data; save(..., allow_nonfinite=True) keeps it")
    partial = path.with_name(f".{path.name}.partial")
    if jax.process_index() == 0:
        _clear(partial)
        partial.mkdir(parents=True)
    _barrier(f"difprog-shards-begin-{path.name}")
    digest = _write_file(partial / _file_name(jax.process_index()), owned)
    digests = _all_digests(digest)
    if jax.process_index() == 0:
        _refuse_missing(path, partial, len(digests))
        index = _index(leaves, owned, counts, digests, user)
        with atomic(partial / INDEX) as temporary:
            write_bytes(temporary, index)
        _replace(partial, path)
    _barrier(f"difprog-shards-end-{path.name}")
    return path


def load(path: str | os.PathLike, template: Any | None = None, *,
         allow_nonfinite: bool = False) -> tuple[Any, dict]:
    """(tree, metadata) of the sharded checkpoint `path`, as `difprog.checkpoint.load` gives
    them: numpy leaves, or jax.Arrays for template leaves that carry a sharding (each device's
    piece read from the files that hold it)."""
    path = pathlib.Path(path)
    index = _read_index(path)
    if not allow_nonfinite:
        sizes = {key: int(np.prod(leaf["shape"])) for key, leaf in index["leaves"].items()}
        problems = nonfinite_problems(index["nonfinite"], sizes)
        if problems:
            raise CheckpointError(f"refusing to load {str(path)!r}: {problems}; it was saved "
                                  f"from a diverged run; use an earlier checkpoint, or "
                                  f"load(..., allow_nonfinite=True) to inspect it")
    reader = _Reader(path, index)
    if template is None:
        return nest({key: reader.read(key, None) for key in index["leaves"]}), index["metadata"]
    shapes = {key: (tuple(leaf["shape"]), np.dtype(true_dtype(leaf["dtype"])))
              for key, leaf in index["leaves"].items()}
    return checked_against(path, shapes, template, lambda key, leaf: placed(
        leaf, lambda bounds: reader.read(key, bounds))), index["metadata"]


def metadata(path: str | os.PathLike) -> dict:
    """The user's metadata of the sharded checkpoint `path`, from its checked index alone."""
    return _read_index(pathlib.Path(path))["metadata"]


def remove(path: pathlib.Path) -> None:
    """Deletes a sharded checkpoint; renamed first, so that a half-deleted one is never read."""
    doomed = path.with_name(f".{path.name}.removing")
    _clear(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _file_name(process: int) -> str:
    return f"process_{process:05d}-of-{jax.process_count():05d}.safetensors"


def _pieces(leaf: Any) -> dict[Bounds, jax.Device]:
    """Each distinct piece of `leaf` and the lowest-numbered device holding it (its writer)."""
    shape = np.shape(leaf)
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(leaf, jax.Array) or sharding is None:
        return {tuple((0, size) for size in shape): None}
    writers: dict[Bounds, jax.Device] = {}
    for device, index in sorted(sharding.devices_indices_map(shape).items(),
                                key=lambda item: item[0].id):
        writers.setdefault(bounds_of(index, shape), device)
    return writers


def _owned_pieces(leaf: Any) -> dict[Bounds, np.ndarray | None]:
    """Every piece of `leaf` by bounds: its values where this process writes it, else None."""
    local = {shard.device: shard for shard in getattr(leaf, "addressable_shards", ())}
    owned = {}
    for bounds, device in _pieces(leaf).items():
        if device is None:  # a host array: process 0 writes it whole
            owned[bounds] = np.asarray(leaf) if jax.process_index() == 0 else None
        else:
            owned[bounds] = (np.asarray(local[device].data) if device in local else None)
    return owned


def _global_counts(owned: Mapping[str, dict]) -> dict[str, list[int]]:
    """Each leaf's [NaN, infinite] counts over every process's pieces (a collective)."""
    local = np.zeros((len(owned), 2), np.int64)
    for row, pieces in enumerate(owned.values()):
        for values in pieces.values():
            if values is not None and np.issubdtype(values.dtype, np.inexact):
                local[row] = local[row] + (int(np.isnan(values).sum()),
                                           int(np.isinf(values).sum()))
    total = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(owned), 2)
    return {key: [int(n) for n in counts] for key, counts in zip(owned, total.sum(axis=0))}


def _tensor_name(key: str, bounds: Bounds) -> str:
    return f"{key}[{','.join(f'{a}:{b}' for a, b in bounds)}]"


def _write_file(path: pathlib.Path, owned: Mapping[str, dict]) -> str:
    """This process's pieces written to `path`; the SHA-256 of the file's bytes."""
    tensors = {_tensor_name(key, bounds): storable(key, values)
               for key, pieces in owned.items() for bounds, values in pieces.items()
               if values is not None}
    data = safetensors.numpy.save(tensors)
    with atomic(path) as temporary:
        write_bytes(temporary, data)
    return hashlib.sha256(data).hexdigest()


def _refuse_missing(path: pathlib.Path, partial: pathlib.Path, processes: int) -> None:
    """Refuses to complete a checkpoint whose processes wrote their files elsewhere."""
    missing = [k for k in range(processes) if not (partial / _file_name(k)).is_file()]
    if missing:
        raise CheckpointError(
            f"the sharded checkpoint {str(path)!r} is incomplete: process "
            f"{missing[0]} wrote its pieces, but process 0 cannot see them in {str(partial)!r}; "
            f"every process must write to the same directory (shared storage, such as NFS)")


def _all_digests(digest: str) -> list[str]:
    """Every process's file digest, in process order (a collective)."""
    mine = np.frombuffer(bytes.fromhex(digest), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, mine.size)
    return [bytes(row).hex() for row in gathered]


def _index(leaves: Mapping[str, Any], owned: Mapping[str, dict], counts: dict,
           digests: list[str], user: dict) -> bytes:
    """index.json's bytes: what every leaf is and where its pieces are, and the checksums."""
    described = {}
    for key, leaf in leaves.items():
        writers = _pieces(leaf)
        described[key] = {
            "dtype": np.dtype(leaf.dtype).name, "shape": list(np.shape(leaf)),
            "pieces": [[_file_name(0 if device is None else device.process_index),
                        [list(b) for b in bounds]] for bounds, device in writers.items()]}
    body = {"format": FORMAT, "leaves": described, "nonfinite": counts, "metadata": user,
            "files": {_file_name(k): digest for k, digest in enumerate(digests)}}
    body["sha256"] = _index_digest(body)
    return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode()


def _index_digest(body: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_index(path: pathlib.Path) -> dict:
    """index.json of `path`, refused when missing, damaged or of another format."""
    if not (path / INDEX).is_file():
        raise CheckpointError(f"no sharded checkpoint at {str(path)!r} (no {INDEX} in it); "
                              f"check the path (checkpoint.latest(directory) finds the newest)")
    broken = f"{str(path)!r} is corrupted or not a difprog sharded checkpoint"
    try:
        index = json.loads((path / INDEX).read_text())
        intact = index["sha256"] == _index_digest(index)
        version = index["format"]
        for part in ("files", "metadata", "nonfinite"):
            if not isinstance(index[part], dict):
                raise TypeError(f"its {part!r} is not an object")
        for leaf in index["leaves"].values():
            leaf["pieces"] = [(name, tuple(tuple(map(int, b)) for b in bounds))
                              for name, bounds in leaf["pieces"]]
            leaf["shape"] = [int(n) for n in leaf["shape"]]
    except Exception as err:  # any failure to parse is a broken index
        raise CheckpointError(f"{broken} ({type(err).__name__}: {err}); restore it or use an "
                              f"earlier checkpoint") from err
    if version != FORMAT:
        raise CheckpointError(f"{str(path)!r} has checkpoint format {version!r}, this difprog "
                              f"reads format {FORMAT}; load it with the difprog that wrote it")
    if not intact:
        raise CheckpointError(f"{broken}: the checksum of its {INDEX} does not match (a damaged "
                              f"or edited copy); restore it or use an earlier checkpoint")
    return index


class _Reader:
    """Reads pieces of a sharded checkpoint's leaves, each file once and checked."""

    def __init__(self, path: pathlib.Path, index: dict):
        self.path, self.index, self.files = path, index, {}

    def _file(self, name: str) -> dict[str, np.ndarray]:
        if name not in self.files:
            file = self.path / name
            try:
                data = file.read_bytes()
            except OSError as err:
                raise CheckpointError(f"{str(file)!r} of the sharded checkpoint cannot be read "
                                      f"({err.strerror}); restore it or use an earlier "
                                      f"checkpoint") from None
            if hashlib.sha256(data).hexdigest() != self.index["files"].get(name):
                raise CheckpointError(f"{str(file)!r} is corrupted: its checksum does not match "
                                      f"{INDEX} (a damaged or partial copy); restore it or use "
                                      f"an earlier checkpoint")
            self.files[name] = safetensors.numpy.load(data)
        return self.files[name]

    def read(self, key: str, bounds: Bounds | None) -> np.ndarray:
        """The values of leaf `key` within `bounds` (None: all of it), from its pieces."""
        leaf = self.index["leaves"][key]
        shape = tuple(leaf["shape"])
        bounds = tuple((0, n) for n in shape) if bounds is None else bounds
        out = np.empty([b - a for a, b in bounds], dtype=storable(key, np.empty(
            0, true_dtype(leaf["dtype"]))).dtype)
        filled = 0
        for name, piece in leaf["pieces"]:
            common = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(bounds, piece)]
            if any(a >= b for a, b in common):
                continue
            values = self._file(name)[_tensor_name(key, piece)]
            out[tuple(slice(a - t, b - t) for (a, b), (t, _) in zip(common, bounds))] = \
                values[tuple(slice(a - p, b - p) for (a, b), (p, _) in zip(common, piece))]
            filled += int(np.prod([b - a for a, b in common]))
        if filled != out.size:
            raise CheckpointError(f"{str(self.path)!r} is corrupted: the pieces of {key!r} in "
                                  f"{INDEX} do not cover its shape {shape}")
        return out.view(true_dtype(leaf["dtype"]))


def _barrier(name: str) -> None:
    """Every process waits here for the others (nothing to wait for in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _clear(path: pathlib.Path) -> None:
    """Removes a leftover partial or half-removed directory."""
    if path.exists():
        shutil.rmtree(path)


def _replace(partial: pathlib.Path, path: pathlib.Path) -> None:
    """Renames the complete `partial` to `path`, moving a checkpoint of that name aside first."""
    aside = path.with_name(f".{path.name}.removing")
    if path.exists():
        _clear(aside)
        os.replace(path, aside)
    os.replace(partial, path)
    _clear(aside)
