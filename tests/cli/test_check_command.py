"""`difprog check`: a table of every named gate's rules proven, and unknown gates refused."""

from __future__ import annotations

from difprog.cli import main
from tests.conftest import fails_in_one_line


def test_check_prints_a_table_and_succeeds(capsys):
    assert main(["check", "relu", "softmax_cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "reverse" in out and "finite difference" in out and "second order" in out
    assert "relu" in out and "softmax_cross_entropy" in out
    assert "2 of 2 gates ok" in out


def test_check_rejects_unknown_gates(capsys):
    err = fails_in_one_line(capsys, ["check", "nope"], 2)
    assert "unknown gate" in err
