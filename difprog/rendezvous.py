"""The processes of a multi-process run meet before JAX joins them, and watch each other after.

`meet(address, processes, index, settings, timeout)` runs before `jax.distributed.initialize`,
whose own wait cannot be bounded from Python (a peer that never comes aborts the process in C++
after five minutes). Process 0 listens at the coordinator's port; every other process connects
and says who it is and what it was told to run (one line of JSON). Process 0 answers all of them
at once: go, or the one-line reason none may (a process missing after `timeout` seconds, two
processes with one id, other process counts or other settings), and closes its listener so JAX
can take the port. The connections stay open: when one process ends without `leave()` (a crash,
a kill, Ctrl-C), the others see it at once and stop in one line (`interrupts.stop`, status 1)
instead of waiting in a collective for a peer that will never answer.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import selectors
import socket
import threading
import time

from difprog import interrupts
from difprog.errors import DifprogError

__all__ = ["departed", "joined", "leave", "meet"]

_GRACE = 5.0  # seconds a process waits beyond the timeout for process 0's reason
_peers: dict[int, socket.socket] = {}
_left = threading.Event()
_place: dict[str, int] = {}  # this process's index and the process count
_finished: set[int] = set()  # the peers that said they ended as they should
_reading = threading.Lock()  # held while a peer's stream is read, and its done recorded


def meet(host: str, port: int, processes: int, index: int, settings: dict, timeout: float, *,
         owner: str) -> None:
    """Waits at most `timeout` seconds for all `processes` to meet at host:port with equal
    `settings`; raises DifprogError (message starting with `owner`) otherwise. Then watches the
    others until `leave()`."""
    deadline = time.monotonic() + timeout
    hello = {"process": index, "processes": processes, "settings": settings}
    if index == 0:
        peers = _gather(port, hello, deadline, timeout, owner)
    else:
        peers = {0: _greet(host, port, hello, deadline + _GRACE, timeout, owner)}
    _left.clear()
    _peers.update(peers)
    _place.update(index=index, processes=processes)
    atexit.register(leave)
    threading.Thread(target=_watch, args=(dict(peers),),
                     name="difprog-peers", daemon=True).start()


def leave(done: bool = True) -> None:
    """Stops watching the other processes; with `done`, first tells them this one ended as it
    should (so they do not stop), else closes the connections so that they stop at once. The
    first call counts; `meet` registers one at exit."""
    if _left.is_set():
        return
    _left.set()
    for peer in _peers.values():
        with contextlib.suppress(OSError):
            if done:
                peer.sendall(b'{"done": true}\n')
            else:
                peer.shutdown(socket.SHUT_RDWR)


def departed(wait: float = 0.5) -> str | None:
    """The line a process stopped by a peer's early end prints (`process 0 of 2 stopped before
    the run ended; stopping process 1 too`) if a peer's connection has closed, or closes within
    `wait` seconds; None otherwise. A process whose step failed because a peer died (JAX's error
    can come first) names the peer with it rather than the error."""
    if not joined():
        return None
    watched = {other: peer for other, peer in _peers.items() if other not in _finished}
    ready, _, _ = select.select(list(watched.values()), [], [], wait) if watched else ([], 0, 0)
    for other, peer in watched.items():
        if peer not in ready:
            continue
        with _reading:  # the watcher may have just read this peer's done, and only its end is left
            try:
                waiting = peer.recv(64, socket.MSG_PEEK)
            except OSError:
                waiting = b""
            if not waiting and other not in _finished:
                return _stopped(other)
    return None


def _stopped(other: int) -> str:
    return (f"process {other} of {_place['processes']} stopped before the run ended; stopping "
            f"process {_place['index']} too")


def joined() -> bool:
    """Whether this process met others (`meet`) and has not left them."""
    return bool(_peers) and not _left.is_set()


def _gather(port: int, hello: dict, deadline: float, timeout: float,
            owner: str) -> dict[int, socket.socket]:
    """Process 0: the other processes' connections, once all have arrived and agree."""
    count, arrived = hello["processes"], {}
    try:
        server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True) \
            if socket.has_dualstack_ipv6() else socket.create_server(("", port))
    except OSError as error:
        raise DifprogError(f"{owner}: process 0 of {count} cannot listen on port {port} "
                           f"({os.strerror(error.errno or 0)}): is another process 0 of this "
                           f"run (or another program) using it? Choose a free port") from None
    with server:
        while len(arrived) < count - 1:
            connection = _accept(server, deadline)
            if connection is None:
                missing = [str(k) for k in range(1, count) if k not in arrived]
                _refuse(arrived, f"{owner}: process{'es' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)} of {count} did not arrive at the "
                                 f"coordinator (port {port}) within {timeout:g} s; start every "
                                 f"process with the same JAX_COORDINATOR_ADDRESS and "
                                 f"JAX_NUM_PROCESSES, or raise --join-timeout")
            other = _read(connection, deadline)
            if not isinstance(other, dict) or "process" not in other:
                connection.close()  # not one of ours (a port scan, a health check)
                continue
            problem = _disagreement(hello, other, arrived)
            if problem:
                _refuse({**arrived, -1: connection}, f"{owner}: {problem}")
            arrived[other["process"]] = connection
        for connection in arrived.values():
            _send(connection, {"go": True})
    return arrived


def _accept(server: socket.socket, deadline: float) -> socket.socket | None:
    server.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return None
    connection.setblocking(True)
    return connection


def _disagreement(mine: dict, other: dict, arrived: dict) -> str | None:
    """Why process 0 (`mine`) cannot run with `other`, or None."""
    index, count = other.get("process"), other.get("processes")
    if count != mine["processes"]:
        return (f"process {index} was started with JAX_NUM_PROCESSES={count}, process 0 with "
                f"{mine['processes']}; give every process the same count")
    if not isinstance(index, int) or not 0 < index < count or index in arrived:
        return (f"two processes have JAX_PROCESS_ID={index}; give each process its own id from "
                f"0 to {count - 1}")
    theirs = other.get("settings") or {}
    differ = [f"{name} {theirs.get(name)!r} (process 0: {value!r})"
              for name, value in sorted(mine["settings"].items()) if theirs.get(name) != value]
    differ += [f"{name} {theirs[name]!r} (process 0: not set)"
               for name in sorted(set(theirs) - set(mine["settings"]))]
    if differ:
        return (f"process {index} was started with other settings than process 0: "
                f"{'; '.join(differ)}; start every process with the same options")
    return None


def _refuse(connections: dict, message: str) -> None:
    for connection in connections.values():
        with contextlib.suppress(OSError):
            _send(connection, {"error": message})
            connection.close()
    raise DifprogError(message)


def _greet(host: str, port: int, hello: dict, deadline: float, timeout: float,
           owner: str) -> socket.socket:
    """Process k > 0: the connection to process 0, once process 0 says go."""
    where = f"{host}:{port}"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise DifprogError(f"{owner}: cannot resolve the coordinator's host {host!r} "
                           f"(JAX_COORDINATOR_ADDRESS={where}): {error.strerror}") from None
    connection = None
    while connection is None:
        try:
            connection = socket.create_connection((host, port), timeout=1.0)
        except OSError:
            if time.monotonic() > deadline - _GRACE:
                raise DifprogError(
                    f"{owner}: process {hello['process']} of {hello['processes']} found no "
                    f"coordinator at {where} within {timeout:g} s; start process 0 with the same "
                    f"JAX_COORDINATOR_ADDRESS, or raise --join-timeout") from None
            time.sleep(0.2)
    connection.setblocking(True)
    _send(connection, hello)
    answer = _read(connection, deadline)
    if isinstance(answer, dict) and answer.get("go") is True:
        return connection
    connection.close()
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        raise DifprogError(answer["error"].splitlines()[0])
    raise DifprogError(f"{owner}: process {hello['process']} of {hello['processes']} got no "
                       f"answer from the coordinator at {where} within {timeout:g} s")


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _read(connection: socket.socket, deadline: float) -> object:
    """One line of JSON from `connection` before `deadline`; None when none came."""
    received = b""
    while not received.endswith(b"\n") and len(received) < 1 << 20:
        connection.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = connection.recv(4096)
        except OSError:
            return None
        if not chunk:
            return None
        received += chunk
    connection.settimeout(None)
    try:
        return json.loads(received)
    except ValueError:
        return None


def _watch(peers: dict[int, socket.socket]) -> None:
    """Stops this process when another one ends without saying it is done."""
    with selectors.DefaultSelector() as selector:
        for other, connection in peers.items():
            selector.register(connection, selectors.EVENT_READ, other)
        while selector.get_map() and not _left.is_set():
            for key, _ in selector.select(timeout=1.0):
                with _reading:  # `departed` must not see the end of a stream whose done is read
                    try:
                        received = key.fileobj.recv(4096)
                    except OSError:
                        received = b""
                    if b"done" in received:
                        _finished.add(key.data)
                if b"done" in received:
                    selector.unregister(key.fileobj)
                elif not received and not _left.is_set():
                    interrupts.stop(_stopped(key.data), 1)
