"""`difprog train --processes N` (difprog.launch): N processes of one run on this machine, joined
as by --distributed, each line they print prefixed with its process; a process that fails, or a
signal to the launcher, stops all of them, and none is left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from difprog import launch
from difprog.cli import options, train
from difprog.errors import ArgumentError, DifprogError
from tests.conftest import fails_in_one_line

# SIGINT as a shell gives it to a job in the foreground (SIG_DFL, kept across exec): pytest-xdist's
# workers ignore it, and a process keeps a SIGINT ignored when it started (difprog.interrupts)
TRAIN = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
         "signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
         "-m", "difprog.cli", "train", "--model", "mlp", "--devices", "1", "--processes", "2"]
_PIDS = re.compile(r"process (\d+) is pid (\d+)")


def _parser() -> options.Parser:
    parser = options.Parser(prog="difprog train")
    train.arguments(parser)
    return parser


@pytest.mark.parametrize("argv, message", [
    (["train", "--processes", "2", "--distributed"],
     "difprog train: --processes N starts N processes with --distributed itself; leave "
     "--distributed out"),
    (["train", "--processes", "1"], "argument --processes: expected an integer from 2 to 64, "
                                    "got 1"),
    (["train", "--processes", "65"], "argument --processes: expected an integer from 2 to 64"),
])
def test_usage_errors_are_one_line_and_start_nothing(capsys, argv, message):
    assert message in fails_in_one_line(capsys, argv, 2)


def test_the_command_line_reads_back_to_the_same_options(tmp_path):
    parser = _parser()
    given = parser.parse_args(["--model", "mlp", "--data", "-odd name", "--lr", "1e-3",
                               "--epochs", "3", "--allow-changes", "--out", str(tmp_path / "a b"),
                               "--seed", "7", "--processes", "3", "--shard", "params"])
    line = launch.command_line(parser, given, leave={"processes"})
    assert "--processes=3" not in line and "--allow-changes" in line
    assert "--data=-odd name" in line and not any(o.startswith("--batch-size") for o in line)
    assert vars(parser.parse_args(line)) == {**vars(given), "processes": None}


def test_run_refuses_a_count_it_cannot_start():
    with pytest.raises(ArgumentError, match="launch.run: processes must be an int from 2 to 64"):
        launch.run(["train"], 1)


def _launch(out, *more: str, env=None) -> tuple[subprocess.Popen, dict[int, int]]:
    """The launcher of a 2-process run into `out`, and its processes' pids (its first line)."""
    process = subprocess.Popen([*TRAIN, "--out", str(out), *more], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    timer = threading.Timer(240, process.kill)  # a hung test fails instead of waiting forever
    timer.daemon = True
    timer.start()
    first = process.stderr.readline()
    pids = {int(k): int(pid) for k, pid in _PIDS.findall(first)}
    assert sorted(pids) == [0, 1], first
    return process, pids


def _running(pids: dict[int, int]) -> list[int]:
    """The pids of those processes that still exist (zombies included)."""
    alive = []
    for pid in pids.values():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def _after_first_epoch(process: subprocess.Popen, out) -> None:
    """Waits until the run has written its first checkpoint (training on, in both processes)."""
    deadline = time.monotonic() + 180
    while not (out / "checkpoint_0001.safetensors").exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)


@pytest.mark.slow
def test_two_processes_train_one_run_and_their_lines_are_prefixed(tmp_path):
    stale = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "3",
             "JAX_PROCESS_ID": "2"}  # another run's: the launcher's own replace them
    process, pids = _launch(tmp_path, "--epochs", "1", env={**os.environ, **stale})
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    for k in (0, 1):
        assert re.search(rf"^\[process {k}\] test accuracy .* on digits with the mlp model "
                         rf"after 1 epochs$", stdout, re.MULTILINE), stdout
    assert all(line.startswith("[process ") for line in stdout.splitlines())
    assert (tmp_path / "checkpoint_0001.safetensors").is_file()
    assert not _running(pids)


@pytest.mark.slow
def test_a_killed_process_stops_the_others_and_the_launcher_names_it(tmp_path):
    process, pids = _launch(tmp_path, "--epochs", "200")
    _after_first_epoch(process, tmp_path)
    killed = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - killed < 20
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        "difprog train: process 1 of 2 was killed by SIGKILL; stopped the others")
    assert not _running(pids)


@pytest.mark.slow
@pytest.mark.parametrize("number, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_a_signal_to_the_launcher_ends_it_and_every_process(tmp_path, number, status, word):
    process, pids = _launch(tmp_path, "--epochs", "200")
    _after_first_epoch(process, tmp_path)
    sent = time.monotonic()
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 20
    assert (process.returncode, stderr.strip().splitlines()[-1]) == (
        status, f"difprog train: {word}"), stderr[-3000:]
    assert "[process 0] " in stderr and "[process 1] " in stderr  # their last words
    assert not _running(pids)
    assert not list(tmp_path.glob(".*"))  # process 0 removed its lock: it was not SIGKILLed


@pytest.mark.slow
def test_processes_that_fail_at_once_are_reported_by_run(capsys):
    with pytest.raises(DifprogError, match=r"^process [01] of 2 exited with status 2; stopped "
                                           r"the others$") as failed:
        launch.run(["train", "--bogus"], 2, grace=1)
    err = capsys.readouterr().err.splitlines()
    assert _PIDS.findall(err[0]) and err[0].startswith("difprog train: process 0 is pid ")
    k = str(failed.value).split()[1]  # the other may have been stopped before its error
    assert f"[process {k}] difprog: error: unrecognized arguments: --bogus (see difprog --help)" \
        in err, err
