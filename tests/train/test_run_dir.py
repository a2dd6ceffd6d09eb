"""A training run's output directory: one owner at a time, checked before any compute,
temporaries removed only when their writer is gone, resumes refused when the settings differ,
no NaN saved or resumed, pruning by epoch number, and a full disk that loses nothing."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from difprog import checkpoint, files, layers, rundir
from difprog.errors import (
    CheckpointError,
    ConfigMismatchError,
    DifprogError,
    RunDirectoryError,
    WriteError,
)
from difprog.train import TrainConfig, fit
from tests.conftest import digits_subset, fails_in_one_line


@pytest.fixture(scope="module")
def tiny():
    """200 digits for training and 50 for testing: a run takes well under a second."""
    return digits_subset("digits-tiny", 200, 50)


def _model(hidden=16):
    return layers.serial(layers.Flatten(), layers.Dense(hidden), layers.Relu(), layers.Dense(10))


CONFIG = TrainConfig(epochs=2, batch_size=100, learning_rate=5e-3)


def _dead_pid():
    """The pid of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


class _NoCompute(layers.Layer):
    """A model that fails the test if fit computes anything with it."""

    def params(self, x):
        raise AssertionError("fit computed before checking its output directory")

    def forward(self, params, x, ctx):
        raise AssertionError("fit computed before checking its output directory")


# ---- ownership ----------------------------------------------------------------------------

def test_a_second_run_on_a_held_directory_is_refused_naming_the_holder(tiny, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from difprog import rundir\n"
         "with rundir.own(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()",
         str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunDirectoryError, match=rf"in use by process {holder.pid} on host "):
            fit(_NoCompute(), tiny, CONFIG, out=tmp_path, progress=False)
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert _listing(tmp_path) == [], "the holder removes its lock file when it is done"
    fit(_model(), tiny, CONFIG, out=tmp_path, progress=False)
    assert _listing(tmp_path) == ["checkpoint_0001.safetensors", "checkpoint_0002.safetensors",
                                  "metrics.json"]


def test_the_lock_names_this_process_and_is_exclusive_within_it(tiny, tmp_path):
    with rundir.own(tmp_path) as run:
        info = json.loads((tmp_path / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == files.host()
        with pytest.raises(RunDirectoryError, match=rf"process {os.getpid()} .*\(this process\)"):
            fit(_NoCompute(), tiny, CONFIG, out=tmp_path, progress=False)
        result = fit(_model(), tiny, CONFIG, out=run, progress=False)  # the owner passes it on
    assert result.history[-1]["epoch"] == 2
    assert not (tmp_path / ".lock").exists()


def test_only_temporaries_of_writers_that_are_gone_are_removed(tmp_path):
    here, dead = files.host(), _dead_pid()
    names = {
        f".checkpoint_0002.safetensors.tmp-{here}-{dead}": False,  # a killed run here: removed
        f".metrics.json.tmp-{dead}": False,  # an older difprog's name (pid only): removed
        f".checkpoint_0003.safetensors.tmp-{here}-{os.getpid()}": True,  # alive: kept
        f".checkpoint_0004.safetensors.tmp-{here}-1": True,  # pid 1 is alive: kept
        f".metrics.json.tmp-otherhost-{dead}": True,  # cannot tell on another host: kept
        ".notes.txt": True,  # not a temporary
    }
    for name in names:
        (tmp_path / name).write_text("partial")
    with rundir.own(tmp_path):
        pass
    assert _listing(tmp_path) == sorted(name for name, kept in names.items() if kept)


def test_a_failed_write_names_its_temporary_after_host_and_pid(tmp_path):
    temporary = files.temporary_path(tmp_path / "metrics.json")
    assert temporary.name == f".metrics.json.tmp-{files.host()}-{os.getpid()}"
    assert files.temporary_owner(temporary) == (files.host(), os.getpid())
    assert files.temporary_owner(tmp_path / "metrics.json") is None


# ---- the output directory is checked before any compute ------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda tmp: "", r"is '' \(an empty name\)"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is a file, not a directory"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "run",
     "cannot create the output directory"),
    (lambda tmp: tmp / ("a" * 300), "File name too long"),
])
def test_unusable_output_directories_are_refused_before_any_compute(tiny, tmp_path, make,
                                                                   message):
    out = make(tmp_path)
    with pytest.raises(RunDirectoryError, match=message) as error:
        fit(_NoCompute(), tiny, CONFIG, out=out, progress=False)
    assert isinstance(error.value, OSError) and isinstance(error.value, DifprogError)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("argv", [["demo"], ["train"], ["visualize", "--checkpoint", "c"],
                                  ["attribute", "--checkpoint", "c"], ["bench", "modes"],
                                  ["explain", "x * 2", "--at", "x=1"]])
def test_an_out_the_system_cannot_use_is_one_line_from_every_command(capsys, tmp_path, argv):
    """A name too long for the file system (or a parent that cannot be entered) is a usage
    error naming --out, not a traceback."""
    line = fails_in_one_line(capsys, [*argv, "--out", str(tmp_path / ("a" * 300))], 2)
    assert "argument --out: cannot use" in line and "File name too long" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_refused_before_any_compute(tiny, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(RunDirectoryError, match="not writable"):
        fit(_NoCompute(), tiny, CONFIG, out=tmp_path / "ro", progress=False)


# ---- a resume with other settings ----------------------------------------------------------

def test_a_resume_with_other_settings_is_refused_naming_every_difference(tiny, tmp_path):
    fit(_model(), tiny, CONFIG, out=tmp_path, progress=False)
    before = {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)}
    changed = dataclasses.replace(CONFIG, epochs=4, learning_rate=0.5, loss="hinge",
                                  optimizer="sgd", schedule="constant", batch_size=50,
                                  weight_decay=1e-4, seed=7)
    with pytest.raises(ConfigMismatchError) as error:
        fit(_model(), tiny, changed, out=tmp_path, progress=False)
    message = str(error.value)
    for difference in ("epochs: 2 in the checkpoint, 4 now",
                       "learning_rate: 0.005 in the checkpoint, 0.5 now",
                       "loss: 'cross_entropy' in the checkpoint, 'hinge' now",
                       "optimizer: 'adam' in the checkpoint, 'sgd' now",
                       "schedule: 'cosine' in the checkpoint, 'constant' now",
                       "batch_size: 100 in the checkpoint, 50 now",
                       "weight_decay: 0.0 in the checkpoint, 0.0001 now",
                       "seed: 0 in the checkpoint, 7 now"):
        assert difference in message
    assert "missing" not in message and "allow_changes=True" in message
    assert {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)} == before


def test_a_changed_optimizer_alone_is_a_setting_not_missing_keys(tiny, tmp_path):
    fit(_model(), tiny, CONFIG, out=tmp_path, progress=False)
    with pytest.raises(ConfigMismatchError, match=r"other settings than this run's: optimizer: "
                                                  r"'adam' in the checkpoint, 'momentum' now\. "):
        fit(_model(), tiny, dataclasses.replace(CONFIG, optimizer="momentum"), out=tmp_path,
            progress=False)


def test_a_changed_model_or_data_is_a_difference(tiny, tmp_path):
    fit(_model(), tiny, CONFIG, out=tmp_path, progress=False)
    with pytest.raises(ConfigMismatchError, match=r"model: '1,210 parameters in 4 arrays .* "
                                                  r"'2,410 parameters in 4 arrays"):
        fit(_model(32), tiny, CONFIG, out=tmp_path, progress=False)
    other = tiny._replace(y_train=np.roll(tiny.y_train, 1))
    with pytest.raises(ConfigMismatchError, match=r"data: 'digits-tiny: 200 train and 50 test "
                                                  r"examples \(sha256 [0-9a-f]+\)' in the"):
        fit(_model(), other, CONFIG, out=tmp_path, progress=False)


def test_devices_and_keep_checkpoints_may_change_on_resume(tiny, tmp_path):
    fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=1), out=tmp_path / "a",
        progress=False)
    fit(_model(), tiny, CONFIG, out=tmp_path / "b", progress=False)
    (tmp_path / "a" / "checkpoint_0001.safetensors").unlink()
    (tmp_path / "a" / "checkpoint_0001.safetensors").write_bytes(
        (tmp_path / "b" / "checkpoint_0001.safetensors").read_bytes())
    resumed = fit(_model(), tiny, dataclasses.replace(CONFIG, devices=1, keep_checkpoints=1),
                  out=tmp_path / "a", progress=False)
    assert resumed.resumed_from == 1
    assert _listing(tmp_path / "a") == ["checkpoint_0002.safetensors", "metrics.json"]


def test_allowed_changes_are_recorded_as_segments(tiny, tmp_path):
    fit(_model(), tiny, CONFIG, out=tmp_path, progress=False)
    longer = dataclasses.replace(CONFIG, epochs=4, learning_rate=1e-3)
    result = fit(_model(), tiny, longer, out=tmp_path, progress=False, allow_changes=True)
    assert result.resumed_from == 2 and [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first, second = metrics["segments"]
    assert first["epochs"] == [1, 2] and second["epochs"] == [3, 4]
    assert (first["config"]["epochs"], first["config"]["learning_rate"]) == (2, 5e-3)
    assert (second["config"]["epochs"], second["config"]["learning_rate"]) == (4, 1e-3)
    assert metrics["config"]["epochs"] == 4
    _, meta = checkpoint.load(tmp_path / "checkpoint_0004.safetensors")
    assert meta["segments"] == metrics["segments"]


# ---- non-finite params ---------------------------------------------------------------------

def test_nan_params_are_refused_on_save_and_load_naming_the_leaf(tmp_path):
    tree = {"params": {"dense_0": {"w": np.array([1.0, np.nan, np.inf], np.float32),
                                   "b": np.zeros(2, np.float32)}}}
    with pytest.raises(CheckpointError, match=r"refusing to save .*'params/dense_0/w' holds 1 "
                                              r"NaN and 1 infinite of 3 values"):
        checkpoint.save(tmp_path / "ck.safetensors", tree)
    assert _listing(tmp_path) == []
    path = checkpoint.save(tmp_path / "ck.safetensors", tree, allow_nonfinite=True)
    with pytest.raises(CheckpointError, match=r"refusing to load .*'params/dense_0/w' holds"):
        checkpoint.load(path)
    loaded, _ = checkpoint.load(path, allow_nonfinite=True)
    assert np.isnan(loaded["params"]["dense_0"]["w"][1])


def test_a_nan_checkpoint_is_not_resumed(tiny, tmp_path):
    fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=1), out=tmp_path, progress=False)
    path = tmp_path / "checkpoint_0001.safetensors"
    tree, meta = checkpoint.load(path)
    tree["params"]["dense_1"]["b"][3] = np.nan
    checkpoint.save(path, tree, metadata=meta, allow_nonfinite=True)
    with pytest.raises(CheckpointError, match=r"'params/dense_1/b' holds 1 NaN"):
        fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=1), out=tmp_path,
            progress=False)


# ---- pruning -------------------------------------------------------------------------------

def test_checkpoints_are_ordered_and_pruned_by_epoch_number(tiny, tmp_path, monkeypatch):
    for epoch in (10001, 9998, 10000, 9999):
        checkpoint.save(tmp_path / "n" / f"checkpoint_{epoch}.safetensors", {"w": np.ones(1)})
    assert [p.name for p in checkpoint.numbered(tmp_path / "n")] == [
        "checkpoint_9998.safetensors", "checkpoint_9999.safetensors",
        "checkpoint_10000.safetensors", "checkpoint_10001.safetensors"]
    assert checkpoint.latest(tmp_path / "n").name == "checkpoint_10001.safetensors"
    # epochs 1, 2, 3 written as checkpoint_9998, _9999, _10000: their names sort the other way
    monkeypatch.setattr(checkpoint, "checkpoint_path", lambda directory, epoch, **_:
                        directory / f"checkpoint_{9997 + epoch}.safetensors")
    fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=3, keep_checkpoints=2),
        out=tmp_path / "run", progress=False)
    assert _listing(tmp_path / "run") == ["checkpoint_10000.safetensors",
                                          "checkpoint_9999.safetensors", "metrics.json"]


# ---- a full disk ---------------------------------------------------------------------------

def _disk_fills_at(monkeypatch, call):
    """Makes the `call`-th low-level write (and every later one) fail with ENOSPC."""
    real, calls = files._write_all, []

    def write(handle, data):
        calls.append(len(data))
        if len(calls) >= call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, data)

    monkeypatch.setattr(files, "_write_all", write)


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tiny, tmp_path,
                                                                    monkeypatch):
    # each file is written in two halves: epoch 1's checkpoint and metrics are calls 1 to 4,
    # and the disk fills after the first half of epoch 2's checkpoint
    _disk_fills_at(monkeypatch, 6)
    with pytest.raises(WriteError) as error:
        fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=3), out=tmp_path, progress=False)
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC and isinstance(error.value, OSError)
    assert "\n" not in message
    assert f"could not write {str(tmp_path / 'checkpoint_0002.safetensors')!r}" in message
    assert "No space left on device (ENOSPC)" in message and "free some disk space" in message
    assert "checkpoint_0001.safetensors, is intact" in message
    assert _listing(tmp_path) == ["checkpoint_0001.safetensors", "metrics.json"]
    checkpoint.load(tmp_path / "checkpoint_0001.safetensors")
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1
    monkeypatch.undo()
    resumed = fit(_model(), tiny, dataclasses.replace(CONFIG, epochs=3), out=tmp_path,
                  progress=False)
    assert resumed.resumed_from == 1 and resumed.history[-1]["epoch"] == 3
