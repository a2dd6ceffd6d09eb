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
