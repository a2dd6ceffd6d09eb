"""`difprog bench modes`: a line on stderr before each point compiles."""

from __future__ import annotations

from tests.conftest import progress_lines


def test_bench_modes_in_a_log_prints_a_line_before_each_point(capsys, monkeypatch, tmp_path):
    lines = progress_lines(capsys, monkeypatch, ["bench", "modes", "--sizes", "1", "2",
                                                 "--repeats", "1", "--out", str(tmp_path)])
    assert lines == [f"point {i}/4: compiling and timing jacfwd and jacrev at n={n}, m={m}..."
                     for i, (n, m) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)], 1)]
