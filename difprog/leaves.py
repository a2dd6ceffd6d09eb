"""The leaves of a checkpoint, whatever its layout (`difprog.checkpoint`'s one file or
`difprog.shards`' pieces): keys from pytree paths, arrays as safetensors can hold them, the
non-finite check, and the match of what was saved against the tree it is loaded into."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from difprog.errors import CheckpointError

__all__ = ["SHOWN", "Bounds", "bounds_of", "checked_against", "flatten", "key_of", "metadata_json",
           "nest", "nonfinite_counts", "nonfinite_problems", "placed", "storable", "true_dtype"]

SHOWN = 10  # problems named in one error
_NATIVE = frozenset(np.dtype(t).name for t in (
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64))

Bounds = tuple[tuple[int, int], ...]  # a piece of an array: (start, stop) along each axis


def _part(entry: Any) -> str:
    """One component of a pytree path as text: a dict key, an index or an attribute name."""
    if isinstance(entry, DictKey | FlattenedIndexKey):
        return str(entry.key)
    if isinstance(entry, SequenceKey):
        return str(entry.idx)
    if isinstance(entry, GetAttrKey):
        return entry.name
    return str(entry)


def key_of(path: tuple) -> str:
    """A leaf's checkpoint key: its path components joined by '/'."""
    parts = [_part(entry) for entry in path]
    if any("/" in part for part in parts):
        raise CheckpointError(f"the key {'/'.join(parts)!r} has a dict key containing '/', which "
                              f"separates checkpoint keys; rename that dict key")
    return "/".join(parts)


def flatten(tree: Any, on_host: bool = True) -> dict[str, Any]:
    """Every leaf of `tree` by key: as a host numpy array (`on_host`), or as it is (a jax.Array
    that may span processes); refuses what cannot be stored."""
    arrays: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = key_of(path)
        if key in arrays:
            raise CheckpointError(f"two leaves are both named {key!r}; rename one")
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                 jax.dtypes.prng_key):
            raise CheckpointError(f"leaf {key!r} is a PRNG key array, which numpy cannot hold; "
                                  f"store PRNG keys as jax.random.key_data(key)")
        try:
            array = np.asarray(jax.device_get(leaf)) if on_host or not isinstance(
                leaf, jax.Array) else leaf
        except Exception as err:  # PRNG key arrays, objects numpy cannot hold
            raise CheckpointError(f"leaf {key!r} is not an array numpy can hold ({err}); "
                                  f"store PRNG keys as jax.random.key_data(key)") from err
        if not (jnp.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise CheckpointError(f"leaf {key!r} has dtype {array.dtype}; checkpoints hold "
                                  f"numeric or bool arrays only")
        arrays[key] = array
    return arrays


def metadata_json(path: str | os.PathLike, metadata: Mapping[str, Any] | None) -> dict:
    """The user's checkpoint metadata as JSON gives it back (sorted keys, tuples as lists)."""
    try:
        return json.loads(json.dumps(dict(metadata or {}), sort_keys=True))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save {os.fspath(path)!r}: metadata must be JSON-serialisable "
                              f"(dicts, lists, strings, numbers): {err}") from err


def nonfinite_counts(array: np.ndarray) -> tuple[int, int]:
    """(NaN count, infinite count) of `array`; (0, 0) for integers and bools."""
    if not jnp.issubdtype(array.dtype, jnp.inexact):
        return 0, 0
    return int(np.isnan(array).sum()), int(np.isinf(array).sum())


def nonfinite_problems(counts: Mapping[str, Any], sizes: Mapping[str, int]) -> str:
    """'<key> holds 2 NaN and 0 infinite of 64 values; ...' for each leaf with any; '' if none."""
    bad = [f"{key!r} holds {nan} NaN and {inf} infinite of {sizes[key]} values"
           for key, (nan, inf) in counts.items() if nan or inf]
    more = f"; and {len(bad) - SHOWN} more leaves" if len(bad) > SHOWN else ""
    return "; ".join(bad[:SHOWN]) + more


def storable(key: str, array: np.ndarray) -> np.ndarray:
    """`array` as safetensors can hold it: dtypes it lacks viewed as unsigned ints."""
    array = np.ascontiguousarray(array).reshape(array.shape)  # keeps 0-d arrays 0-d
    if array.dtype.name in _NATIVE:
        return array
    if array.dtype.itemsize not in (1, 2, 4, 8):
        raise CheckpointError(f"leaf {key!r} has dtype {array.dtype}, which checkpoints cannot "
                              f"store; cast it to a supported dtype first")
    return array.view(f"uint{8 * array.dtype.itemsize}")


def true_dtype(name: str) -> np.dtype:
    """The dtype a checkpoint records by name (bfloat16 and the like included)."""
    return np.dtype(jnp.dtype(name))


def bounds_of(index: tuple, shape: tuple[int, ...]) -> Bounds:
    """A tuple of slices (a device's piece, as jax gives it) as ((start, stop), ...)."""
    return tuple((s.start or 0, size if s.stop is None else s.stop)
                 for s, size in zip(index, shape))


def placed(leaf: Any, read: Callable[[Bounds | None], np.ndarray]) -> Any:
    """The value for a template leaf, from `read(bounds)`: a jax.Array put on the devices the
    leaf's sharding names, each reading its own piece, when the leaf is a jax.ShapeDtypeStruct
    with a sharding; otherwise the whole array (`read(None)`), in numpy."""
    shape = tuple(np.shape(leaf))
    sharding = getattr(leaf, "sharding", None)
    if isinstance(leaf, jax.ShapeDtypeStruct) and isinstance(sharding, jax.sharding.Sharding):
        return jax.make_array_from_callback(
            shape, sharding, lambda index: np.asarray(read(bounds_of(index, shape))))
    return read(None)


def checked_against(path: str | os.PathLike, saved: Mapping[str, tuple[tuple, np.dtype]],
                    template: Any, fill: Callable[[str, Any], Any]) -> Any:
    """The tree of `template` with each leaf `fill(key, leaf)`, once every key, shape and dtype
    of `saved` ({key: (shape, dtype)}) matches it; else one CheckpointError naming them all."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(template)
    wanted = {key_of(p): leaf for p, leaf in pairs}
    problems = [f"{key!r} is missing from the checkpoint" for key in wanted if key not in saved]
    problems += [f"{key!r} is in the checkpoint but not in the model"
                 for key in sorted(saved) if key not in wanted]
    for key, leaf in wanted.items():
        if key in saved:
            shape, dtype = tuple(np.shape(leaf)), np.dtype(
                leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
            if saved[key][0] != shape:
                problems.append(f"{key!r} has shape {saved[key][0]}, the model needs {shape}")
            elif saved[key][1] != dtype:
                problems.append(f"{key!r} has dtype {saved[key][1]}, the model needs {dtype}")
    if problems:
        more = (f"; and {len(problems) - SHOWN} more ({len(problems)} problems in all)"
                if len(problems) > SHOWN else "")
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not match the model: "
                              f"{'; '.join(problems[:SHOWN])}{more}; re-initialise or point "
                              f"to the checkpoint of this model")
    return jax.tree_util.tree_unflatten(treedef, [fill(key, leaf) for key, leaf in wanted.items()])


def nest(arrays: Mapping[str, np.ndarray]) -> dict:
    """`arrays` as nested dicts keyed by the components of their keys."""
    tree: dict = {}
    for key in sorted(arrays):
        *parents, name = key.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = arrays[key]
    return tree
