"""Kill safety of the training driver (`difprog.driver`), for both of its tasks: `difprog train`
SIGKILLed at every point of training, evaluating, writing and resuming resumes to the bytes of a
run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from difprog import checkpoint

TEXT = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
        "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n\n") * 12

# Each task writes 5 checkpoints, `per` units apart, in stretches of several steps: the image
# model 5 epochs of 6 steps, the language model 15 steps evaluated every 3. The points inside
# the writes are the driver's, the same for every task, so the language model is killed only
# where its own state is rebuilt: behind metrics.json (its training seconds), mid-stretch (its
# curve) and between its checkpoint and metrics.json.
TASKS = {
    "image": {"args": ["--model", "linear", "--epochs", "5", "--batch-size", "256"],
              "unit": "epoch", "per": 1, "done": ["after 5 epochs"], "pictures": [],
              "kills": "all"},
    "language model": {"args": ["--model", "gpt", "--layers", "1", "--heads", "2", "--features",
                                "16", "--context", "16", "--steps", "15", "--batch-size", "4",
                                "--warmup", "2", "--eval-every", "3", "--lr", "1e-2"],
                       "unit": "step", "per": 3, "done": ["after 15 steps", "a sample"],
                       "pictures": ["loss.png", "attribution.png"],
                       "kills": [("half-written:2", [1]), ("step:3", [1]), ("pruned:1", [1, 2])]},
}
# Each killed run starts where the one before left off (2 atomic writes per stretch and one more
# for metrics.json when a resume finds it behind its checkpoint): the kill point
# (DIFPROG_TEST_KILL_AT, see difprog.files.kill_point) and the checkpoints left after it, counted
# in stretches.
KILLS = [
    ("created:1", []),  # checkpoint 1's temporary just created, empty
    ("half-written:1", []),  # half of checkpoint 1 in its temporary
    ("synced:1", []),  # checkpoint 1's temporary complete and fsynced, not yet renamed
    ("half-written:2", [1]),  # checkpoint 1 renamed, half of metrics.json's temporary written
    ("written:1", [1]),  # the resume rewriting metrics.json (missing) behind checkpoint 1
    ("renamed:2", [1, 2]),  # checkpoint 2 renamed, its directory not yet fsynced
    ("step:3", [1, 2]),  # mid-stretch 3
    ("evaluated:1", [1, 2]),  # stretch 3 trained and evaluated, not saved
    ("checkpoint-saved:1", [1, 2, 3]),  # checkpoint 3 renamed, before pruning
    ("metrics-written:1", [2, 3, 4]),  # checkpoint 4 saved, pruned and in metrics.json
    ("pruned:1", [3, 4, 5]),  # the last checkpoint renamed, metrics.json not yet rewritten
]
TIMINGS = ("last_epoch_seconds", "training_seconds", "tokens_per_second")


def _difprog(task, out, text, kill_at=None):
    env = {**os.environ, "DIFPROG_TEST_KILL_AT": kill_at} if kill_at else None
    data = ["--data", str(text)] if task == "language model" else []
    return subprocess.Popen([sys.executable, "-m", "difprog.cli", "train", *TASKS[task]["args"],
                             *data, "--no-progress", "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out, err


def _assert_intact(directory, numbers, unit):
    """Only whole files are visible: the checkpoints `numbers`, each loadable, valid JSON."""
    visible = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    assert visible == [f"checkpoint_{n:04d}.safetensors" for n in numbers] + (
        ["metrics.json"] if (directory / "metrics.json").exists() else [])
    for number in numbers:
        assert checkpoint.load(directory / f"checkpoint_{number:04d}.safetensors")[1][unit] \
            == number
    if (directory / "metrics.json").exists():
        json.loads((directory / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_a_run_killed_at_any_point_resumes_to_the_same_checkpoints(task, tmp_path):
    """SIGKILL at 11 points (the language model: 3) of writing, training and resuming (one after
    another, each run resuming what the last left); the last resume ends with the bytes of an
    uninterrupted run, and its metrics.json is the same but for timings."""
    text, unit, per = tmp_path / "code.py", TASKS[task]["unit"], TASKS[task]["per"]
    text.write_text(TEXT)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    running = _difprog(task, straight, text)
    for point, stretches in KILLS if TASKS[task]["kills"] == "all" else TASKS[task]["kills"]:
        process = _difprog(task, killed, text, point)
        out, err = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, (point, out, err)
        _assert_intact(killed, [s * per for s in stretches], unit)
    out, err = _finish(_difprog(task, killed, text))
    _finish(running)
    assert "resuming from" in err and all(line in out for line in TASKS[task]["done"]), out
    for number in (3 * per, 4 * per, 5 * per):
        name = f"checkpoint_{number:04d}.safetensors"
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (killed, straight)]
    for m in metrics:
        for key in TIMINGS:
            m.pop(key, None)
    assert metrics[0] == metrics[1]
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in straight.iterdir()), \
        "no temporary or lock is left"
    for picture in TASKS[task]["pictures"]:
        assert (killed / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
