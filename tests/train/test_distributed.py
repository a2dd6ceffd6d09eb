"""Multi-process training on this machine: `difprog train --distributed` in 2 processes of 2 CPU
devices each, joined by jax.distributed over localhost (gloo collectives), as the README tells a
cluster to run it: it matches a 1-process 4-device run, only process 0 writes, and after one
process is killed mid-epoch the restart of both ends with the uninterrupted run's bytes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from difprog import checkpoint

ARGS = ["train", "--model", "cnn", "--epochs", "2", "--no-progress"]
LAST = "checkpoint_0002.safetensors"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, *, processes=2, kill_at=None):
    """The processes of one run, each `difprog train --distributed --devices 2` with the
    README's variables; `kill_at` ({process: kill point}) SIGKILLs a process at that point."""
    port, started = _free_port(), []
    for index in range(processes):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(index)}
        if kill_at and index in kill_at:
            env["DIFPROG_TEST_KILL_AT"] = kill_at[index]
        started.append(subprocess.Popen(
            [sys.executable, "-m", "difprog.cli", *ARGS, "--distributed", "--devices", "2",
             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    return started


def _finish(processes, timeout=300):
    results = [p.communicate(timeout=timeout) for p in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-2000:]
    return results


def _leaves(path):
    return jax.tree.leaves(checkpoint.load(path)[0])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    return out, _finish(_start(out))


@pytest.mark.slow
def test_two_processes_match_one_process_of_four_devices(two_processes, tmp_path):
    out, results = two_processes
    for stdout, _ in results:
        assert "after 2 epochs" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_0001.safetensors", LAST, "metrics.json"]  # one writer, no temporaries
    single = subprocess.run([sys.executable, "-m", "difprog.cli", *ARGS, "--devices", "4",
                             "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert single.returncode == 0, single.stderr
    gaps = [float(np.max(np.abs(a - b))) for a, b in
            zip(_leaves(out / LAST), _leaves(tmp_path / LAST), strict=True)]
    assert max(gaps) < 2e-5, gaps  # measured 1.0e-5 (Adam amplifies the reduction order)


@pytest.mark.slow
def test_a_killed_process_and_the_restart_of_both_end_with_the_same_bytes(two_processes,
                                                                         tmp_path):
    out, _ = two_processes
    process_0, process_1 = _start(tmp_path, kill_at={0: "step:55"})  # mid-epoch 2 (45 a epoch)
    process_0.communicate(timeout=300)
    assert process_0.returncode == -signal.SIGKILL
    process_1.send_signal(signal.SIGKILL)  # it waits on a collective with the dead process
    process_1.communicate(timeout=60)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == [
        "checkpoint_0001.safetensors"]
    results = _finish(_start(tmp_path))
    assert any("resuming from" in err for _, err in results)
    assert (tmp_path / LAST).read_bytes() == (out / LAST).read_bytes()


def test_distributed_variables_must_be_complete_and_valid(tmp_path):
    for env, message in (({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}, "missing JAX_NUM_PROCESSES"),
                         ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "two"}, "must be integers"),
                         ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "2"}, "from 0 to JAX_NUM_PROCESSES - 1 = 1")):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
        done = subprocess.run([sys.executable, "-m", "difprog.cli", *ARGS, "--distributed",
                               "--out", str(tmp_path)], env={**clean, **env}, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 1 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
