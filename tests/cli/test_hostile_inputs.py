"""Every command against the classes of hostile input an adversarial trial found (2026-12-06):
image checkpoints whose metadata has odd types, a resume from a forged checkpoint, numbers that
overflow float32, an empty --data, a non-UTF-8 file name in a text directory, a JAX that cannot
start, an unwritable --out for explain, warnings, a terminal without UTF-8. Each ends in one
line (or succeeds), never an "unexpected error" or a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest

from difprog import checkpoint
from difprog.cli import _main, main
from tests.conftest import fails_in_one_line


def _forged(run, tmp_path, change):
    """A copy of the newest checkpoint of `run` whose metadata `change` edited (and whose
    checksum is valid: the forger re-saved it)."""
    tree, meta = checkpoint.load(checkpoint.latest(run))
    change(meta)
    return checkpoint.save(tmp_path / "forged" / "checkpoint_0001.safetensors", tree,
                           metadata=meta)


@pytest.mark.parametrize("change", [
    lambda meta: meta.update(extra=[1, 2]),
    lambda meta: meta.update(extra="[1, 2]"),
    lambda meta: meta["extra"].update(dataset=None),
    lambda meta: meta["extra"].update(dataset={"a": 1}),
    lambda meta: meta["extra"].update(model=["cnn"]),
    lambda meta: meta["extra"].update(model="resnet152"),
])
@pytest.mark.parametrize("command", ["visualize", "attribute"])
def test_image_checkpoint_metadata_of_other_types_is_one_line(linear_run, tmp_path, capsys,
                                                              change, command):
    forged = _forged(linear_run, tmp_path, change)
    line = fails_in_one_line(capsys, [command, "--checkpoint", str(forged), "--out",
                                      str(tmp_path / "out")], 1)
    assert "its metadata names the data set" in line and "unexpected" not in line


def test_an_idx_directory_without_images_is_one_line(linear_run, tmp_path, capsys):
    from tests.test_download import _synthetic

    _synthetic(tmp_path / "empty", count=0)
    forged = _forged(linear_run, tmp_path,
                     lambda meta: meta["extra"].update(dataset=str(tmp_path / "empty")))
    line = fails_in_one_line(capsys, ["visualize", "--checkpoint", str(forged), "--out",
                                      str(tmp_path / "out")], 1)
    assert "expected (N, H, W) images and N labels, N > 0" in line


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta.update(epoch=-5), "has no epoch count"),
    (lambda meta: meta.update(epoch="1"), "has no epoch count"),
    (lambda meta: meta.update(segments="x"), "segments"),
    (lambda meta: meta.update(segments=[1, 2]), "segments"),
])
def test_a_resume_from_a_forged_checkpoint_is_one_line(linear_run, tmp_path, capsys, change,
                                                       message):
    forged = _forged(linear_run, tmp_path, change)
    line = fails_in_one_line(capsys, ["train", "--model", "linear", "--epochs", "2",
                                      "--no-progress", "--allow-changes", "--out",
                                      str(forged.parent)], 1)
    assert message in line and "unexpected" not in line


@pytest.mark.parametrize("argv", [
    ["train", "--lr", "1e308"], ["train", "--weight-decay", "1e39"],
    ["train", "--model", "gpt", "--clip", "1e308"],
    ["sample", "--checkpoint", "ck", "--temperature", "1e308"],
    ["attribute", "--checkpoint", "ck", "--noise", "3.5e38"],
])
def test_numbers_beyond_float32_are_usage_errors(capsys, argv):
    line = fails_in_one_line(capsys, argv, 2)
    assert "the largest float32" in line


@pytest.mark.parametrize("argv, message", [
    (["visualize", "--checkpoint", "ck", "--channels", "0"], "--channels needs --layer"),
    (["visualize", "--checkpoint", "ck", "--layer", " "], "and --layer a name"),
    (["visualize", "--checkpoint", "ck", "--layer", "conv2d_0", "--classes", "1"],
     "--classes and --layer choose what to visualise two ways"),
    (["attribute", "--checkpoint", "ck", "--layer", ""], "--layer needs a layer path"),
])
def test_options_that_would_be_ignored_are_usage_errors(capsys, tmp_path, argv, message):
    line = fails_in_one_line(capsys, [*argv, "--out", str(tmp_path)], 2)
    assert message in line


@pytest.mark.parametrize("model", ["linear", "gpt"])
def test_an_empty_data_is_a_usage_error(capsys, tmp_path, model):
    line = fails_in_one_line(capsys, ["train", "--model", model, "--data", "", "--out",
                                      str(tmp_path)], 2)
    assert "--data needs a data set's name or a path" in line


def test_a_text_directory_with_a_non_utf8_file_name_trains(tmp_path, capsys):
    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in ((b"\xff.txt", "hello world, some text\n"), (b"b.txt", "other text\n"),
                       (b"c.txt", "a third one\n")):
        (folder / os.fsdecode(name)).write_text(text * 4)
    assert main(["train", "--model", "gpt", "--steps", "2", "--layers", "1", "--heads", "1",
                 "--features", "8", "--context", "8", "--eval-every", "2", "--no-progress",
                 "--data", str(folder), "--out", str(tmp_path / "run")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_explain_into_an_output_directory_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    line = fails_in_one_line(capsys, ["explain", "x * 2", "--at", "x=1", "--out",
                                      str(tmp_path / "file" / "sub")], 1)
    assert "cannot create the output directory" in line and ".tmp-" not in line


def test_a_warning_is_one_line(capsys, monkeypatch):
    def warns(argv):
        warnings.warn("overflow encountered in cast\nsecond line", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(_main, "main", warns)
    assert main(["check"]) == 0
    assert capsys.readouterr().err == ("difprog: warning: overflow encountered in cast second "
                                       "line (RuntimeWarning)\n")


@pytest.mark.parametrize("variable, value, message", [
    ("JAX_ENABLE_X64", "bogus", "difprog: JAX cannot start (ValueError: invalid truth value"),
    ("JAX_PLATFORMS", "bogus", "difprog check: JAX cannot start: Unable to initialize backend"),
])
def test_a_jax_that_cannot_start_is_one_line(variable, value, message):
    done = subprocess.run([sys.executable, "-m", "difprog.cli", "check", "add"],
                          env={**os.environ, variable: value}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1 and done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_text_the_terminal_cannot_encode_is_escaped(monkeypatch):
    terminal = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # PYTHONIOENCODING=ascii

    def prints(argv):
        print("a sample: caf\u00e9")
        return 0

    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(_main, "main", prints)
    assert main(["sample"]) == 0
    terminal.flush()
    assert terminal.buffer.getvalue() == b"a sample: caf\\xe9\n"
