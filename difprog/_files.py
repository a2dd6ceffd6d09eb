"""Atomic file writes: a temporary file in the same folder, fsync, then a rename over the target.

A crash leaves the previous file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path to write; on success it is fsynced and renamed to `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: pathlib.Path) -> None:
    """Makes the rename itself durable (skipped where a directory cannot be fsynced)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError:
        pass


def write_json(path: str | os.PathLike, value: Any) -> pathlib.Path:
    """Writes `value` as indented JSON with sorted keys."""
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    return pathlib.Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> pathlib.Path:
    """Writes arrays to an .npz file (loadable with np.load without allow_pickle)."""
    with atomic(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, **{name: np.asarray(a) for name, a in arrays.items()})
    return pathlib.Path(path)
