"""Training image models: optimisers, schedules, weight decay, fit with checkpoints, resume
(after a kill: test_kill_and_resume.py), byte-identical checkpoints, NaN handling, several
devices, and the command line."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import checkpoint, layers
from difprog.train import (
    TrainConfig,
    fit,
    make_optimizer,
    make_schedule,
    make_train_step,
)
from tests.conftest import digits_subset


@pytest.fixture(scope="module")
def small():
    """A fifth of the digits, so a whole run compiles and trains in about a second."""
    return digits_subset("digits-small", 300, 100)


def _model():
    return layers.serial(layers.Flatten(), layers.Dense(32), layers.Relu(), layers.Dropout(0.1),
                         layers.Dense(10))


CONFIG = TrainConfig(epochs=3, batch_size=64, learning_rate=5e-3)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _assert_same(a, b):
    for p, q in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", {0: 1.0, 50: 1.0, 99: 1.0}),
    ("step", {0: 1.0, 49: 1.0, 50: 0.1, 74: 0.1, 75: 0.01}),
    ("cosine", {0: 1.0, 50: 0.5, 100: 0.0}),
    ("linear", {0: 1.0, 25: 0.75, 100: 0.0}),
    ("rsqrt", {0: 0.1, 9: 1.0, 39: 0.5, 99: math.sqrt(10 / 100)}),
])
def test_schedules(schedule, expected):
    lr = make_schedule(TrainConfig(epochs=10, learning_rate=1.0, schedule=schedule), 10)
    for step, value in expected.items():
        assert float(lr(step)) == pytest.approx(value, abs=1e-6), step


def test_weight_decay_adds_two_lambda_w_to_the_gradient_of_weights_only():
    model = layers.serial(layers.Dense(3), layers.Relu(), layers.Dense(2))
    x, y = jax.random.normal(jax.random.key(0), (8, 4)), jnp.arange(8) % 2
    params = model.init(jax.random.key(1), x)
    plain = TrainConfig(optimizer="sgd", schedule="constant", learning_rate=0.1)
    decayed = TrainConfig(optimizer="sgd", schedule="constant", learning_rate=0.1,
                          weight_decay=0.3)
    key = jax.random.key(2)
    stepped = {}
    for name, config in (("plain", plain), ("decayed", decayed)):
        optimizer = make_optimizer(config, 10)
        step = make_train_step(model, config, optimizer)
        stepped[name] = step(params, optimizer.init(params), x, y, key)[0]
    for layer in ("dense_0", "dense_1"):
        np.testing.assert_allclose(stepped["decayed"][layer]["w"], stepped["plain"][layer]["w"]
                                   - 0.1 * 2 * 0.3 * params[layer]["w"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(stepped["decayed"][layer]["b"], stepped["plain"][layer]["b"])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_every_optimizer_and_loss_learns(small, optimizer, loss):
    config = TrainConfig(epochs=8, batch_size=64, optimizer=optimizer, loss=loss,
                         learning_rate={"sgd": 0.3, "momentum": 0.05, "adam": 5e-3}[optimizer])
    result = fit(_model(), small, config, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.test_accuracy > 0.5


def test_fit_writes_checkpoints_and_metrics(small, tmp_path):
    result = fit(_model(), small, CONFIG.__class__(**{**CONFIG.__dict__, "keep_checkpoints": 2}),
                 out=tmp_path, progress=False, extra_metrics={"model": "tiny"})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_0002.safetensors", "checkpoint_0003.safetensors",
                     "metrics.json"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] == result.test_accuracy
    assert metrics["epochs"] == 3 and metrics["seed"] == 0 and metrics["model"] == "tiny"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["config"]["learning_rate"] == 5e-3
    state, meta = checkpoint.load(tmp_path / "checkpoint_0003.safetensors",
                                  {"params": result.params, "opt_state": result.opt_state})
    _assert_same(state["params"], result.params)
    assert meta["epoch"] == 3 and meta["history"] == result.history


def test_same_seed_gives_byte_identical_checkpoints(small, tmp_path):
    for run in ("a", "b"):
        fit(_model(), small, CONFIG, out=tmp_path / run, progress=False)
    for name in ("checkpoint_0001.safetensors", "checkpoint_0003.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    fit(_model(), small, TrainConfig(**{**CONFIG.__dict__, "seed": 1}), out=tmp_path / "c",
        progress=False)
    assert ((tmp_path / "c" / "checkpoint_0003.safetensors").read_bytes()
            != (tmp_path / "a" / "checkpoint_0003.safetensors").read_bytes())


def test_resume_continues_to_the_same_params(small, tmp_path):
    """A run interrupted after epoch 1 (only its first checkpoint left) resumes exactly."""
    straight = fit(_model(), small, CONFIG, out=tmp_path / "straight", progress=False)
    (tmp_path / "resumed").mkdir()
    first = "checkpoint_0001.safetensors"
    (tmp_path / "resumed" / first).write_bytes((tmp_path / "straight" / first).read_bytes())
    (tmp_path / "resumed" / f".metrics.json.tmp-{_dead_pid()}").write_text("{")
    resumed = fit(_model(), small, CONFIG, out=tmp_path / "resumed", progress=False)
    assert resumed.resumed_from == 1
    _assert_same(resumed.params, straight.params)
    _assert_same(resumed.opt_state, straight.opt_state)
    assert resumed.history == straight.history
    assert not list((tmp_path / "resumed").glob(".*")), "stale temporaries and the lock are gone"
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["segments"] == [{"epochs": [1, 3], "config": metrics["segments"][0]["config"]}]


def _dead_pid():
    """The pid of a process that has exited (so no live process owns its temporaries)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small, tmp_path):
    fit(_model(), small, TrainConfig(**{**CONFIG.__dict__, "epochs": 1}), out=tmp_path,
        progress=False)
    poisoned = small._replace(x_train=small.x_train.copy())
    poisoned.x_train[:] = np.nan
    with pytest.raises(difprog.NonFiniteLossError, match=r"nan at step 5 \(epoch 2, batch 1 of 5\)"
                       r".*checkpoint_0001.safetensors.*is kept") as error:
        fit(_model(), poisoned, CONFIG, out=tmp_path, progress=False, allow_changes=True)
    assert isinstance(error.value, ValueError)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_0001.safetensors"]
    state, _ = checkpoint.load(tmp_path / "checkpoint_0001.safetensors")
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state))
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1


def _difprog(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "difprog.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out, err


TRAIN_ARGS = ["train", "--model", "mlp", "--epochs", "4", "--batch-size", "128",
              "--no-progress"]


SHARDED_SCRIPT = """
import jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from difprog import data, layers
from difprog.train import TrainConfig, fit
full = data.digits()
small = data.Dataset("s", full.x_train[:250], full.y_train[:250], full.x_test[:50],
                     full.y_test[:50], 10)
model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.Flatten(), layers.Dense(10))
config = dict(epochs=2, batch_size=64, learning_rate=5e-3)
one = fit(model, small, TrainConfig(devices=1, **config), progress=False)
four = fit(model, small, TrainConfig(devices=4, **config), progress=False)
assert len(jax.devices()) == 4
assert four.params["dense_0"]["w"].sharding.device_set == set(jax.devices())
gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
          for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)))
print("max gap", gap)
assert gap < 1e-5, gap
"""


def test_data_parallel_over_four_devices_matches_one_device(tmp_path):
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "max gap" in done.stdout


def test_devices_beyond_those_available_is_a_clear_error(small):
    with pytest.raises(difprog.ArgumentError, match=r"devices must be between 1 and"):
        fit(_model(), small, TrainConfig(epochs=1, devices=len(jax.devices()) + 1),
            progress=False)


def test_bad_config_names_the_setting():
    with pytest.raises(difprog.ArgumentError, match=r"optimizer must be one of.*'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(difprog.ArgumentError, match=r"epochs must be a positive int"):
        TrainConfig(epochs=0)
    for bad, message in (({"seed": 2**32}, f"seed must be an int from 0 to {2**32 - 1}"),
                         ({"devices": 0}, "devices must be None or a positive int, got 0"),
                         ({"learning_rate": 0}, "learning_rate must be a positive finite number"),
                         ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
                         ({"batch_size": True}, "batch_size must be a positive int, got True")):
        with pytest.raises(difprog.ArgumentError, match=f"TrainConfig: {message}"):
            TrainConfig(**bad)


def test_config_records_numpy_settings_as_python_numbers():
    """A config is recorded as JSON: NumPy ints and floats are taken and kept as int and float."""
    config = TrainConfig(epochs=np.int64(2), seed=np.uint32(7), devices=np.int32(1),
                         learning_rate=np.float32(0.5), weight_decay=0)
    assert [type(v) for v in (config.epochs, config.seed, config.devices, config.learning_rate)
            ] == [int, int, int, float]
    assert config.weight_decay == 0 and type(config.weight_decay) is int
    json.dumps(dataclasses.asdict(config))


def test_train_command_writes_checkpoint_and_metrics(tmp_path, capsys):
    from difprog.cli import main

    code = main(["train", "--model", "linear", "--epochs", "2", "--lr", "0.01",
                 "--optimizer", "momentum", "--schedule", "step", "--loss", "hinge",
                 "--weight-decay", "1e-4", "--seed", "3", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "linear" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["epochs"] == 2 and metrics["model"] == "linear"
    assert metrics["config"]["loss"] == "hinge" and metrics["test_accuracy"] > 0.5
    assert (tmp_path / "checkpoint_0002.safetensors").exists()


def test_train_command_reports_a_checkpoint_of_another_model(tmp_path, capsys):
    from difprog.cli import main

    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "model: 'linear: 650 parameters in 2 arrays" in err and "'mlp: " in err
    assert "epochs" not in err.split("other settings")[1].split(". Run")[0]
    assert main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress", "--allow-changes"]) == 1
    assert "does not match the model" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_reaches_the_accuracy_target_in_under_two_minutes(tmp_path):
    began = time.monotonic()
    process = _difprog("demo", "--no-progress", cwd=tmp_path)
    out, _ = _finish(process)
    seconds = time.monotonic() - began
    metrics = json.loads((tmp_path / "difprog-demo" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.985, metrics["test_accuracy"]
    assert "metrics.json" in out and "checkpoint_0030.safetensors" in out
    explained = tmp_path / "difprog-demo" / "explain"
    for name in ("graph.svg", "graph.png", "graph.html", "table.txt", "flat_code.py",
                 "cnn_layers.png", "cnn_layers.html"):
        assert (explained / name).stat().st_size > 0, name
    assert "equal jax.grad(f)" in out
    assert (tmp_path / "difprog-demo" / "attribution" / "attributions.png").stat().st_size > 0
    assert seconds < 120, seconds
