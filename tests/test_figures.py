"""difprog's pictures leave matplotlib as they found it: no backend switched, no pyplot figure
opened, so a notebook's own plotting works after them."""

from __future__ import annotations

import subprocess
import sys

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
