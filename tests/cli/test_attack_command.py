"""`difprog attack`: the robustness curve, the pictures and attack.json of a trained model, and
its usage errors in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from difprog import attacks, checkpoint, data, models
from difprog.cli import main
from difprog.train import restore
from tests.conftest import fails_in_one_line


def test_attack_writes_the_curve_the_pictures_and_attack_json(linear_run, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(["attack", "--checkpoint", str(linear_run), "--out", str(out), "--count", "60",
                 "--steps", "5", "--show", "3", "--eps", "0", "0.01", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "| eps | accuracy |" in printed and "wrote robustness.png, adversarial.png, " \
        "attack.json" in printed
    record = json.loads((out / "attack.json").read_text())
    digits, model = data.digits(), models.linear()
    params, _ = restore(checkpoint.latest(linear_run), model, digits.x_train[:1])
    x, y = digits.x_test[:60], digits.y_test[:60]
    clean = int((np.asarray(model.apply(params, x)).argmax(-1) == y).sum()) / 60
    assert record["eps"] == [0, 0.01, 0.3] and record["accuracy"][0] == clean
    assert record["accuracy"] == attacks.robustness(model, params, x, y, [0, 0.01, 0.3],
                                                    steps=5)
    assert clean > record["accuracy"][1] >= record["accuracy"][2]
    assert record["examples"]["eps"] == 0.01 and len(record["examples"]["rows"]) == 3
    for row in record["examples"]["rows"]:
        assert row["clean"][0] == row["label"] == str(int(digits.y_test[row["index"]]))
    for name in ("robustness.png", "adversarial.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fgsm_and_l2_attacks_run_from_the_command_line(linear_run, tmp_path, capsys):
    assert main(["attack", "--checkpoint", str(linear_run), "--out", str(tmp_path / "f"),
                 "--attack", "fgsm", "--count", "20", "--show", "1", "--eps", "0.1"]) == 0
    assert json.loads((tmp_path / "f" / "attack.json").read_text())["steps"] == 1
    assert main(["attack", "--checkpoint", str(linear_run), "--out", str(tmp_path / "l2"),
                 "--norm", "l2", "--count", "20", "--show", "1", "--eps", "0", "1",
                 "--steps", "3", "--random-start", "--seed", "4"]) == 0
    record = json.loads((tmp_path / "l2" / "attack.json").read_text())
    assert record["norm"] == "l2" and record["random_start"] and record["seed"] == 4


@pytest.mark.parametrize("arguments, status, message", [
    (["--attack", "fgsm", "--norm", "l2"], 2, "fgsm takes one L-inf step of eps; --norm l2 is"),
    (["--attack", "fgsm", "--random-start", "--steps", "3"], 2,
     "--steps, --random-start are pgd's (--attack pgd)"),
    (["--eps", "0"], 2, "give an --eps above 0"),
    (["--eps", "-0.1"], 2, "argument --eps: expected a finite non-negative number"),
    (["--steps", "0"], 2, "argument --steps: expected an integer from 1"),
    (["--step-size", "0"], 2, "argument --step-size: expected a finite positive number"),
    (["--norm", "l1"], 2, "argument --norm: invalid choice: 'l1'"),
    (["--checkpoint", "nowhere"], 1, "no file or directory 'nowhere'"),
])
def test_attack_errors_are_one_line(linear_run, tmp_path, capsys, arguments, status, message):
    line = fails_in_one_line(capsys, ["attack", "--checkpoint", str(linear_run), "--out",
                                      str(tmp_path / "o"), "--count", "4", *arguments], status)
    assert message in line, line


def test_attack_help_shows_the_defaults(capsys):
    assert main(["attack", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: [0.0, 0.05, 0.1, 0.2])", "(default: 1000)", "(default: pgd)",
                    "(default: 40)",
                    "(default: difprog-attack)", "2.5 eps / steps"):
        assert default in text, default
