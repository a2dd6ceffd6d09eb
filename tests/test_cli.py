"""The `difprog` command line: `check`, and every failure as one line on stderr with a non-zero
exit status (2 for usage errors), never a traceback unless --debug asks for one."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

import difprog
from difprog import checkpoint, files
from difprog.cli import main


def test_check_prints_a_table_and_succeeds(capsys):
    assert main(["check", "relu", "softmax_cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "reverse" in out and "finite difference" in out and "second order" in out
    assert "relu" in out and "softmax_cross_entropy" in out
    assert "2 of 2 gates ok" in out


def test_check_rejects_unknown_gates(capsys):
    assert main(["check", "nope"]) == 2
    assert "unknown gate" in capsys.readouterr().err


def _fails_in_one_line(capsys, argv, status):
    """Runs `difprog argv`, checks its status and that stderr is one line; returns that line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["train", "--seed", "18446744073709551616"], "argument --seed: expected an integer from 0 "
                                                  "to 4294967295, got 18446744073709551616"),
    (["train", "--seed", "-1"], "argument --seed"),
    (["demo", "--seed", "4294967296"], "argument --seed"),
    (["visualize", "--checkpoint", "ck", "--seed", "-3"], "argument --seed"),
    (["check", "add", "--seed", "-1"], "argument --seed"),
    (["train", "--devices", "99999999999999"], "argument --devices: expected an integer from 1"),
    (["bench", "modes", "--sizes", "0"], "argument --sizes: expected an integer from 1"),
    (["bench", "modes", "--width", "-4"], "argument --width"),
    (["train", "--out", ""], "argument --out: the output directory must have a name"),
    (["train", "--epochs", "0"], "argument --epochs"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite positive number"),
    (["train", "--weight-decay", "-1"], "argument --weight-decay"),
    (["train", "--devices", "0"], "argument --devices"),
    (["visualize", "--checkpoint", "ck", "--steps", "0"], "argument --steps"),
    (["train", "--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required: COMMAND"),
])
def test_usage_errors_are_one_line_and_status_2(capsys, argv, message):
    err = _fails_in_one_line(capsys, argv, 2)
    assert message in err and "--help" in err


def test_an_output_directory_that_is_a_file_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    for command in (["train"], ["demo"], ["bench", "modes"],
                    ["visualize", "--checkpoint", "ck"], ["explain", "x", "--at", "x=1"]):
        err = _fails_in_one_line(capsys, [*command, "--out", str(tmp_path / "file")], 2)
        assert "is a file, not a directory" in err
    assert (tmp_path / "file").read_text() == "mine"


def test_an_output_directory_that_cannot_be_created_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    err = _fails_in_one_line(capsys, ["train", "--out", str(tmp_path / "file" / "run")], 1)
    assert err.startswith("difprog train: cannot create the output directory")


def test_a_held_output_directory_names_the_process(capsys, tmp_path):
    from difprog import rundir

    with rundir.own(tmp_path):
        err = _fails_in_one_line(capsys, ["train", "--model", "linear", "--out", str(tmp_path)], 1)
    assert f"is in use by process {os.getpid()}" in err


def test_distributed_without_a_cluster_names_the_variables_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
    done = subprocess.run([sys.executable, "-m", "difprog.cli", "train", "--distributed",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "jax.distributed.initialize() failed" in done.stderr
    assert "JAX_COORDINATOR_ADDRESS" in done.stderr and "JAX_PROCESS_ID" in done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch run of the linear model."""
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_visualize_refuses_a_nan_checkpoint_in_one_line(capsys, trained, tmp_path):
    tree, meta = checkpoint.load(trained / "checkpoint_0001.safetensors")
    tree["params"]["dense_0"]["w"][:] = np.nan
    checkpoint.save(tmp_path / "run" / "checkpoint_0001.safetensors", tree, metadata=meta,
                    allow_nonfinite=True)
    err = _fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path / "run"),
                                      "--out", str(tmp_path / "viz"), "--no-progress"], 1)
    assert "refusing to load" in err
    assert "'params/dense_0/w' holds 640 NaN and 0 infinite of 640 values" in err
    assert not (tmp_path / "viz").exists()


def test_visualize_of_an_empty_directory_or_a_missing_file_is_one_line(capsys, tmp_path):
    err = _fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path), "--out",
                                      str(tmp_path / "viz")], 1)
    assert "no checkpoint_<epoch>.safetensors in the directory" in err
    err = _fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path / "no.st"),
                                      "--out", str(tmp_path / "viz")], 1)
    assert "no file or directory" in err and "latest(" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(difprog.CheckpointError, match="no file or directory"):
        main(["--debug", "visualize", "--checkpoint", str(tmp_path / "no.st")])
    with pytest.raises(difprog.CheckpointError, match="no file or directory"):
        main(["visualize", "--checkpoint", str(tmp_path / "no.st"), "--debug"])


def test_a_full_disk_is_one_line_naming_the_file(capsys, trained, tmp_path, monkeypatch):
    def full(handle, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", full)
    err = _fails_in_one_line(capsys, ["train", "--model", "linear", "--epochs", "1", "--out",
                                      str(tmp_path), "--no-progress"], 1)
    assert f"could not write {str(tmp_path / 'checkpoint_0001.safetensors')!r}" in err
    assert "No space left on device" in err and "no checkpoint was written yet" in err
    assert sorted(os.listdir(tmp_path)) == []


def test_version_and_defaults_in_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"difprog {difprog.__version__} (jax ")
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("passes over the training set (default: 30)", "(default: 32;",
                  "(default: adam;", "peak learning rate (default: 0.002; gpt: 0.006)",
                  "(default: cosine;", "(default: difprog-train)", "(default: 0.0;",
                  "optimiser steps (default: 900)"):
        assert shown in text
    assert main(["visualize", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 512)" in text and "(default: fourier)" in text


def _progress_lines(capsys, monkeypatch, argv):
    """Runs `difprog argv` with stderr captured (not a terminal) and a progress line per update;
    returns stderr's lines, after checking it holds no carriage return (no tqdm bar)."""
    from difprog import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n"), err
    return err.splitlines()


def test_train_in_a_log_prints_the_compile_and_progress_lines(capsys, monkeypatch, tmp_path):
    lines = _progress_lines(capsys, monkeypatch, ["train", "--model", "linear", "--epochs", "1",
                                                  "--out", str(tmp_path)])
    compile_at = lines.index("compiling the train step...")
    steps = [i for i, line in enumerate(lines) if line.startswith("epoch 1/1: ")]
    summary = next(i for i, line in enumerate(lines) if line.startswith("epoch   1/1  loss"))
    assert len(steps) == 45 and compile_at < steps[0] < steps[-1] < summary, lines
    assert lines[steps[0]].startswith("epoch 1/1: 1/45 steps, loss ") and ", acc " in lines[steps[0]]
    assert lines[steps[-1]].startswith("epoch 1/1: 45/45 steps")
    assert lines.index("compiling the evaluation step...") < summary


def test_no_progress_silences_the_compile_and_progress_lines(capsys, tmp_path):
    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_visualize_in_a_log_prints_the_compile_and_progress_lines(capsys, monkeypatch, trained,
                                                                 tmp_path):
    lines = _progress_lines(capsys, monkeypatch, ["visualize", "--checkpoint", str(trained),
                                                  "--steps", "8", "--classes", "0", "1",
                                                  "--out", str(tmp_path)])
    assert lines[0] == "compiling the visualisation loop (8 steps a call)...", lines
    assert lines[1].startswith("visualizing ") and ": 8/8 steps, score " in lines[1], lines


def test_bench_modes_in_a_log_prints_a_line_before_each_point(capsys, monkeypatch, tmp_path):
    lines = _progress_lines(capsys, monkeypatch, ["bench", "modes", "--sizes", "1", "2",
                                                  "--repeats", "1", "--out", str(tmp_path)])
    assert lines == [f"point {i}/4: compiling and timing jacfwd and jacrev at n={n}, m={m}..."
                     for i, (n, m) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)], 1)]


def test_a_piped_train_prints_the_compile_line_before_the_first_epoch(tmp_path):
    done = subprocess.run([sys.executable, "-m", "difprog.cli", "train", "--model", "linear",
                           "--epochs", "1", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=True)
    assert "\r" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "compiling the train step...", lines
    assert lines[-1].startswith("epoch   1/1  loss "), lines
    assert "test accuracy" in done.stdout
