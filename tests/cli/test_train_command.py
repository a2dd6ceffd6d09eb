"""`difprog train`: its output directory (made, owned, a full disk), --distributed without a
cluster, and its compile and progress lines in a log or silenced."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from difprog import files
from difprog.cli import main
from tests.conftest import fails_in_one_line, progress_lines


def test_an_output_directory_that_cannot_be_created_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    err = fails_in_one_line(capsys, ["train", "--out", str(tmp_path / "file" / "run")], 1)
    assert err.startswith("difprog train: cannot create the output directory")


def test_a_held_output_directory_names_the_process(capsys, tmp_path):
    from difprog import rundir

    with rundir.own(tmp_path):
        err = fails_in_one_line(capsys, ["train", "--model", "linear", "--out", str(tmp_path)], 1)
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


def test_a_full_disk_is_one_line_naming_the_file(capsys, linear_run, tmp_path, monkeypatch):
    def full(handle, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", full)
    err = fails_in_one_line(capsys, ["train", "--model", "linear", "--epochs", "1", "--out",
                                     str(tmp_path), "--no-progress"], 1)
    assert f"could not write {str(tmp_path / 'checkpoint_0001.safetensors')!r}" in err
    assert "No space left on device" in err and "no checkpoint was written yet" in err
    assert sorted(os.listdir(tmp_path)) == []


def test_train_in_a_log_prints_the_compile_and_progress_lines(capsys, monkeypatch, tmp_path):
    lines = progress_lines(capsys, monkeypatch, ["train", "--model", "linear", "--epochs", "1",
                                                 "--out", str(tmp_path)])
    compile_at = lines.index("compiling the train step...")
    steps = [i for i, line in enumerate(lines) if line.startswith("epoch 1/1: ")]
    summary = next(i for i, line in enumerate(lines) if line.startswith("epoch   1/1  loss"))
    assert len(steps) == 45 and compile_at < steps[0] < steps[-1] < summary, lines
    first = lines[steps[0]]
    assert first.startswith("epoch 1/1: 1/45 steps, loss ") and ", acc " in first
    assert lines[steps[-1]].startswith("epoch 1/1: 45/45 steps")
    assert lines.index("compiling the evaluation step...") < summary


def test_no_progress_silences_the_compile_and_progress_lines(capsys, tmp_path):
    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_a_piped_train_prints_the_compile_line_before_the_first_epoch(tmp_path):
    done = subprocess.run([sys.executable, "-m", "difprog.cli", "train", "--model", "linear",
                           "--epochs", "1", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=True)
    assert "\r" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "compiling the train step...", lines
    assert lines[-1].startswith("epoch   1/1  loss "), lines
    assert "test accuracy" in done.stdout


def test_train_on_a_directory_of_idx_files_and_visualize_what_it_wrote(capsys, tmp_path):
    """--data DIR trains on MNIST-format files; the checkpoint records the directory, so that
    visualize finds the data again; two names for the data, or a name that is neither a data
    set nor a directory, are one line."""
    from tests.test_download import _synthetic

    _synthetic(tmp_path / "tiny", count=40)
    assert main(["train", "--model", "linear", "--data", str(tmp_path / "tiny"), "--epochs",
                 "1", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert "on " + str(tmp_path / "tiny") in capsys.readouterr().out
    assert main(["visualize", "--checkpoint", str(tmp_path / "run"), "--steps", "2",
                 "--out", str(tmp_path / "pictures")]) == 0
    assert (tmp_path / "pictures" / "classes.png").exists()
    capsys.readouterr()
    line = fails_in_one_line(capsys, ["train", "--data", "fashion-mnist", "--dataset",
                                      "digits", "--out", str(tmp_path / "x")], 2)
    assert "--data fashion-mnist and --dataset digits name two data sets" in line
    line = fails_in_one_line(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out",
                                      str(tmp_path / "y")], 1)
    assert "unknown data set" in line and "a directory of idx files" in line


def test_fashion_mnist_trains_six_epochs_unless_epochs_says_otherwise(monkeypatch, tmp_path):
    import difprog.train
    from difprog import data

    configs = []

    def record(model, dataset, config, **kwargs):  # stands in for fit: keeps the config, stops
        configs.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(difprog.train, "fit", record)
    monkeypatch.setattr(data, "load", lambda name: data.digits())
    for extra, epochs in ((["--data", "fashion-mnist"], 6),
                          (["--data", "fashion-mnist", "--epochs", "2"], 2), ([], 30)):
        calls = len(configs)
        with pytest.raises(SystemExit):
            main(["train", "--out", str(tmp_path / str(calls)), *extra])
        assert len(configs) == calls + 1 and configs[-1].epochs == epochs
