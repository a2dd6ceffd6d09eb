"""`difprog visualize`: a non-finite checkpoint, an empty directory or a missing file refused in
one line, and its compile and progress lines in a log."""

from __future__ import annotations

import numpy as np

from difprog import checkpoint
from tests.conftest import fails_in_one_line, progress_lines


def test_visualize_refuses_a_nan_checkpoint_in_one_line(capsys, linear_run, tmp_path):
    tree, meta = checkpoint.load(linear_run / "checkpoint_0001.safetensors")
    tree["params"]["dense_0"]["w"][:] = np.nan
    checkpoint.save(tmp_path / "run" / "checkpoint_0001.safetensors", tree, metadata=meta,
                    allow_nonfinite=True)
    err = fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path / "run"),
                                     "--out", str(tmp_path / "viz"), "--no-progress"], 1)
    assert "refusing to load" in err
    assert "'params/dense_0/w' holds 640 NaN and 0 infinite of 640 values" in err
    assert not (tmp_path / "viz").exists()


def test_visualize_of_an_empty_directory_or_a_missing_file_is_one_line(capsys, tmp_path):
    err = fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path), "--out",
                                     str(tmp_path / "viz")], 1)
    assert "no checkpoint_<epoch>.safetensors in the directory" in err
    err = fails_in_one_line(capsys, ["visualize", "--checkpoint", str(tmp_path / "no.st"),
                                     "--out", str(tmp_path / "viz")], 1)
    assert "no file or directory" in err and "latest(" not in err


def test_visualize_in_a_log_prints_the_compile_and_progress_lines(capsys, monkeypatch,
                                                                 linear_run, tmp_path):
    lines = progress_lines(capsys, monkeypatch, ["visualize", "--checkpoint", str(linear_run),
                                                 "--steps", "8", "--classes", "0", "1",
                                                 "--out", str(tmp_path)])
    assert lines[0] == "compiling the visualisation loop (8 steps a call)...", lines
    assert lines[1].startswith("visualizing ") and ": 8/8 steps, score " in lines[1], lines
