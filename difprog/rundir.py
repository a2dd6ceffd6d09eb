"""A run's output directory: checked before any compute, and owned by one process at a time.

`own(directory)` checks that the directory has a name, is not a file, can be created and can be
written, then takes an exclusive lock on `directory/.lock` (`fcntl.flock`, which the system
releases when the holder exits, even by SIGKILL) and writes the holder's pid and host into it.
A second run on the same directory gets a `RunDirectoryError` naming that process. While it holds
the lock, the owner removes the temporaries of writers that are gone (see `difprog.files.atomic`):
no live run can own them, since none can hold the lock, and a temporary whose writer is still alive
(a script saving into the directory by hand) is left alone. The lock file is removed on exit.

Example:
    >>> with own("runs/cnn") as run:      # RunDirectoryError if another run holds it
    ...     fit(model, data, config, out=run)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pathlib
import sys
from collections.abc import Iterator

from difprog import interrupts
from difprog.errors import RunDirectoryError
from difprog.files import host, temporary_owner

__all__ = ["LOCK_NAME", "RunDirectory", "own"]

LOCK_NAME = ".lock"


class RunDirectory(os.PathLike):
    """An output directory this process owns (or reads, when not exclusive); a path-like."""

    def __init__(self, path: pathlib.Path, exclusive: bool):
        self.path, self.exclusive = path, exclusive

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r}, exclusive={self.exclusive})"


@contextlib.contextmanager
def own(directory: str | os.PathLike, *, exclusive: bool = True) -> Iterator[RunDirectory]:
    """Checks `directory`, creates it and holds its lock until the block ends.

    Args:
        directory: the output directory; a `RunDirectory` already held is passed through.
        exclusive: take the lock (False: only check the name, for the processes of a
            multi-host run other than the one that writes).

    Raises:
        RunDirectoryError: the name is empty, names a file, cannot be created or written, or
            another process holds the directory (the error names its pid and host).
    """
    if isinstance(directory, RunDirectory):
        yield directory
        return
    path = checked(directory)
    if not exclusive:
        yield RunDirectory(path, exclusive=False)
        return
    create(path)
    handle = _lock(path)
    release = functools.partial((path / LOCK_NAME).unlink, missing_ok=True)
    try:
        remove_stale_temporaries(path)
        with interrupts.cleanup(release):  # a Ctrl-C of the command line removes it too
            yield RunDirectory(path, exclusive=True)
    finally:
        with contextlib.suppress(OSError):
            release()  # while still holding it: see _lock
        os.close(handle)


def checked(directory: str | os.PathLike) -> pathlib.Path:
    """`directory` as a path, refused when its name is empty or it is an existing file."""
    text = os.fspath(directory)
    if not str(text).strip():
        raise RunDirectoryError("the output directory is '' (an empty name); name a directory, "
                                "such as --out runs/cnn")
    path = pathlib.Path(text)
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as error:  # a name too long, a parent that cannot be entered
        raise RunDirectoryError(f"cannot use the output directory {str(path)!r}: "
                                f"{error.strerror or error}; choose another name") from error
    if is_file:
        raise RunDirectoryError(f"the output directory {str(path)!r} is a file, not a "
                                f"directory; choose another name or move the file away")
    return path


def create(path: pathlib.Path) -> None:
    """Creates `path` (and its parents) and checks that files can be written into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirectoryError(f"cannot create the output directory {str(path)!r}: "
                                f"{error.strerror or error}; choose another place") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"the output directory {str(path)!r} is not writable; fix its "
                                f"permissions or choose another place")


def _lock(path: pathlib.Path) -> int:
    """Opens and flocks `path/.lock`, writes our pid and host in it, and returns its handle.

    The owner removes the lock file on exit while still holding it, so a process that locked
    the file just before it was removed holds a lock nobody sees: it checks that the file it
    locked is still the one at that path, and otherwise tries again.
    """
    lock = path / LOCK_NAME
    for _ in range(100):
        try:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunDirectoryError(f"cannot write into the output directory {str(path)!r} "
                                    f"({error.strerror or error}); fix its permissions or "
                                    f"choose another place") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            raise RunDirectoryError(
                f"the output directory {str(path)!r} is in use by {holder} (it holds "
                f"{str(lock)!r}); wait for that run to finish or stop it, or choose another "
                f"output directory") from None
        if _same_file(handle, lock):
            try:
                _write_holder(handle)
            except OSError as error:
                os.close(handle)
                raise RunDirectoryError(f"cannot write into the output directory {str(path)!r} "
                                        f"({error.strerror or error}); free some space or choose "
                                        f"another place") from error
            return handle
        os.close(handle)
    raise RunDirectoryError(f"could not lock {str(lock)!r}: other processes keep replacing it")


def _same_file(handle: int, lock: pathlib.Path) -> bool:
    """Whether the open `handle` is still the file at `lock` (not one removed meanwhile)."""
    try:
        here, there = os.fstat(handle), os.stat(lock)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _write_holder(handle: int) -> None:
    """Writes this process's pid, host and command into the lock file it holds."""
    text = json.dumps({"pid": os.getpid(), "host": host(), "command": " ".join(sys.argv)})
    os.ftruncate(handle, 0)
    os.pwrite(handle, (text + "\n").encode(), 0)


def _holder(handle: int) -> str:
    """The process that holds the lock file open at `handle`, in words."""
    try:
        info = json.loads(os.pread(handle, 65536, 0).decode())
        pid, where, command = int(info["pid"]), str(info["host"]), str(info.get("command", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (which has not written its pid yet)"
    this = " (this process)" if pid == os.getpid() and where == host() else ""
    shown = f", running {command[:120]!r}" if command else ""
    return f"process {pid} on host {where}{this}{shown}"


def remove_stale_temporaries(path: pathlib.Path) -> list[pathlib.Path]:
    """Removes the temporary files in `path` whose writer is gone; returns those removed.

    Only the lock holder calls this. A temporary whose writer runs on another host, or is
    still alive here, is kept.
    """
    removed = []
    for temporary in path.glob(".*.tmp-*"):
        owner = temporary_owner(temporary)
        if owner is None or owner[0] not in (None, host()) or _alive(owner[1]):
            continue
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
            removed.append(temporary)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (our own pid counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True
