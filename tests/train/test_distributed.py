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
import time

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


def _start(out, *, processes=2, kill_at=None, ids=None, port=None, options=None):
    """The processes of one run, each `difprog train --distributed --devices 2` with the
    README's variables; `kill_at` ({process: kill point}) SIGKILLs a process at that point;
    `ids` (default 0..processes-1) the JAX_PROCESS_ID of each; `options` ({index: [...]})
    more options for some."""
    port, started = port or _free_port(), []
    for index, given in enumerate(range(processes) if ids is None else ids):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(given)}
        if kill_at and index in kill_at:
            env["DIFPROG_TEST_KILL_AT"] = kill_at[index]
        started.append(subprocess.Popen(
            [sys.executable, "-m", "difprog.cli", *ARGS, "--distributed", "--devices", "2",
             "--out", str(out), *(options or {}).get(index, [])], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
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
    _, stderr = process_1.communicate(timeout=30)  # not left waiting on a collective
    assert process_1.returncode == 1
    assert stderr.strip().splitlines()[-1] == ("difprog train: process 0 of 2 stopped before "
                                               "the run ended; stopping process 1 too")
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
                           "JAX_PROCESS_ID": "2"}, "from 0 to JAX_NUM_PROCESSES - 1 = 1"),
                         ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:0", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "0"}, "a port from 1 to 65535"),
                         ({"JAX_COORDINATOR_ADDRESS": "localhost", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "0"}, "must be HOST:PORT"),
                         ({"JAX_COORDINATOR_ADDRESS": "no-such-host.invalid:4000",
                           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
                          "cannot resolve the coordinator's host 'no-such-host.invalid'")):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
        done = subprocess.run([sys.executable, "-m", "difprog.cli", *ARGS, "--distributed",
                               "--out", str(tmp_path)], env={**clean, **env}, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 1 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def _last_lines(processes, timeout=60):
    """(exit status, last line of stderr) of each process, once all have ended."""
    ended = []
    for process in processes:
        _, stderr = process.communicate(timeout=timeout)
        assert len(stderr.strip().splitlines()) == 1, (process.args, process.returncode, stderr)
        ended.append((process.returncode, stderr.strip()))
    return ended


@pytest.mark.slow
def test_starts_that_cannot_run_end_every_process_in_one_line(tmp_path):
    """A missing peer (either side), two processes with one id and other settings, all at once:
    each process ends with status 1 and the reason, within the --join-timeout, before any
    training."""
    wait = ["--join-timeout", "3"]
    began = time.monotonic()
    runs = {"no peer": _start(tmp_path / "a", ids=[0], options={0: wait}),
            "no coordinator": _start(tmp_path / "b", ids=[1], options={0: wait}),
            "one id twice": _start(tmp_path / "c", processes=3, ids=[0, 1, 1]),
            "other epochs": _start(tmp_path / "d", options={1: ["--epochs", "3"]})}
    ended = {name: _last_lines(processes) for name, processes in runs.items()}
    assert time.monotonic() - began < 90
    expected = {
        "no peer": ["process 1 of 2 did not arrive at the coordinator"],
        "no coordinator": ["process 1 of 2 found no coordinator at 127.0.0.1:"],
        "one id twice": ["two processes have JAX_PROCESS_ID=1"] * 3,
        "other epochs": ["process 1 was started with other settings than process 0: epochs 3 "
                         "(process 0: 2)"] * 2}
    for name, wanted in expected.items():
        assert [status for status, _ in ended[name]] == [1] * len(wanted), ended[name]
        for (_, line), text in zip(ended[name], wanted, strict=True):
            assert line.startswith("difprog train: --distributed: ") and text in line, line
    assert not [path for name in "abcd" for path in (tmp_path / name).glob("checkpoint_*")]


@pytest.mark.slow
def test_sigterm_to_one_process_ends_all_of_them_promptly(tmp_path):
    processes = _start(tmp_path, options={0: ["--epochs", "30"], 1: ["--epochs", "30"]})
    deadline = time.monotonic() + 240
    while not (tmp_path / "checkpoint_0001.safetensors").exists():
        assert time.monotonic() < deadline and processes[0].poll() is None
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGTERM)
    assert _last_lines(processes, timeout=30) == [
        (1, "difprog train: process 1 of 2 stopped before the run ended; stopping process 0 "
            "too"),
        (143, "difprog train: terminated")]
    assert not list(tmp_path.glob(".*"))  # no lock, no temporary
