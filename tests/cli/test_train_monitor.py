"""difprog train --monitor: health.json (its `diagnoses` with kind, layer and step), health.png
and health.html in --out for the image models and gpt; a non-finite run names its first gate;
--monitor-every without --monitor, or below 1, is a usage error."""

from __future__ import annotations

import json

import pytest

from difprog import monitor
from difprog.cli import main
from tests.conftest import fails_in_one_line


def test_an_image_model_writes_its_health(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--monitor", "--monitor-every", "7",
                 "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    health = json.loads((out / "health.json").read_text())
    assert printed == (f"training health: 0 diagnoses in {len(health['steps'])} records; wrote "
                       f"health.json, health.png and health.html into {out}/")
    assert health["steps"] == list(range(0, 45, 7)) and health["every"] == 7
    assert health["diagnoses"] == [] and health["weights"] == ["dense_0/w", "dense_1/w",
                                                               "dense_2/w"]
    assert all((out / name).stat().st_size > 0 for name in monitor.FILES)


def test_diagnoses_are_printed_even_without_progress(capsys, tmp_path):
    assert main(["train", "--model", "mlp", "--epochs", "1", "--lr", "3", "--schedule",
                 "constant", "--monitor", "--monitor-every", "2", "--no-progress", "--out",
                 str(tmp_path)]) in (0, 1)
    err = capsys.readouterr().err
    health = json.loads((tmp_path / "health.json").read_text())
    assert health["diagnoses"] and all(
        d["kind"] in monitor.KINDS and isinstance(d["step"], int) for d in health["diagnoses"])
    assert all(d["message"] in err for d in health["diagnoses"] if d["kind"] != "nonfinite")


def test_gpt_writes_its_health(capsys, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    out = tmp_path / "run"
    assert main(["train", "--model", "gpt", "--steps", "4", "--layers", "1", "--heads", "1",
                 "--features", "8", "--context", "8", "--eval-every", "2", "--no-progress",
                 "--monitor", "--monitor-every", "2", "--data", str(text), "--out",
                 str(out)]) == 0
    health = json.loads((out / "health.json").read_text())
    assert health["steps"] == [0, 2]
    assert any(path.startswith("block_0/") for path in health["weights"])
    assert {a["kind"] for a in health["activations"]} == {"gelu"}
    assert health["dead"] == health["saturated"] == {}


@pytest.mark.parametrize("argv, message", [
    (["--monitor-every", "5"], "--monitor-every sets how often --monitor records; add --monitor"),
    (["--monitor", "--monitor-every", "0"], "--monitor-every"),
])
def test_monitor_usage_errors(capsys, tmp_path, argv, message):
    line = fails_in_one_line(capsys, ["train", "--out", str(tmp_path / "run"), *argv], 2)
    assert message in line
    assert not (tmp_path / "run").exists()
