"""Multi-process training on this machine: `difprog train --distributed` in 2 processes of 2 CPU
devices each, joined by jax.distributed over localhost (gloo collectives), as the README tells a
cluster to run it: it matches a 1-process 4-device run, only process 0 writes, and after one
process is killed mid-epoch the restart of both ends with the uninterrupted run's bytes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from difprog import checkpoint, lm
from difprog.cli.trained import checkpoint_file
from tests.train.cluster_runs import CNN, finish, gap, run_alone, start

LAST = "checkpoint_0002.safetensors"
SHARDED = "checkpoint_0002.shards"
SHARD = ["--shard", "params"]
GPT = ["train", "--model", "gpt", "--steps", "10", "--layers", "1", "--heads", "2", "--features",
       "32", "--context", "32", "--eval-every", "10", "--batch-size", "16", "--no-progress"]
MLP = ["train", "--model", "mlp", "--epochs", "1", "--no-progress"]
PIECES = ["index.json", "process_00000-of-00002.safetensors", "process_00001-of-00002.safetensors"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    return out, finish(start(out))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """2 processes of 2 devices with --shard params: params split over all 4 devices."""
    out = tmp_path_factory.mktemp("sharded")
    return out, finish(start(out, extra=SHARD))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same training in one process of 4 devices (replicated)."""
    out = tmp_path_factory.mktemp("one")
    run_alone(out, CNN, "--devices", "4")
    return out


@pytest.mark.slow
def test_two_processes_match_one_process_of_four_devices(two_processes, one_process):
    out, results = two_processes
    for stdout, _ in results:
        assert "after 2 epochs" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_0001.safetensors", LAST, "metrics.json"]  # one writer, no temporaries
    assert gap(out / LAST, one_process / LAST) < 2e-5  # measured 1.0e-5 (Adam amplifies the
    # reduction order)


@pytest.mark.slow
def test_params_sharded_over_two_processes_match_one_process(sharded, one_process):
    out, results = sharded
    for stdout, _ in results:
        assert "after 2 epochs" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_0001.shards", SHARDED, "metrics.json"]  # no partial directory left
    assert sorted(p.name for p in (out / SHARDED).iterdir()) == PIECES
    whole = (one_process / LAST).stat().st_size
    for name in PIECES[1:]:  # each process wrote about half: its own pieces, not a gather
        assert 0.35 * whole < (out / SHARDED / name).stat().st_size < 0.65 * whole
    assert gap(out / SHARDED, one_process / LAST) < 2e-5  # measured 3.4e-6
    assert checkpoint_file(out) == checkpoint_file(out / SHARDED) == out / SHARDED  # --checkpoint


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_on_one_process_and_the_reverse(sharded, one_process,
                                                                     tmp_path):
    out, _ = sharded
    alone, together = tmp_path / "alone", tmp_path / "together"
    shutil.copytree(out / "checkpoint_0001.shards", alone / "checkpoint_0001.shards")
    done = run_alone(alone, CNN, "--devices", "4")  # replicated on the devices of one process
    assert "resuming from" in done.stderr and "checkpoint_0001.shards" in done.stderr
    assert gap(alone / LAST, one_process / LAST) < 2e-5
    together.mkdir()
    shutil.copy(one_process / "checkpoint_0001.safetensors", together)
    results = finish(start(together, extra=SHARD))
    assert any("checkpoint_0001.safetensors" in err for _, err in results)
    assert gap(together / SHARDED, out / SHARDED) < 2e-5


@pytest.mark.slow
def test_a_killed_sharded_process_and_the_restart_of_both_end_with_the_same_bytes(sharded,
                                                                                 tmp_path):
    out, _ = sharded
    process_0, process_1 = start(tmp_path, extra=SHARD, kill_at={1: "step:55"})  # mid-epoch 2
    process_1.communicate(timeout=300)
    assert process_1.returncode == -signal.SIGKILL
    _, stderr = process_0.communicate(timeout=30)
    assert process_0.returncode == 1
    assert stderr.strip().splitlines()[-1] == ("difprog train: process 1 of 2 stopped before "
                                               "the run ended; stopping process 0 too")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_0001.shards",
                                                          "metrics.json"]
    results = finish(start(tmp_path, extra=SHARD))
    assert any("resuming from" in err for _, err in results)
    for name in PIECES:  # the same values, split the same way: the same bytes
        assert (tmp_path / SHARDED / name).read_bytes() == (out / SHARDED / name).read_bytes()


@pytest.mark.slow
def test_sharded_processes_that_do_not_share_the_output_directory_stop_in_one_line(tmp_path):
    processes = start(tmp_path / "a", args=MLP, extra=SHARD,
                      options={1: ["--out", str(tmp_path / "b")]})  # as on two hosts' disks
    (status_0, line_0), (status_1, line_1) = _last_lines(processes, timeout=240)
    assert (status_0, status_1) == (1, 1)
    assert line_0 == (
        f"difprog train: the sharded checkpoint '{tmp_path / 'a' / 'checkpoint_0001.shards'}' is "
        f"incomplete: process_00001-of-00002.safetensors was written, but process 0 cannot see "
        f"it in '{tmp_path / 'a' / '.checkpoint_0001.shards.partial'}'; every process must "
        f"write to the same directory (shared storage, such as NFS)")
    assert line_1 in (  # process 1 hears of it from the save, or sees process 0 end first
        f"difprog train: process 0 could not complete the sharded checkpoint "
        f"'{tmp_path / 'b' / 'checkpoint_0001.shards'}' (its own error says why)",
        "difprog train: process 0 of 2 stopped before the run ended; stopping process 1 too")
    assert checkpoint.numbered(tmp_path / "a") == []


@pytest.mark.slow
def test_the_language_model_sharded_over_two_processes_matches_one_process(tmp_path):
    finish(start(tmp_path / "two", args=GPT, extra=SHARD))
    run_alone(tmp_path / "one", GPT, "--devices", "4")
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoint_0010.shards").iterdir()) \
        == PIECES
    assert gap(tmp_path / "two" / "checkpoint_0010.shards",
               tmp_path / "one" / "checkpoint_0010.safetensors") < 2e-5  # 4.0e-6 after 20 steps
    assert lm.sample(tmp_path / "two" / "checkpoint_0010.shards", "def ", length=8,
                     seed=0).startswith("def ")


@pytest.mark.slow
def test_a_killed_process_and_the_restart_of_both_end_with_the_same_bytes(two_processes,
                                                                         tmp_path):
    out, _ = two_processes
    process_0, process_1 = start(tmp_path, kill_at={0: "step:55"})  # mid-epoch 2 (45 a epoch)
    process_0.communicate(timeout=300)
    assert process_0.returncode == -signal.SIGKILL
    _, stderr = process_1.communicate(timeout=30)  # not left waiting on a collective
    assert process_1.returncode == 1
    assert stderr.strip().splitlines()[-1] == ("difprog train: process 0 of 2 stopped before "
                                               "the run ended; stopping process 1 too")
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == [
        "checkpoint_0001.safetensors"]
    results = finish(start(tmp_path))
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
        done = subprocess.run([sys.executable, "-m", "difprog.cli", *CNN, "--distributed",
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
    runs = {"no peer": start(tmp_path / "a", ids=[0], options={0: wait}),
            "no coordinator": start(tmp_path / "b", ids=[1], options={0: wait}),
            "one id twice": start(tmp_path / "c", processes=3, ids=[0, 1, 1]),
            "other epochs": start(tmp_path / "d", options={1: ["--epochs", "3"]})}
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
    processes = start(tmp_path, options={0: ["--epochs", "30"], 1: ["--epochs", "30"]})
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
