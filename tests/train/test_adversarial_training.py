"""Adversarial training (TrainConfig.adversarial='pgd', difprog train --adversarial pgd): each
step trains on exactly the PGD examples of its batch, the trained model resists PGD better than
the same model trained on clean images, and the settings are checked and recorded."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import difprog
from difprog import attacks, data, layers, models
from difprog.cli import main
from difprog.train import TrainConfig, fit, make_optimizer, make_train_step
from tests.conftest import fails_in_one_line


def test_a_step_trains_on_the_pgd_examples_of_its_batch():
    digits = data.digits()
    model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.Flatten(),
                          layers.Dropout(0.25), layers.Dense(10))
    x, y = digits.x_train[:32], digits.y_train[:32]
    params = model.init(jax.random.key(0), x)
    key = jax.random.key(5)
    adversarial = TrainConfig(adversarial="pgd", adversarial_eps=0.2, adversarial_steps=3)
    clean = TrainConfig()
    optimizer = make_optimizer(clean, 10)
    state = optimizer.init(params)
    ours = make_train_step(model, adversarial, optimizer)(params, state, x, y, key)
    examples = attacks.perturb(model.apply, params, x, y, 0.2, steps=3,
                               key=jax.random.fold_in(key, 1))
    assert 0.19 < float(np.abs(np.asarray(examples - x)).max()) <= 0.2 + 1e-6
    clean_step = make_train_step(model, clean, optimizer)
    by_hand = clean_step(params, state, examples, y, key)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(by_hand)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    on_clean = clean_step(params, state, x, y, key)
    assert not np.allclose(on_clean[2], ours[2])  # the losses differ


def test_pgd_training_resists_pgd_better_than_clean_training():
    digits = data.digits()
    curves = {}
    for kind in ("none", "pgd"):
        model = models.mlp()
        config = TrainConfig(epochs=4, batch_size=64, adversarial=kind, adversarial_eps=0.1,
                             adversarial_steps=5)
        result = fit(model, digits, config, progress=False)
        curves[kind] = attacks.robustness(model, result.params, digits.x_test[:180],
                                          digits.y_test[:180], [0, 0.1], steps=10)
    assert curves["pgd"][0] > 0.9, curves  # it still classifies clean digits
    assert curves["pgd"][1] > curves["none"][1] + 0.1, curves


def test_adversarial_training_refuses_images_outside_0_1_and_ignores_its_settings_otherwise(
        tmp_path):
    digits = data.digits()
    wide = digits._replace(x_train=digits.x_train * 2 - 0.5)
    with pytest.raises(difprog.ArgumentError, match=r"training images range over \[-0.5, 1.5\]"):
        fit(models.linear(), wide, TrainConfig(epochs=1, adversarial="pgd"), progress=False)
    fit(models.linear(), digits, TrainConfig(epochs=1), out=tmp_path, progress=False)
    # a clean run's adversarial_eps and adversarial_steps change nothing: a resume allows them
    resumed = fit(models.linear(), digits, TrainConfig(epochs=1, adversarial_eps=0.3,
                                                       adversarial_steps=2), out=tmp_path,
                  progress=False)
    assert resumed.resumed_from == 1
    with pytest.raises(difprog.ConfigMismatchError, match="adversarial: 'none' in the check"):
        fit(models.linear(), digits, TrainConfig(epochs=1, adversarial="pgd"), out=tmp_path,
            progress=False)


@pytest.mark.parametrize("field, value, message", [
    ("adversarial", "fgsm", "adversarial must be one of ['none', 'pgd']"),
    ("adversarial_eps", -0.1, "adversarial_eps must be a finite number >= 0"),
    ("adversarial_steps", 0, "adversarial_steps must be a positive int"),
])
def test_bad_adversarial_settings_are_refused(field, value, message):
    with pytest.raises(difprog.ArgumentError, match=message.replace("[", r"\[").replace(
            "]", r"\]")):
        TrainConfig(**{field: value})


def test_train_adversarial_records_its_settings_and_a_resume_must_match(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "linear", "--epochs", "1", "--no-progress", "--out", str(out),
            "--adversarial", "pgd", "--eps", "0.05", "--adversarial-steps", "2"]
    assert main(argv) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["adversarial"], config["adversarial_eps"], config["adversarial_steps"]) == (
        "pgd", 0.05, 2)
    capsys.readouterr()
    line = fails_in_one_line(capsys, [*argv[:-4], "--eps", "0.1", "--epochs", "2",
                                      "--adversarial-steps", "2"], 1)
    assert "adversarial_eps: 0.05 in the checkpoint, 0.1 now" in line


@pytest.mark.parametrize("argv, message", [
    (["train", "--eps", "0.1"], "add --adversarial pgd"),
    (["train", "--adversarial-steps", "3"], "add --adversarial pgd"),
    (["train", "--adversarial", "none", "--eps", "0.1"], "add --adversarial pgd"),
    (["train", "--model", "gpt", "--adversarial", "pgd"], "--adversarial applies only to the "
                                                          "image models"),
    (["train", "--adversarial", "fgsm"], "argument --adversarial: invalid choice: 'fgsm'"),
])
def test_adversarial_options_that_cannot_apply_are_usage_errors(capsys, tmp_path, argv,
                                                                message):
    line = fails_in_one_line(capsys, [*argv, "--out", str(tmp_path / "o")], 2)
    assert message in line, line
