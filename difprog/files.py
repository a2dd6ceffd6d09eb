"""Atomic file writes: a temporary file in the same folder, fsync, then a rename over the target.

A crash leaves the previous file or the new one, never half of one. A temporary is named after
its target, host and process (`.checkpoint_0003.safetensors.tmp-<host>-<pid>`), so whoever finds
one can tell whether its writer is still alive (`temporary_owner`). A write that fails (a full
disk, no permission) raises `WriteError` naming the file, and leaves no temporary behind.

`kill_point` is a hook for tests only: see its docstring.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import re
import signal
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np

from difprog import interrupts
from difprog.errors import DifprogError, WriteError

__all__ = [
    "KILL_POINTS",
    "atomic",
    "host",
    "kill_point",
    "temporary_owner",
    "temporary_path",
    "write_bytes",
    "write_json",
    "write_npz",
]

_TEMPORARY = re.compile(r"^\..+\.tmp-(?:(?P<host>[A-Za-z0-9._-]+)-)?(?P<pid>\d+)$")
_KILL_VARIABLE = "DIFPROG_TEST_KILL_AT"
KILL_POINTS = ("created", "half-written", "written", "synced", "renamed", "step", "evaluated",
               "checkpoint-saved", "pruned", "metrics-written")
_kill_counts: dict[str, int] = {}


def host() -> str:
    """This machine's name as it appears in temporary and lock files (safe in a file name)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "localhost"


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """The temporary file `atomic` writes before renaming it to `path`."""
    return path.with_name(f".{path.name}.tmp-{host()}-{os.getpid()}")


def temporary_owner(path: pathlib.Path) -> tuple[str | None, int] | None:
    """(host, pid) of the process that writes the temporary `path`; None if it is not one.

    The host is None for temporaries of older difprog versions, which held the pid only.
    """
    match = _TEMPORARY.match(path.name)
    return (match["host"], int(match["pid"])) if match else None


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path to write; on success it is fsynced and renamed to `path`.

    An interrupt of the command line waits for the whole write (`interrupts.deferred`)."""
    path = pathlib.Path(path)
    temporary = temporary_path(path)
    with interrupts.deferred():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield temporary
            kill_point("written")
            with open(temporary, "rb+") as file:
                os.fsync(file.fileno())
            kill_point("synced")
            os.replace(temporary, path)
            kill_point("renamed")
        except OSError as error:
            if isinstance(error, DifprogError):
                raise
            raise _write_error(path, error) from error
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(path.parent)


def _write_error(path: pathlib.Path, error: OSError) -> WriteError:
    """A one-line WriteError for `path` that says what the system reported and what to do."""
    name = errno.errorcode.get(error.errno or 0, "")
    reason = f"{error.strerror} ({name})" if error.strerror and name else str(error)
    advice = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some of your quota",
              errno.EACCES: "check the directory's permissions",
              errno.EROFS: "write to a writable file system"}.get(error.errno, "fix the cause")
    wrapped = WriteError(f"could not write {str(path)!r}: {reason}; nothing was written there "
                         f"(a previous file of that name is unchanged); {advice} and try again")
    wrapped.errno = error.errno
    return wrapped


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a new file `path` (in two halves, with a test kill point between)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        kill_point("created")
        view = memoryview(data)
        _write_all(handle, view[:len(view) // 2])
        kill_point("half-written")
        _write_all(handle, view[len(view) // 2:])
    finally:
        os.close(handle)


def _write_all(handle: int, data: memoryview) -> None:
    """os.write until every byte is written (a write may take fewer bytes than it is given)."""
    while data:
        data = data[os.write(handle, data):]


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
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    with atomic(path) as temporary:
        write_bytes(temporary, text.encode())
    return pathlib.Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> pathlib.Path:
    """Writes arrays to an .npz file (loadable with np.load without allow_pickle)."""
    with atomic(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, **{name: np.asarray(a) for name, a in arrays.items()})
    return pathlib.Path(path)


def kill_point(name: str) -> None:
    """For tests only: SIGKILLs this process the n-th time it reaches the point `name`.

    Does nothing unless the environment variable DIFPROG_TEST_KILL_AT is exactly
    `<name>:<n>` with `name` one of KILL_POINTS and n a positive count, which only the crash
    tests of tests/train/test_kill_and_resume.py set (in the processes they start and kill on
    purpose).
    """
    wanted = os.environ.get(_KILL_VARIABLE)
    if not wanted or not wanted.startswith(f"{name}:"):
        return
    count = wanted[len(name) + 1:]
    if name not in KILL_POINTS or not count.isdigit() or int(count) < 1:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if _kill_counts[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
