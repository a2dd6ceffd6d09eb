"""Joining a cluster of processes, and making CPU devices, before JAX starts.

`start_devices(devices, distributed)` does what `difprog train --devices N --distributed` does
first: it makes N CPU devices in this process (N > 1) and, with `distributed`, calls
`join()`: jax.distributed.initialize with the coordinator, process count and id from
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (or those JAX detects in a cluster
such as SLURM or Open MPI), CPU devices talking through gloo. Call it before anything asks JAX
for its devices. With the variables set, the processes first meet through `difprog.rendezvous`
(a bounded wait, their options compared, a process that ends early stopping the others).

Example (on every host, with the three variables set):
    >>> from difprog import cluster
    >>> cluster.start_devices(2, distributed=True)
"""

from __future__ import annotations

import math
import os

import jax

from difprog import arguments, interrupts, rendezvous
from difprog.errors import DifprogError

__all__ = ["JOIN_TIMEOUT", "VARIABLES", "join", "leave", "start_devices"]

JOIN_TIMEOUT = 120.0  # seconds each process waits for the others (--join-timeout)
VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_DESCRIBED = "JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES " \
             "and JAX_PROCESS_ID"


def start_devices(devices: int | None = None, distributed: bool = False, *,
                  owner: str = "cluster.start_devices", timeout: float = JOIN_TIMEOUT,
                  settings: dict | None = None) -> None:
    """Makes `devices` CPU devices in this process (when more than 1) and, with `distributed`,
    joins the cluster (see `join`); both before JAX starts.

    Args:
        devices: CPU devices of this process, from 1 to 1024, or None (JAX's default).
        distributed: call `join()` too.
        owner: what error messages start with (the command line passes '--distributed').
        timeout, settings: as `join` takes them.
    """
    if devices is not None:
        devices = arguments.integer("cluster.start_devices", "devices", devices, minimum=1,
                                    maximum=1024)
    distributed = arguments.flag("cluster.start_devices", "distributed", distributed)
    if devices and devices > 1:
        jax.config.update("jax_num_cpu_devices", devices)
    if distributed:
        join(owner=owner, timeout=timeout, settings=settings)


def join(*, owner: str = "cluster.join", timeout: float = JOIN_TIMEOUT,
         settings: dict | None = None) -> None:
    """jax.distributed.initialize with the coordinator, process count and id that
    JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID give, or those JAX detects
    in a cluster (SLURM, Open MPI...); CPU devices talk through gloo.

    With the variables set, the processes first meet (`difprog.rendezvous`): each waits at most
    `timeout` seconds for the others, all must have the same `settings` (a JSON-able dict, such
    as the command line's options), and from then on a process that ends early stops the others.

    Raises DifprogError, its message starting with `owner`, when only some of the variables
    are set, when they are not valid, when a process is missing after `timeout` seconds or
    disagrees, or when jax.distributed.initialize fails.
    """
    timeout = arguments.real("cluster.join", "timeout", timeout, minimum=1)
    given = _settings(owner)
    if given:
        host, port = _address(owner, given["coordinator_address"])
        rendezvous.meet(host, port, given["num_processes"], given["process_id"],
                        settings or {}, timeout, owner=owner)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**given, initialization_timeout=math.ceil(timeout))
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DifprogError(
            f"{owner}: jax.distributed.initialize() failed ({first}); run under a "
            f"cluster JAX detects (such as SLURM or Open MPI) or set "
            f"{_DESCRIBED} on every host") from error
    interrupts.reassert()  # JAX's preemption notice takes SIGTERM


def leave(done: bool = True) -> None:
    """Stops watching the other processes of the run; with `done` (this process ended as it
    should) they are told first, so that they do not stop. Runs at exit by itself."""
    rendezvous.leave(done)


def _address(owner: str, address: str) -> tuple[str, int]:
    """(host, port) of JAX_COORDINATOR_ADDRESS ('host:port', '[v6 address]:port')."""
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DifprogError(f"{owner}: JAX_COORDINATOR_ADDRESS must be HOST:PORT with a port "
                           f"from 1 to 65535 (process 0 listens there), got {address!r}")
    return host, int(port)


def _settings(owner: str) -> dict:
    """jax.distributed.initialize's arguments from the environment: all three, or none."""
    given = {name: os.environ[name] for name in VARIABLES if os.environ.get(name)}
    if given and len(given) < len(VARIABLES):
        raise DifprogError(f"{owner}: set all of {_DESCRIBED}, or none (to let JAX detect the "
                           f"cluster); missing "
                           f"{', '.join(n for n in VARIABLES if n not in given)}")
    if not given:
        return {}
    try:
        count, index = int(given["JAX_NUM_PROCESSES"]), int(given["JAX_PROCESS_ID"])
    except ValueError:
        raise DifprogError(f"{owner}: JAX_NUM_PROCESSES and JAX_PROCESS_ID must be "
                           f"integers, got {given['JAX_NUM_PROCESSES']!r} and "
                           f"{given['JAX_PROCESS_ID']!r}") from None
    if not 0 <= index < count:
        raise DifprogError(f"{owner}: JAX_PROCESS_ID must be from 0 to "
                           f"JAX_NUM_PROCESSES - 1 = {count - 1}, got {index}")
    return {"coordinator_address": given["JAX_COORDINATOR_ADDRESS"], "num_processes": count,
            "process_id": index}
