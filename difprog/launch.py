"""Several processes of one command line on this machine, joined into one cluster.

`run(argv, processes)` does what `difprog train --processes N` does: it starts N processes
`python -m difprog.cli ARGV --distributed`, process k with JAX_COORDINATOR_ADDRESS (127.0.0.1 and a
free port), JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=k (those set here already are overridden; see
`difprog.cluster`), and forwards each line they print as it arrives, prefixed `[process k] `, to
its own stdout or stderr. When one ends with a non-zero status or by a signal, it stops the others
(SIGTERM, then SIGKILL after `GRACE` seconds), waits for them, and raises DifprogError naming that
process. A Ctrl-C or SIGTERM of the command line (`difprog.interrupts`) stops them the same way
before the launcher ends with 130 or 143. Each process runs in a session of its own, so a Ctrl-C
at the terminal reaches it once, through the launcher; none is left running when it ends.

Example:
    >>> from difprog import launch
    >>> launch.run(["train", "--model", "mlp", "--epochs", "1", "--no-progress"], processes=2)
    difprog train: process 0 is pid 4242, process 1 is pid 4243 (coordinator 127.0.0.1:39211)
    ...
    [process 0] test accuracy 91.11% (328/360) on digits with the mlp model after 1 epochs
    [process 1] test accuracy 91.11% (328/360) on digits with the mlp model after 1 epochs
    0
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import IO

from difprog import arguments, interrupts
from difprog.errors import DifprogError

__all__ = ["GRACE", "MAX_PROCESSES", "command_line", "run"]

GRACE = 5.0  # seconds a process has to end after SIGTERM, before SIGKILL
MAX_PROCESSES = 64
_output = threading.Lock()  # one forwarded line at a time, on either stream


def run(argv: Sequence[str], processes: int, *, grace: float = GRACE) -> int:
    """Runs `difprog ARGV --distributed` in `processes` local processes until all end.

    Args:
        argv: the command line after `difprog` (the command first), without --distributed.
        processes: how many, from 2 to MAX_PROCESSES.
        grace: seconds a process stopped with SIGTERM has to end before SIGKILL.

    Returns 0 when every process ended with status 0. Raises DifprogError when one could not
    start, or ended otherwise: the message names the first such process and how it ended.
    """
    count = arguments.integer("launch.run", "processes", processes, minimum=2,
                              maximum=MAX_PROCESSES)
    grace = arguments.real("launch.run", "grace", grace, minimum=0)
    argv, port = [str(part) for part in argv], _free_port()
    children = _start(argv, count, port)
    _say(" ".join(["difprog", *argv[:1]]) + ": " + ", ".join(
        f"process {k} is pid {child.pid}" for k, child in enumerate(children))
        + f" (coordinator 127.0.0.1:{port})")  # first: the children's lines wait in their pipes
    forwarders = [_forward(child, index) for index, child in enumerate(children)]
    ending = threading.Lock()  # held by whoever stops the children: the run, or an interrupt

    def interrupted() -> None:  # the process ends after this: `ending` stays held
        ending.acquire()
        _stop(children, forwarders, grace)

    with interrupts.cleanup(interrupted):
        try:
            failed = _first_failure(children)
        finally:
            with ending:
                _stop(children, forwarders, grace)
    if failed is not None:
        raise DifprogError(f"process {failed} of {count} {_ended(children[failed].returncode)}; "
                           f"stopped the others")
    return 0


def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace, *,
                 leave: Iterable[str] = ()) -> list[str]:
    """The options of `parser` whose values in `args` differ from their defaults, as a command
    line that `parser` reads back to the same values (`--name=value`, or a flag alone); the
    destinations in `leave` are left out."""
    left, line = set(leave), []
    for action in parser._actions:
        value = getattr(args, action.dest, action.default)
        if not action.option_strings or action.dest in left or value == action.default:
            continue
        option = max(action.option_strings, key=len)
        if action.nargs == 0:
            line.append(option)
        elif isinstance(value, list):
            line += [option, *map(str, value)]
        else:
            line.append(f"{option}={value}")
    return line


def _free_port() -> int:
    """A TCP port nobody listens on now, for process 0's rendezvous and JAX's coordinator."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(index: int, count: int, port: int) -> dict[str, str]:
    """Process `index`'s environment: ours, with the cluster's three variables (replacing any
    set) and unbuffered output, so that each line arrives as it is printed."""
    return {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(count), "JAX_PROCESS_ID": str(index),
            "PYTHONUNBUFFERED": "1"}


def _start(argv: list[str], count: int, port: int) -> list[subprocess.Popen]:
    """The `count` processes, each in a session (and process group) of its own."""
    children: list[subprocess.Popen] = []
    try:
        for index in range(count):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "difprog.cli", *argv, "--distributed"],
                env=_environment(index, count, port), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True))
    except OSError as error:
        _stop(children, [], 0)
        raise DifprogError(f"could not start process {len(children)} of {count} "
                           f"({error.strerror or error}); the others were stopped") from error
    return children


def _forward(child: subprocess.Popen, index: int) -> list[threading.Thread]:
    """Threads that copy the child's stdout and stderr lines to ours, prefixed."""
    threads = [threading.Thread(target=_copy, args=(stream, f"[process {index}] ", name),
                                name=f"difprog-launch-{index}-{name}", daemon=True)
               for stream, name in ((child.stdout, "stdout"), (child.stderr, "stderr"))]
    for thread in threads:
        thread.start()
    return threads


def _copy(stream: IO[bytes], prefix: str, target: str) -> None:
    """Each line of `stream`, as it arrives, to sys.`target` after `prefix`, until its end."""
    with stream:
        for line in iter(stream.readline, b""):
            _say(prefix + line.decode("utf-8", "replace").rstrip("\r\n"), target)


def _say(text: str, target: str = "stderr") -> None:
    """One line on sys.stdout or sys.stderr (looked up now), whole; a closed stream drops it."""
    with _output, contextlib.suppress(OSError, ValueError):
        print(text, file=getattr(sys, target), flush=True)


def _first_failure(children: list[subprocess.Popen]) -> int | None:
    """Waits until every child has ended with status 0 (None) or one ended otherwise (its
    index)."""
    ended: queue.SimpleQueue = queue.SimpleQueue()
    for index, child in enumerate(children):
        threading.Thread(target=lambda k=index, c=child: ended.put((k, c.wait())),
                         name=f"difprog-launch-{index}-wait", daemon=True).start()
    for _ in children:
        index, status = ended.get()
        if status != 0:
            return index
    return None


def _stop(children: list[subprocess.Popen], forwarders: list[list[threading.Thread]],
          grace: float) -> None:
    """SIGTERM to every child still running, SIGKILL to those left after `grace` seconds; waits
    for them all and for the last lines they printed."""
    for child in children:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(child, signal.SIGKILL)
            child.wait()
    for thread in (thread for pair in forwarders for thread in pair):
        thread.join(max(1.0, deadline - time.monotonic()))


def _signal(child: subprocess.Popen, number: int) -> None:
    """Sends `number` to the child's process group (the child and anything it started)."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, number)


def _ended(status: int) -> str:
    """How a child ended, from its return code: 'exited with status 1', 'was killed by
    SIGKILL'."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"was killed by signal {-status}"
