"""difprog's pictures leave matplotlib as they found it: no backend switched, no pyplot figure
opened, so a notebook's own plotting works after them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import difprog
from difprog import ArgumentError, modes

SCRIPT = """
import matplotlib
matplotlib.use("svg")                        # the user's choice, which difprog must keep
import matplotlib.pyplot as plt
import numpy as np
from difprog import viz
viz.save_grid(np.zeros((2, 4, 4, 1)), "grid.png")
viz.save_curves([0, 1], {"a": [1, 2]}, "curves.png", xlabel="x", ylabel="y")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [], plt.get_fignums()
print(open("grid.png", "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n")
"""


def test_pictures_switch_no_backend_and_open_no_figure(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_no_module_draws_with_pyplot():
    root = pathlib.Path(difprog.__file__).parent
    found = [str(path.relative_to(root)) for path in root.rglob("*.py")
             if path.name != "figures.py"
            and ("pyplot" in path.read_text() or "matplotlib.use(" in path.read_text())]
    assert found == [], f"draw through difprog.figures instead: {found}"


def test_the_modes_sweep_writes_only_png(tmp_path):
    rows = [{"n": 1, "m": 2, "ratio": 2.0}, {"n": 2, "m": 1, "ratio": 0.5}]
    with pytest.raises(ArgumentError, match="plot_sweep writes a .png"):
        modes.plot_sweep(rows, tmp_path / "sweep.svg")
    assert modes.plot_sweep(rows, tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
