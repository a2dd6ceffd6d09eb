"""The benchmark scripts run end to end on tiny shapes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gates_vs_native_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gates_vs_native.py"),
         "--steps", "2", "--round", "1", "--batch", "4", "--hidden", "8"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| difprog / native |" in result.stdout
    assert "OK at 1e-5" in result.stdout
