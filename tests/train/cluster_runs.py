"""Runs of `difprog train` in several local processes joined by jax.distributed, as the README
tells a cluster to start them (the three JAX_* variables on each), for the tests of
multi-process training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax

from difprog import checkpoint

CNN = ["train", "--model", "cnn", "--epochs", "2", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out, *, args=CNN, extra=(), processes=2, kill_at=None, ids=None, port=None,
          options=None):
    """The processes of one run, each `difprog <args> <extra> --distributed --devices 2` with
    the README's variables; `kill_at` ({process: kill point}) SIGKILLs a process at that point;
    `ids` (default 0..processes-1) the JAX_PROCESS_ID of each; `options` ({index: [...]})
    more options for some."""
    port, started = port or free_port(), []
    for index, given in enumerate(range(processes) if ids is None else ids):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(given)}
        if kill_at and index in kill_at:
            env["DIFPROG_TEST_KILL_AT"] = kill_at[index]
        started.append(subprocess.Popen(
            [sys.executable, "-m", "difprog.cli", *args, *extra, "--distributed", "--devices", "2",
             "--out", str(out), *(options or {}).get(index, [])], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return started


def finish(processes, timeout=300):
    """(stdout, stderr) of each process, once all have ended with status 0."""
    results = [p.communicate(timeout=timeout) for p in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-2000:]
    return results


def run_alone(out, args, *options):
    """`difprog <args> <options> --out OUT` in one process, which must succeed."""
    done = subprocess.run([sys.executable, "-m", "difprog.cli", *args, *options, "--out",
                           str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def leaves(path):
    return jax.tree.leaves(checkpoint.load(path)[0])


def gap(path_a, path_b) -> float:
    """The largest difference between the arrays of two checkpoints of one model."""
    return max(float(abs(a - b).max()) for a, b in
               zip(leaves(path_a), leaves(path_b), strict=True))
