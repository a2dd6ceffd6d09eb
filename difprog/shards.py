"""Sharded checkpoints: a tree whose arrays span processes, written piece by piece by the
processes that hold them, and read back on any number of processes and devices.

A sharded checkpoint is a directory, `checkpoint_0003.shards/`, holding
  - `process_00000-of-00002.safetensors` and its siblings: one plain safetensors file per
    process with the pieces of every array that process holds. Each distinct piece is written
    once, by the process of the lowest-numbered device holding it; a tensor is named after its
    leaf and bounds, `params/dense_0/w[0:64,0:10]`;
  - `index.json`: the format, each leaf's dtype, shape and pieces (file and bounds), each file's
    SHA-256, the NaN and infinite counts, the user's metadata, and a SHA-256 over all of it
    (`difprog.shard_index`).

Every process calls `save` (a collective, like a training step). The files are written into
`.checkpoint_0003.shards.partial/`; once all are on disk, process 0 writes the index and renames
the directory: a crash at any moment leaves the last complete checkpoint (and a partial directory
that the next save of that checkpoint removes). A failure on any process (a full disk, a process
that cannot see the others' files) raises on every process, so none waits for it. The bytes
depend on the values and on the split (the number of processes and devices), nothing else.
`load` reads on each process only the pieces its devices hold, from files whose checksums it
checks first; `difprog.checkpoint.load` and `save` call these for a path ending in `.shards`.

Why not Orbax: its checkpoints name data files at random and record timestamps, which breaks
difprog's promise that the same seed gives the same checkpoint bytes, and it brings tensorstore
(80 MB); this format keeps the single-file checkpoint's checks (a SHA-256, NaN refused, no
pickle) and each file stays readable with `safetensors.numpy.load_file`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import safetensors.numpy
from jax.experimental import multihost_utils

from difprog.errors import CheckpointError, DifprogError, PeerError
from difprog.files import atomic, write_bytes
from difprog.leaves import (
    Bounds,
    bounds_of,
    checked_against,
    flatten,
    metadata_json,
    nest,
    nonfinite_counts,
    nonfinite_problems,
    placed,
    storable,
    true_dtype,
)
from difprog.shard_index import (
    INDEX,
    Reader,
    file_name,
    index_bytes,
    read_index,
    tensor_name,
)

__all__ = ["INDEX", "SUFFIX", "is_checkpoint", "is_sharded", "load", "metadata", "remove",
           "save"]

SUFFIX = ".shards"


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether `path` names a sharded checkpoint (a directory ending in .shards)."""
    return pathlib.Path(path).suffix == SUFFIX


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a complete sharded checkpoint: a .shards directory with its index."""
    return is_sharded(path) and (pathlib.Path(path) / INDEX).is_file()


def save(path: str | os.PathLike, tree: Any, *, metadata: Mapping[str, Any] | None = None,
         allow_nonfinite: bool = False) -> pathlib.Path:
    """Writes `tree` as the sharded checkpoint `path` (a directory ending in .shards); every
    process of the run calls it with the same tree and metadata. NaN and infinite values are
    refused (on every process, before anything is written) unless `allow_nonfinite`; a failure
    of any process raises on all of them."""
    path = pathlib.Path(path)
    if not is_sharded(path):
        raise CheckpointError(f"a sharded checkpoint is a directory ending in {SUFFIX}, "
                              f"got {str(path)!r}")
    leaves = flatten(tree, on_host=False)
    user = metadata_json(path, metadata)
    owned = {key: _owned_pieces(leaf) for key, leaf in leaves.items()}
    counts = _global_counts(owned)
    problems = nonfinite_problems(counts, {k: int(np.prod(np.shape(v))) for k, v in
                                           leaves.items()})
    if problems and not allow_nonfinite:
        raise CheckpointError(f"refusing to save {str(path)!r} (nothing was written): "
                              f"{problems}; a diverged run: lower the learning rate or "
                              f"check the data; save(..., allow_nonfinite=True) keeps it")
    partial = path.with_name(f".{path.name}.partial")
    _everywhere(path, "prepare", lambda: _prepare(path, partial)
                if jax.process_index() == 0 else None)
    digests = _all_digests(path, lambda: _write_file(partial / _own_file(), owned))
    _everywhere(path, "complete", lambda: _complete(
        path, partial, _index(leaves, counts, digests, user), sorted(digests))
        if jax.process_index() == 0 else None)
    return path


def load(path: str | os.PathLike, template: Any | None = None, *,
         allow_nonfinite: bool = False) -> tuple[Any, dict]:
    """(tree, metadata) of the sharded checkpoint `path`, as `difprog.checkpoint.load` gives
    them: numpy leaves, or jax.Arrays for template leaves that carry a sharding (each device's
    piece read from the files that hold it)."""
    path = pathlib.Path(path)
    index = read_index(path)
    if not allow_nonfinite:
        sizes = {key: int(np.prod(leaf["shape"])) for key, leaf in index["leaves"].items()}
        problems = nonfinite_problems(index["nonfinite"], sizes)
        if problems:
            raise CheckpointError(f"refusing to load {str(path)!r}: {problems}; it was saved "
                                  f"from a diverged run; use an earlier checkpoint, or "
                                  f"load(..., allow_nonfinite=True) to inspect it")
    reader = Reader(path, index)
    if template is None:
        return nest({key: reader.read(key, None) for key in index["leaves"]}), index["metadata"]
    shapes = {key: (tuple(leaf["shape"]), np.dtype(true_dtype(leaf["dtype"])))
              for key, leaf in index["leaves"].items()}
    return checked_against(path, shapes, template, lambda key, leaf: placed(
        leaf, lambda bounds: reader.read(key, bounds))), index["metadata"]


def metadata(path: str | os.PathLike) -> dict:
    """The user's metadata of the sharded checkpoint `path`, from its checked index alone."""
    return read_index(pathlib.Path(path))["metadata"]


def remove(path: pathlib.Path) -> None:
    """Deletes a sharded checkpoint; renamed first, so that a half-deleted one is never read."""
    doomed = path.with_name(f".{path.name}.removing")
    _clear(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _own_file() -> str:
    """The file this process writes."""
    return file_name(jax.process_index(), jax.process_count())


def _pieces(leaf: Any) -> dict[Bounds, jax.Device | None]:
    """Each distinct piece of `leaf` and the lowest-numbered device holding it (its writer);
    one piece written by process 0 for an array that is not global (a host array, or an array
    of one process's devices while several run)."""
    shape = np.shape(leaf)
    if not isinstance(leaf, jax.Array) or (jax.process_count() > 1
                                           and leaf.is_fully_addressable):
        return {tuple((0, size) for size in shape): None}
    writers: dict[Bounds, jax.Device | None] = {}
    for device, index in sorted(leaf.sharding.devices_indices_map(shape).items(),
                                key=lambda item: item[0].id):
        writers.setdefault(bounds_of(index, shape), device)
    return writers


def _owned_pieces(leaf: Any) -> dict[Bounds, np.ndarray | None]:
    """Every piece of `leaf` by bounds: its values where this process writes it, else None."""
    local = {shard.device: shard for shard in getattr(leaf, "addressable_shards", ())}
    owned = {}
    for bounds, device in _pieces(leaf).items():
        if device is None:
            owned[bounds] = np.asarray(leaf) if jax.process_index() == 0 else None
        else:
            owned[bounds] = np.asarray(local[device].data) if device in local else None
    return owned


def _global_counts(owned: Mapping[str, dict]) -> dict[str, list[int]]:
    """Each leaf's [NaN, infinite] counts over every process's pieces (a collective)."""
    local = np.zeros((len(owned), 2), np.int64)
    for row, pieces in enumerate(owned.values()):
        for values in pieces.values():
            if values is not None:
                local[row] += nonfinite_counts(values)
    if owned and jax.process_count() > 1:
        local = np.asarray(multihost_utils.process_allgather(local)).reshape(
            -1, len(owned), 2).sum(axis=0)
    return {key: [int(n) for n in counts] for key, counts in zip(owned, local)}


def _write_file(path: pathlib.Path, owned: Mapping[str, dict]) -> str:
    """This process's pieces written to `path`; the SHA-256 of the file's bytes."""
    tensors = {tensor_name(key, bounds): storable(key, values)
               for key, pieces in owned.items() for bounds, values in pieces.items()
               if values is not None}
    data = safetensors.numpy.save(tensors)
    with atomic(path) as temporary:
        write_bytes(temporary, data)
    return hashlib.sha256(data).hexdigest()


def _all_digests(path: pathlib.Path, write: Callable[[], str]) -> dict[str, str]:
    """{file: SHA-256} of every process's file once `write()` wrote this one's (a collective);
    raises on every process when one failed: its own error there, a PeerError elsewhere."""
    error, row = None, np.zeros(33, np.uint8)
    try:
        row[1:] = np.frombuffer(bytes.fromhex(write()), np.uint8)
        row[0] = 1
    except (DifprogError, OSError) as caught:
        error = caught
    rows = row[None]
    if jax.process_count() > 1:
        rows = np.asarray(multihost_utils.process_allgather(row)).reshape(-1, 33)
    failed = [k for k, written in enumerate(rows[:, 0]) if not written]
    if error is not None:
        raise error
    if failed:
        raise PeerError(f"process {failed[0]} could not write its pieces of "
                              f"{str(path)!r}; the checkpoint was not completed")
    return {file_name(k, len(rows)): bytes(r[1:]).hex() for k, r in enumerate(rows)}


def _everywhere(path: pathlib.Path, what: str, step: Callable[[], None]) -> None:
    """Runs `step` (which does something on process 0 only) and tells every process whether it
    worked (a collective): process 0 raises its own error, the others a PeerError."""
    error = None
    try:
        step()
    except (DifprogError, OSError) as caught:
        error = caught
    worked = error is None
    if jax.process_count() > 1:
        worked = bool(multihost_utils.broadcast_one_to_all(np.int32(worked)))
    if error is not None:
        raise error
    if not worked:
        raise PeerError(f"process 0 could not {what} the sharded checkpoint "
                              f"{str(path)!r} (its own error says why)")


def _index(leaves: Mapping[str, Any], counts: dict, digests: dict[str, str],
           user: dict) -> bytes:
    """index.json's bytes for these leaves, written by the processes `_pieces` names."""
    processes = jax.process_count()
    described = {key: {
        "dtype": np.dtype(leaf.dtype).name, "shape": list(np.shape(leaf)),
        "pieces": [[file_name(0 if device is None else device.process_index, processes),
                    [list(b) for b in bounds]] for bounds, device in _pieces(leaf).items()]}
        for key, leaf in leaves.items()}
    return index_bytes(described, counts, digests, user)


def _prepare(path: pathlib.Path, partial: pathlib.Path) -> None:
    """An empty `partial` directory; a checkpoint a crash left aside (see `_complete`) back."""
    aside = path.with_name(f".{path.name}.removing")
    if aside.is_dir() and not path.exists():
        os.replace(aside, path)
    _clear(partial)
    partial.mkdir(parents=True)


def _complete(path: pathlib.Path, partial: pathlib.Path, index: bytes,
              files: list[str]) -> None:
    """Process 0: the index written into `partial` once every process's file is there, then
    `partial` renamed to `path` (a checkpoint of that name moved aside first)."""
    missing = [name for name in files if not (partial / name).is_file()]
    if missing:
        raise CheckpointError(
            f"the sharded checkpoint {str(path)!r} is incomplete: {missing[0]} was written, but "
            f"process 0 cannot see it in {str(partial)!r}; every process must write to the same "
            f"directory (shared storage, such as NFS)")
    with atomic(partial / INDEX) as temporary:
        write_bytes(temporary, index)
    aside = path.with_name(f".{path.name}.removing")
    if path.exists():
        _clear(aside)
        os.replace(path, aside)
    os.replace(partial, path)
    _clear(aside)


def _clear(path: pathlib.Path) -> None:
    """Removes a leftover partial or half-removed directory (or a file in its place)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
