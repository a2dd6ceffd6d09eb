"""Ctrl-C and SIGTERM in the command line: one line and an exit code at any moment of a run.

Inside `handled(name)`, SIGINT and SIGTERM wake a watcher thread as they arrive (even while the
main thread waits inside XLA, a collective or a compile), which prints "difprog NAME:
interrupted" (or "terminated") and ends the process with 130 (or 143) at once, without
unwinding Python through running XLA computations, which could crash at exit. A file being
written (inside `deferred()`, as `files.atomic` is) is finished first, so the last checkpoint
stands and no temporary is left. A signal ignored when the process started (a background job's
SIGINT) stays ignored. Outside `handled`, nothing changes: `deferred()` is then just a lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

__all__ = ["cleanup", "deferred", "end", "handled", "reassert", "rename", "stop"]

_CODES = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}
_writing = threading.RLock()
_state: dict = {"name": "", "active": False}
_cleanups: list = []


@contextlib.contextmanager
def handled(name: str = "") -> Iterator[None]:
    """Within it, SIGINT and SIGTERM end the process in one line (see the module); call it from
    the main thread (elsewhere it changes nothing). The handlers before it are restored after
    it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in _CODES}
    _state.update(name=name, previous=previous)
    _install(_early)  # a signal while the watcher starts: Python is running, so stop here
    wake = _wake_socket()
    old_fd = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
    _state["active"] = True
    try:
        reassert()
        yield
    finally:
        _state["active"] = False
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(old_fd)


def reassert() -> None:
    """Installs the handlers again, after a library (jax.distributed) replaced them."""
    if _state["active"]:
        _install(_noted)  # its C handler writes to the wake-up socket


def _install(handler: Callable) -> None:
    """`handler` for SIGINT and SIGTERM, except a signal ignored when `handled` began."""
    for number, original in _state["previous"].items():
        if original != signal.SIG_IGN:
            signal.signal(number, handler)


def rename(name: str) -> None:
    """The command that messages name from now on ('train' prints 'difprog train: ...')."""
    _state["name"] = name


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stretch (a file write) that an interrupt waits for instead of cutting short."""
    with _writing:
        yield


@contextlib.contextmanager
def cleanup(action: Callable[[], object]) -> Iterator[None]:
    """`action()` runs when the process is stopped within the block (a lock file removed)."""
    _cleanups.append(action)
    try:
        yield
    finally:
        _cleanups.remove(action)


def stop(message: str, code: int) -> None:
    """Prints `difprog NAME: message` on stderr and ends the process with `code` at once, after
    any write in progress; callable from any thread."""
    with _writing:
        for action in reversed(_cleanups):
            with contextlib.suppress(Exception):
                action()
        prefix = " ".join(filter(None, ("difprog", _state["name"])))
        end(code, f"{prefix}: {message}")


def end(code: int, last_words: str) -> NoReturn:
    """Ends the process with `code` at once, `last_words` the last line on its stderr: other
    threads still running (XLA's distributed runtime logs a peer's death as it notices it,
    from C++) write nothing after it. Callable from any thread; the first caller's words and
    code stand."""
    with _writing:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        stderr = 2
        with contextlib.suppress(OSError):
            stderr = os.dup(2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        with contextlib.suppress(OSError):
            os.write(stderr, f"{last_words}\n".encode("utf-8", "replace"))
        os._exit(code)


def _wake_socket() -> socket.socket:
    """The socket signals are written to, read by one watcher thread for the process's life."""
    if "wake" not in _state:
        receive, wake = socket.socketpair()
        wake.setblocking(False)
        _state["wake"] = wake
        threading.Thread(target=_watch, args=(receive,), name="difprog-interrupts",
                         daemon=True).start()
    return _state["wake"]


def _watch(receive: socket.socket) -> None:
    while received := receive.recv(64):
        for number in received:
            if _state["active"] and number in _CODES:
                code, what = _CODES[number]
                stop(what, code)


def _early(number: int, frame: object) -> None:
    """The handler while `handled` starts the watcher: stops the process itself."""
    code, what = _CODES[number]
    stop(what, code)


def _noted(number: int, frame: object) -> None:
    """The Python-level handler: nothing, as the watcher thread has already acted."""
