"""Checkpoints: pytrees of arrays (params, optax state) saved to and loaded from safetensors files.

A checkpoint is a safetensors file (no pickle: loading never runs code) with one tensor per leaf,
named by its slash-joined pytree path (`params/dense_0/w`, `opt_state/0/mu/dense_0/w`). Its header
holds one JSON string under "difprog": the format version, each leaf's true dtype (bfloat16 and
dtypes safetensors lacks are stored as unsigned ints of their width), the user's metadata, and a
SHA-256 over all of it and every tensor's bytes. Writes are atomic and byte-for-byte reproducible.
NaN and infinite values are refused on save and on load (a diverged run is never kept or resumed)
unless `allow_nonfinite=True` asks for them.
"""

from __future__ import annotations

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
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from difprog import arguments
from difprog.errors import CheckpointError
from difprog.files import atomic, write_bytes

__all__ = ["FORMAT", "checkpoint_path", "latest", "load", "numbered", "save"]

FORMAT = 1
_HEADER_KEY = "difprog"
_NATIVE = frozenset(np.dtype(t).name for t in (
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64))
_SHOWN = 10
_NUMBERED = re.compile(r"^checkpoint_(\d+)\.safetensors$")


def checkpoint_path(directory: str | os.PathLike, epoch: int) -> pathlib.Path:
    """The file of epoch `epoch` in `directory`: `checkpoint_0003.safetensors` for epoch 3."""
    epoch = arguments.integer("checkpoint_path", "epoch", epoch, minimum=0)
    return pathlib.Path(directory) / f"checkpoint_{epoch:04d}.safetensors"


def latest(directory: str | os.PathLike,
           pattern: str = "checkpoint_*.safetensors") -> pathlib.Path | None:
    """The checkpoint in `directory` with the highest number in its name, or None if there is none.

    Example:
        >>> latest("runs/mnist")  # holds checkpoint_0002 and checkpoint_0010
        PosixPath('runs/mnist/checkpoint_0010.safetensors')
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    numbered = [(int(re.findall(r"\d+", p.name)[-1]), p.name, p) for p in directory.glob(pattern)
                if p.is_file() and not p.name.startswith(".") and re.search(r"\d", p.name)]
    return max(numbered)[2] if numbered else None


def numbered(directory: str | os.PathLike) -> list[pathlib.Path]:
    """The `checkpoint_<epoch>.safetensors` files in `directory`, oldest epoch first.

    Ordered by the epoch number, not the name: checkpoint_9998 comes before checkpoint_10000.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(match[1]), path) for path in directory.iterdir()
             if (match := _NUMBERED.match(path.name)) and path.is_file()]
    return [path for _, path in sorted(found)]


def save(path: str | os.PathLike, tree: Any, *, metadata: Mapping[str, Any] | None = None,
         allow_nonfinite: bool = False) -> pathlib.Path:
    """Writes the arrays of `tree` to `path` atomically: a crash leaves the old file or the new one.

    Args:
        path: the file to write; missing parent directories are created.
        tree: any pytree of arrays (dicts, lists, tuples, NamedTuples such as optax states).
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
    arrays = _flatten(tree)
    if not allow_nonfinite:
        _refuse_nonfinite(arrays, f"refusing to save {str(path)!r} (nothing was written)",
                          "a diverged run: lower the learning rate or check the data; "
                          "save(..., allow_nonfinite=True) keeps it anyway")
    stored = {key: _storable(key, array) for key, array in arrays.items()}
    dtypes = {key: array.dtype.name for key, array in arrays.items()}
    try:
        user = json.loads(json.dumps(dict(metadata or {}), sort_keys=True))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save {str(path)!r}: metadata must be JSON-serialisable "
                              f"(dicts, lists, strings, numbers): {err}") from err
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
        path: the checkpoint file.
        template: a pytree of the expected structure whose leaves are arrays or
            `jax.ShapeDtypeStruct`s; every key, shape and dtype must match the file.
        allow_nonfinite: read NaN and infinite values too, for inspection (by default a
            checkpoint holding any is refused).

    Returns:
        `(tree, metadata)`. The leaves are writable numpy arrays (`jax.device_put` moves them to
        a device); the tree has the template's structure, or without a template is a nested dict
        keyed by the path components (`tree['opt_state']['0']['count']`), for inspection.

    Example:
        >>> state, meta = load(latest('runs/mnist'), template=state)
        >>> meta['epoch']
        3
    """
    arrays, user = _read(pathlib.Path(path))
    if not allow_nonfinite:
        _refuse_nonfinite(arrays, f"refusing to load {str(path)!r}",
                          "it was saved from a diverged run; use an earlier checkpoint, or "
                          "load(..., allow_nonfinite=True) to inspect it")
    if template is None:
        return _nest(arrays), user
    return _fill(path, arrays, template), user


def _part(entry: Any) -> str:
    """One component of a pytree path as text: a dict key, an index or an attribute name."""
    if isinstance(entry, DictKey | FlattenedIndexKey):
        return str(entry.key)
    if isinstance(entry, SequenceKey):
        return str(entry.idx)
    if isinstance(entry, GetAttrKey):
        return entry.name
    return str(entry)


def _key(path: tuple) -> str:
    """A leaf's checkpoint key: its path components joined by '/'."""
    parts = [_part(entry) for entry in path]
    if any("/" in part for part in parts):
        raise CheckpointError(f"the key {'/'.join(parts)!r} has a dict key containing '/', which "
                              f"separates checkpoint keys; rename that dict key")
    return "/".join(parts)


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    """Every leaf of `tree` as a host numpy array, by key; refuses what cannot be stored."""
    arrays: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = _key(path)
        if key in arrays:
            raise CheckpointError(f"two leaves are both named {key!r}; rename one")
        try:
            array = np.asarray(jax.device_get(leaf))
        except Exception as err:  # PRNG key arrays, objects numpy cannot hold
            raise CheckpointError(f"leaf {key!r} is not an array numpy can hold ({err}); "
                                  f"store PRNG keys as jax.random.key_data(key)") from err
        if not (jnp.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise CheckpointError(f"leaf {key!r} has dtype {array.dtype}; checkpoints hold "
                                  f"numeric or bool arrays only")
        arrays[key] = array
    return arrays


def _refuse_nonfinite(arrays: Mapping[str, np.ndarray], what: str, advice: str) -> None:
    """Raises CheckpointError naming each leaf that holds NaN or infinite values."""
    bad = []
    for key, array in arrays.items():
        if jnp.issubdtype(array.dtype, jnp.inexact):
            nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            if nan or inf:
                bad.append(f"{key!r} holds {nan} NaN and {inf} infinite of {array.size} values")
    if bad:
        more = f"; and {len(bad) - _SHOWN} more leaves" if len(bad) > _SHOWN else ""
        raise CheckpointError(f"{what}: {'; '.join(bad[:_SHOWN])}{more}; {advice}")


def _storable(key: str, array: np.ndarray) -> np.ndarray:
    """`array` as safetensors can hold it: dtypes it lacks viewed as unsigned ints."""
    array = np.ascontiguousarray(array).reshape(array.shape)  # keeps 0-d arrays 0-d
    if array.dtype.name in _NATIVE:
        return array
    if array.dtype.itemsize not in (1, 2, 4, 8):
        raise CheckpointError(f"leaf {key!r} has dtype {array.dtype}, which checkpoints cannot "
                              f"store; cast it to a supported dtype first")
    return array.view(f"uint{8 * array.dtype.itemsize}")


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


def _fill(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], template: Any) -> Any:
    """`arrays` in the structure of `template`, naming every key, shape or dtype mismatch."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(template)
    wanted = {_key(p): leaf for p, leaf in pairs}
    problems = [f"{key!r} is missing from the checkpoint" for key in wanted if key not in arrays]
    problems += [f"{key!r} is in the checkpoint but not in the model"
                 for key in sorted(arrays) if key not in wanted]
    for key, leaf in wanted.items():
        if key in arrays:
            shape = tuple(np.shape(leaf))
            dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
            if arrays[key].shape != shape:
                problems.append(f"{key!r} has shape {arrays[key].shape}, the model needs {shape}")
            elif arrays[key].dtype != dtype:
                problems.append(f"{key!r} has dtype {arrays[key].dtype}, the model needs {dtype}")
    if problems:
        more = (f"; and {len(problems) - _SHOWN} more ({len(problems)} problems in all)"
                if len(problems) > _SHOWN else "")
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the model: "
                              f"{'; '.join(problems[:_SHOWN])}{more}; re-initialise or point "
                              f"to the checkpoint of this model")
    return jax.tree_util.tree_unflatten(treedef, [arrays[key] for key in wanted])


def _nest(arrays: Mapping[str, np.ndarray]) -> dict:
    """`arrays` as nested dicts keyed by the components of their keys."""
    tree: dict = {}
    for key in sorted(arrays):
        *parents, name = key.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = arrays[key]
    return tree
