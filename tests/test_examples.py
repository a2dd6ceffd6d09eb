"""The scripts in examples/ run and show what they claim."""

from __future__ import annotations

import itertools
import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(script: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout


def test_two_layer_net_loss_falls_and_matches_the_lecture_gradient():
    out = _run("two_layer_net.py")
    gap = float(re.search(r"max relative gap: (\S+)", out).group(1))
    assert gap < 1e-5
    losses = [float(v) for v in re.findall(r"loss\s+(\S+)", out)]
    assert len(losses) == 11
    assert losses[-1] < losses[0] / 100
    assert all(b < a for a, b in itertools.pairwise(losses))


def test_cnn_summary_prints_the_table_and_nonzero_gradients():
    out = _run("cnn_summary.py")
    assert re.search(r"conv2d_0\s+Conv2D\(16, 3\)\s+\(32, 8, 8, 16\)\s+160", out)
    assert re.search(r"total\s+13,706", out)
    norms = [float(v) for v in re.findall(r"'\w+': ([0-9.]+)", out.split("gradient norm")[1])]
    assert len(norms) == 4 and all(n > 0 for n in norms)


def test_training_health_diagnoses_each_pathology_and_not_the_healthy_run(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "training_health.py"), str(tmp_path),
                           "1"], capture_output=True, text=True, timeout=600, check=True)
    runs = dict(part.split("\n", 1) for part in done.stdout.split("== ")[1:])
    assert runs["healthy"].endswith("- no diagnosis\n")
    assert "dense_0: gradient norm" in runs["sigmoid-stack"] and "vanishing" in runs[
        "sigmoid-stack"]
    assert "the learning rate is too large since step 0" in runs["learning-rate-30x"]
    assert "relu_0 (after dense_0): 100% of ReLUs dead since step 0" in runs["dead-relus"]
    assert "gate log in layer log_0" in runs["log-of-negative"]
    assert (tmp_path / "sigmoid-stack" / "health.html").exists()
