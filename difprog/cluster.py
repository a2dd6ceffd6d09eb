"""Joining a cluster of processes, and making CPU devices, before JAX starts.

`start_devices(devices, distributed)` does what `difprog train --devices N --distributed` does
first: it makes N CPU devices in this process (N > 1) and, with `distributed`, calls
`join()`: jax.distributed.initialize with the coordinator, process count and id from
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (or those JAX detects in a cluster
such as SLURM or Open MPI), CPU devices talking through gloo. Call it before anything asks JAX
for its devices.

Example (on every host, with the three variables set):
    >>> from difprog import cluster
    >>> cluster.start_devices(2, distributed=True)
"""

from __future__ import annotations

import os

import jax

from difprog import arguments
from difprog.errors import DifprogError

__all__ = ["VARIABLES", "join", "start_devices"]

VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_DESCRIBED = "JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES " \
             "and JAX_PROCESS_ID"


def start_devices(devices: int | None = None, distributed: bool = False, *,
                  owner: str = "cluster.start_devices") -> None:
    """Makes `devices` CPU devices in this process (when more than 1) and, with `distributed`,
    joins the cluster (see `join`); both before JAX starts.

    Args:
        devices: CPU devices of this process, from 1 to 1024, or None (JAX's default).
        distributed: call `join()` too.
        owner: what error messages start with (the command line passes '--distributed').
    """
    if devices is not None:
        devices = arguments.integer("cluster.start_devices", "devices", devices, minimum=1,
                                    maximum=1024)
    distributed = arguments.flag("cluster.start_devices", "distributed", distributed)
    if devices and devices > 1:
        jax.config.update("jax_num_cpu_devices", devices)
    if distributed:
        join(owner=owner)


def join(*, owner: str = "cluster.join") -> None:
    """jax.distributed.initialize with the coordinator, process count and id that
    JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID give, or those JAX detects
    in a cluster (SLURM, Open MPI...); CPU devices talk through gloo.

    Raises DifprogError, its message starting with `owner`, when only some of the variables
    are set, when they are not integers in range, or when jax.distributed.initialize fails.
    """
    settings = _settings(owner)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**settings)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DifprogError(
            f"{owner}: jax.distributed.initialize() failed ({first}); run under a "
            f"cluster JAX detects (such as SLURM or Open MPI) or set "
            f"{_DESCRIBED} on every host") from error


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
