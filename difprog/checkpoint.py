"""Checkpoints: pytrees of arrays (params, optax state) saved to and loaded from safetensors files.

A checkpoint is a safetensors file (no pickle: loading never runs code) with one tensor per leaf,
named by its slash-joined pytree path (`params/dense_0/w`, `opt_state/0/mu/dense_0/w`). Its header
holds one JSON string under "difprog": the format version, each leaf's true dtype (bfloat16 and
dtypes safetensors lacks are stored as unsigned ints of their width), the user's metadata, and a
SHA-256 over all of it and every tensor's bytes. Writes are atomic and byte-for-byte reproducible.
NaN and infinite values are refused on save and on load (a diverged run is never kept or resumed)
unless `allow_nonfinite=True` asks for them.

A tree whose arrays span processes (params split over every device of a multi-process run) is
saved as a sharded checkpoint instead, a directory ending in `.shards` that every process writes
its pieces into (`difprog.shards`); `save`, `load`, `latest` and `numbered` take both kinds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from difprog import arguments, shards
from difprog.errors import CheckpointError
from difprog.files import atomic, write_bytes
from difprog.leaves import (
    checked_against,
    flatten,
    metadata_json,
    nest,
    nonfinite_counts,
    nonfinite_problems,
    placed,
    storable,
)

__all__ = ["FORMAT", "checkpoint_path", "latest", "load", "metadata", "numbered", "remove",
           "save"]

FORMAT = 1
_HEADER_KEY = "difprog"
_NUMBERED = re.compile(r"^checkpoint_(\d+)\.(safetensors|shards)$")


def checkpoint_path(directory: str | os.PathLike, epoch: int, *,
                    sharded: bool = False) -> pathlib.Path:
    """The checkpoint of epoch `epoch` in `directory`: `checkpoint_0003.safetensors` for epoch 3,
    or with `sharded` (a tree spanning processes) the directory `checkpoint_0003.shards`."""
    epoch = arguments.integer("checkpoint_path", "epoch", epoch, minimum=0)
    suffix = shards.SUFFIX if sharded else ".safetensors"
    return pathlib.Path(directory) / f"checkpoint_{epoch:04d}{suffix}"


def latest(directory: str | os.PathLike, pattern: str | None = None) -> pathlib.Path | None:
    """The checkpoint in `directory` with the highest number in its name, or None if there is none.

    Without a `pattern`, the newest of `numbered(directory)`; with one (a glob such as
    `model_*.safetensors`), the file matching it with the highest last number in its name.

    Example:
        >>> latest("runs/mnist")  # holds checkpoint_0002 and checkpoint_0010
        PosixPath('runs/mnist/checkpoint_0010.safetensors')
    """
    directory = pathlib.Path(directory)
    if pattern is None:
        found = numbered(directory)
        return found[-1] if found else None
    if not directory.is_dir():
        return None
    found = [(int(re.findall(r"\d+", p.name)[-1]), p.name, p) for p in directory.glob(pattern)
             if p.is_file() and not p.name.startswith(".") and re.search(r"\d", p.name)]
    return max(found)[2] if found else None


def numbered(directory: str | os.PathLike) -> list[pathlib.Path]:
    """The checkpoints in `directory`, `checkpoint_<epoch>.safetensors` files and complete
    `checkpoint_<epoch>.shards` directories (with their index), oldest epoch first.

    Ordered by the epoch number, not the name: checkpoint_9998 comes before checkpoint_10000.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(match[1]), path.name, path) for path in directory.iterdir()
             if (match := _NUMBERED.match(path.name))
             and (shards.is_checkpoint(path) if shards.is_sharded(path) else path.is_file())]
    return [path for *_, path in sorted(found)]


def remove(path: str | os.PathLike) -> None:
    """Deletes a checkpoint, a file or a sharded checkpoint's directory."""
    path = pathlib.Path(path)
    if shards.is_sharded(path) and path.is_dir():
        shards.remove(path)
    else:
        path.unlink()


def save(path: str | os.PathLike, tree: Any, *, metadata: Mapping[str, Any] | None = None,
         allow_nonfinite: bool = False) -> pathlib.Path:
    """Writes the arrays of `tree` to `path` atomically: a crash leaves the old file or the new one.

    Args:
        path: the file to write; missing parent directories are created. A path ending in
            `.shards` (`checkpoint_path(..., sharded=True)`) writes a sharded checkpoint:
            every process of the run calls `save` (see `difprog.shards`).
        tree: any pytree of arrays (dicts, lists, tuples, NamedTuples such as optax states).
            Arrays spanning processes need a sharded checkpoint.
        metadata: a JSON-serialisable dict stored alongside, such as `{'epoch': 3}`.
        allow_nonfinite: save NaN and infinite values too (by default they are refused).

    Returns:
        The path written.

    Raises:
        CheckpointError: a leaf holds NaN or infinite values (nothing is written), a leaf is not
            a numeric array, or the metadata is not JSON.
        WriteError: the file could not be written (a full disk); no partial file is left.

    Example:
        >>> state = {'params': params, 'opt_state': optimizer.init(params)}
        >>> save(checkpoint_path('runs/mnist', 3), state, metadata={'epoch': 3})
        PosixPath('runs/mnist/checkpoint_0003.safetensors')
    """
    path = pathlib.Path(path)
    if shards.is_sharded(path):
        return shards.save(path, tree, metadata=metadata, allow_nonfinite=allow_nonfinite)
    spanning = [key for key, leaf in flatten(tree, on_host=False).items()
                if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
                and not leaf.is_fully_replicated]
    if spanning:
        raise CheckpointError(f"save {str(path)!r}: {spanning[0]!r} is split over processes, "
                              f"which one file cannot gather; save a sharded checkpoint (a path "
                              f"ending in {shards.SUFFIX}, checkpoint_path(..., sharded=True)) "
                              f"from every process")
    arrays = flatten(tree)
    if not allow_nonfinite:
        _refuse_nonfinite(arrays, f"refusing to save {str(path)!r} (nothing was written)",
                          "a diverged run: lower the learning rate or check the data; "
                          "save(..., allow_nonfinite=True) keeps it anyway")
    stored = {key: storable(key, array) for key, array in arrays.items()}
    dtypes = {key: array.dtype.name for key, array in arrays.items()}
    user = metadata_json(path, metadata)
    header = {"format": FORMAT, "dtypes": dtypes, "sha256": _checksum(stored, dtypes, user),
              "metadata": user}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    data = safetensors.numpy.save(stored, metadata={_HEADER_KEY: text})
    with atomic(path) as temporary:
        write_bytes(temporary, data)
    return path


def load(path: str | os.PathLike, template: Any | None = None, *,
         allow_nonfinite: bool = False) -> tuple[Any, dict]:
    """Reads a checkpoint `save` wrote, checked against `template` when one is given.

    Args:
        path: the checkpoint file, or a sharded checkpoint's directory.
        template: a pytree of the expected structure whose leaves are arrays or
            `jax.ShapeDtypeStruct`s; every key, shape and dtype must match the file. A
            ShapeDtypeStruct with a sharding gets a jax.Array placed so, each process reading
            only its devices' pieces.
        allow_nonfinite: read NaN and infinite values too, for inspection (by default a
            checkpoint holding any is refused).

    Returns:
        `(tree, metadata)`. The leaves are writable numpy arrays (`jax.device_put` moves them to
        a device), or jax.Arrays where the template asks for a sharding; the tree has the
        template's structure, or without a template is a nested dict
        keyed by the path components (`tree['opt_state']['0']['count']`), for inspection.

    Example:
        >>> state, meta = load(latest('runs/mnist'), template=state)
        >>> meta['epoch']
        3
    """
    if shards.is_sharded(path) and pathlib.Path(path).is_dir():
        return shards.load(path, template, allow_nonfinite=allow_nonfinite)
    arrays, user = _read(pathlib.Path(path))
    if not allow_nonfinite:
        _refuse_nonfinite(arrays, f"refusing to load {str(path)!r}",
                          "it was saved from a diverged run; use an earlier checkpoint, or "
                          "load(..., allow_nonfinite=True) to inspect it")
    if template is None:
        return nest(arrays), user
    saved = {key: (array.shape, array.dtype) for key, array in arrays.items()}
    return checked_against(path, saved, template,
                           lambda key, leaf: placed(leaf, functools.partial(_piece, arrays[key]))
                           ), user


def _piece(array: np.ndarray, bounds: tuple | None) -> np.ndarray:
    """`array` within `bounds` ((start, stop) along each axis), or all of it."""
    return array if bounds is None else array[tuple(slice(*b) for b in bounds)]


def metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint `save` wrote (a sharded one's without reading its arrays)."""
    if shards.is_sharded(path) and pathlib.Path(path).is_dir():
        return shards.metadata(path)
    return _read(pathlib.Path(path))[1]


def _refuse_nonfinite(arrays: Mapping[str, np.ndarray], what: str, advice: str) -> None:
    """Raises CheckpointError naming each leaf that holds NaN or infinite values."""
    problems = nonfinite_problems({key: nonfinite_counts(a) for key, a in arrays.items()},
                                  {key: a.size for key, a in arrays.items()})
    if problems:
        raise CheckpointError(f"{what}: {problems}; {advice}")


def _checksum(stored: Mapping[str, np.ndarray], dtypes: Mapping[str, str], user: dict) -> str:
    """SHA-256 over the metadata and every key, dtype, shape and byte (little-endian)."""
    digest = hashlib.sha256(json.dumps(user, sort_keys=True).encode())
    for key in sorted(stored):
        array = stored[key]
        digest.update(json.dumps([key, dtypes[key], list(array.shape)]).encode())
        digest.update(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def _read(path: pathlib.Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of a checkpoint file, refused when missing or damaged."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}; check the path (latest(directory) "
                              f"finds the newest checkpoint in a directory)")
    data = path.read_bytes()
    broken = f"{str(path)!r} is corrupted or not a difprog checkpoint"
    try:  # any failure to parse is a broken file, whatever the parser raises
        size = int.from_bytes(data[:8], "little")
        info = json.loads(json.loads(data[8:8 + size])["__metadata__"][_HEADER_KEY])
        stored = safetensors.numpy.load(data)
        dtypes, user, version = info["dtypes"], info["metadata"], info["format"]
        intact = set(dtypes) == set(stored) and _checksum(stored, dtypes, user) == info["sha256"]
        arrays = {key: np.array(array.view(jnp.dtype(dtypes[key])))
                  for key, array in stored.items()}
    except Exception as err:
        raise CheckpointError(f"{broken} ({type(err).__name__}: {err}); restore it or use an "
                              f"earlier checkpoint (safetensors.numpy.load_file reads plain "
                              f"safetensors files)") from err
    if version != FORMAT:
        raise CheckpointError(f"{str(path)!r} has checkpoint format {version!r}, this difprog "
                              f"reads format {FORMAT}; load it with the difprog that wrote it")
    if not intact:
        raise CheckpointError(f"{broken}: its checksum does not match its data (a damaged or "
                              f"partial copy); restore it or use an earlier checkpoint")
    return arrays, user
