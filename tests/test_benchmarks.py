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


def test_grad_cost_and_remat_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grad_cost_and_remat.py"), "--hidden", "16",
         "--batch", "4", "--layers", "4", "--width", "8", "--remat-batch", "4", "--repeats", "2"],
        capture_output=True, text=True, timeout=300, check=True)
    assert "| difprog |" in result.stdout and "grad / forward" in result.stdout
    for variant in ("repeat (scan), no remat", "repeat, remat='sqrt'", "serial, remat='sqrt'"):
        assert f"| {variant} |" in result.stdout


def test_bench_modes_writes_table_json_and_png(tmp_path, capsys):
    import json

    from difprog.cli import main

    assert main(["bench", "modes", "--out", str(tmp_path), "--sizes", "1", "32",
                 "--width", "8", "--repeats", "2"]) == 0
    rows = json.loads((tmp_path / "modes.json").read_text())
    assert [(r["n"], r["m"]) for r in rows] == [(1, 1), (1, 32), (32, 1), (32, 32)]
    assert all(r["agree"] and r["forward_seconds"] > 0 for r in rows)
    table = (tmp_path / "modes.md").read_text()
    assert "| 32 | 1 |" in table and "jacfwd / jacrev" in table
    assert (tmp_path / "modes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote modes.md" in capsys.readouterr().out
