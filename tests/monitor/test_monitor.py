"""The training monitor (issue 32): its records equal plain JAX's numbers on the same batch, the
constructed pathologies are diagnosed and healthy runs are not, a NaN is traced to its gate and
layer, diagnoses start and stop in the log, and a resumed run's health.json covers the run."""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from difprog import gates, layers, models, monitor
from difprog.errors import ArgumentError, NonFiniteLossError
from difprog.train import TrainConfig, fit, make_optimizer, make_train_step
from tests.conftest import digits_subset


@pytest.fixture(scope="module")
def small():
    return digits_subset("digits-small", 300, 100)


def _mixed(tanh=gates.tanh):
    """Dense layers through relu, tanh and sigmoid: every kind of activation statistic."""
    return layers.serial(layers.Flatten(), layers.Dense(24), layers.Relu(), layers.Dense(16),
                         layers.activation(tanh)(), layers.Dense(12), layers.Sigmoid(),
                         layers.Dense(10))


def _plain(params, x, y):
    """The same model in plain jax.numpy: no difprog gate, JAX's own autodiff."""
    h = x.reshape(len(x), -1)
    for name, act in (("dense_0", jax.nn.relu), ("dense_1", jnp.tanh),
                      ("dense_2", jax.nn.sigmoid), ("dense_3", None)):
        h = h @ params[name]["w"] + params[name]["b"]
        h = act(h) if act else h
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], 1))


def _record(model, x, y, *, lr=2e-3, every=1, record=True):
    config = TrainConfig(learning_rate=lr, schedule="constant")
    optimizer = make_optimizer(config, 10)
    watch = monitor.watch(model, x[:1], every=every)
    params = model.init(jax.random.key(0), x[:1])
    step = make_train_step(model, config, optimizer, watch)
    new, _, loss, _, health = step(params, optimizer.init(params), x, y, jax.random.key(1),
                                   record)
    return watch, params, new, loss, None if health is None else monitor.unpack(watch, health)


def test_the_records_equal_plain_jax_on_the_same_batch(small):
    """Float64: gradient norms against jax.grad of a plain-jnp twin; update norms against the
    params' change; activation statistics against NumPy on the captured outputs."""
    with jax.enable_x64(True):
        x, y = jnp.asarray(small.x_train[:64], jnp.float64), jnp.asarray(small.y_train[:64])
        model = _mixed()
        watch, params, new, loss, health = _record(model, x, y)
        assert watch.activations == {"relu_0": "relu", "tanh_0": "tanh",
                                                "sigmoid_0": "sigmoid"}
        truth = jax.grad(_plain)(params, x, y)
        np.testing.assert_allclose(health["loss"], _plain(params, x, y), rtol=1e-12)
        for path in watch.weights:
            layer, name = path.split("/")
            np.testing.assert_allclose(health["grad_norm"][path],
                                       np.linalg.norm(truth[layer][name]), rtol=1e-10)
            np.testing.assert_allclose(health["weight_norm"][path],
                                       np.linalg.norm(params[layer][name]), rtol=1e-12)
            np.testing.assert_allclose(health["update_norm"][path], np.linalg.norm(
                new[layer][name] - params[layer][name]), rtol=1e-6)
        outs = model.run(params, x, train=True, capture=True).captured
        for path in watch.activations:
            np.testing.assert_allclose(health["mean"][path], np.mean(outs[path]), rtol=1e-10)
            np.testing.assert_allclose(health["std"][path], np.std(outs[path]), rtol=1e-10)
        relu = np.asarray(outs["relu_0"])
        assert health["dead"] == {"relu_0": pytest.approx(np.mean(~(relu > 0).any(0)))}
        tanh, sigmoid = np.asarray(outs["tanh_0"]), np.asarray(outs["sigmoid_0"])
        assert health["saturated"] == {
            "tanh_0": pytest.approx(np.mean(np.abs(tanh) > 0.98)),
            "sigmoid_0": pytest.approx(np.mean((sigmoid < 0.01) | (sigmoid > 0.99)))}


def test_a_wrong_backward_rule_shows_in_the_recorded_norms(small):
    """Mutation: tanh's backward doubled changes the recorded gradient norms below it, so the
    comparison above fails."""
    doubled = gates.tanh.with_rules(backward=lambda g, out, **kw: tuple(
        2 * c for c in gates.tanh.backward(g, out, **kw)))
    with jax.enable_x64(True):
        x, y = jnp.asarray(small.x_train[:64], jnp.float64), jnp.asarray(small.y_train[:64])
        watch, params, _, _, health = _record(_mixed(doubled), x, y)
        truth = jax.grad(_plain)(params, x, y)
        ratio = health["grad_norm"]["dense_0/w"] / np.linalg.norm(truth["dense_0"]["w"])
        assert abs(ratio - 2) < 1e-9
        assert health["grad_norm"]["dense_2/w"] == pytest.approx(
            np.linalg.norm(truth["dense_2"]["w"]), rel=1e-10)


def test_the_monitor_changes_no_number_of_the_training(small):
    """The same params and losses as an unmonitored run, recorded steps and others alike."""
    config = TrainConfig(epochs=1, batch_size=32)
    plain = fit(models.mlp(), small, config, progress=False)
    watched = fit(models.mlp(), small, config, progress=False, monitor_every=3)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(watched.params), strict=True):
        np.testing.assert_array_equal(a, b)
    x, y = small.x_train[:32], small.y_train[:32]
    assert _record(_mixed(), x, y, record=False)[-1] is None


def _diagnosed(model, small, *, lr=2e-3, epochs=2, thresholds=None, schedule="cosine"):
    config = TrainConfig(epochs=epochs, batch_size=32, learning_rate=lr, schedule=schedule)
    result = fit(model, small, config,
                 progress=False, monitor_every=2, thresholds=thresholds)
    return {(d["kind"], d["layer"]) for d in result.health["diagnoses"]}, result.health


def _sigmoid_stack(depth=10):
    return layers.serial(layers.Flatten(), *[part for _ in range(depth) for part in (
        layers.Dense(32), layers.Sigmoid())], layers.Dense(10))


def test_vanishing_gradients_through_ten_sigmoid_layers(small):
    found, health = _diagnosed(_sigmoid_stack(), small)
    vanishing = {layer for kind, layer in found if kind == "vanishing"}
    assert {"dense_0", "dense_1", "dense_2"} <= vanishing
    assert not vanishing & {"dense_8", "dense_9"}
    first = next(d for d in health["diagnoses"] if d["layer"] == "dense_0")
    assert first["step"] == 0 and "orders below the top layer's (dense_10): vanishing" in (
        first["message"])


def test_a_learning_rate_thirty_times_too_large(small):
    found, health = _diagnosed(models.cnn(), small, lr=30 * 2e-3, epochs=1, schedule="constant")
    assert {layer for kind, layer in found if kind == "update_ratio"} >= {"dense_0", "conv2d_1"}
    line = next(d["message"] for d in health["diagnoses"] if d["kind"] == "update_ratio")
    assert "the learning rate is too large since step 0" in line


def test_relus_behind_biases_of_minus_five_are_dead(small):
    minus_five = jax.nn.initializers.constant(-5.0)
    model = layers.serial(layers.Flatten(), layers.Dense(64, b_init=minus_five), layers.Relu(),
                          layers.Dense(64), layers.Relu(), layers.Dense(10))
    found, health = _diagnosed(model, small, epochs=1)
    assert ("dead", "relu_0") in found  # (relu_1, fed zeros, is as dead)
    first = next(d for d in health["diagnoses"] if d["layer"] == "relu_0")
    assert first["message"] == "relu_0 (after dense_0): 100% of ReLUs dead since step 0"


def test_the_healthy_default_models_raise_no_diagnosis(small):
    for model in (models.cnn(), models.mlp()):
        found, health = _diagnosed(model, small, epochs=3)
        assert found == set() and len(health["steps"]) == 15


def test_the_thresholds_are_configurable(small):
    strict = monitor.Thresholds(update_ratio=1e-4)
    found, _ = _diagnosed(models.mlp(), small, epochs=1, thresholds=strict)
    assert {kind for kind, _ in found} == {"update_ratio"}
    with pytest.raises(ArgumentError, match="Thresholds: dead"):
        monitor.Thresholds(dead=1.5)
    with pytest.raises(ArgumentError, match="every"):
        monitor.watch(models.mlp(), small.x_train[:1], every=0)


def test_diagnoses_start_and_stop_in_the_log(small):
    watch = monitor.watch(models.mlp(), small.x_train[:1], every=5,
                          thresholds=monitor.Thresholds(dead=0.5))
    mon = monitor.Monitor(watch)

    def record(dead):
        weights = {p: 1.0 for p in watch.weights}
        return {"loss": 1.0, "grad_norm": weights, "weight_norm": weights,
                "update_norm": {p: 1e-3 for p in weights}, "mean": {}, "std": {},
                "dead": {"relu_0": dead, "relu_1": 0.0}, "saturated": {}}

    lines = {step: mon.add(step, record(dead)) for step, dead in (
        (0, 0.1), (5, 0.71), (10, 0.8), (15, 0.9), (20, 0.2), (25, 0.8), (30, 0.1), (35, 0.1),
        (40, 0.1), (45, 0.8), (50, 0.8), (55, 0.1))}
    assert {step: found for step, found in lines.items() if found} == {
        15: ["relu_0 (after dense_0): 71% of ReLUs dead since step 5"],
        40: ["relu_0: dead no longer seen from step 30 (seen from step 5)"]}
    (only,) = mon.health()["diagnoses"]
    assert only == {"kind": "dead", "layer": "relu_0", "step": 5, "until": 30,
                    "value": pytest.approx(0.71),
                    "message": "relu_0 (after dense_0): 71% of ReLUs dead since step 5"}
    eager = monitor.Monitor(monitor.watch(models.mlp(), small.x_train[:1],
                                          thresholds=monitor.Thresholds(patience=1)))
    assert eager.add(0, record(0.8)) and eager.add(1, record(0.1))


def test_a_log_of_a_negative_activation_is_traced_to_its_gate_and_layer(small, tmp_path):
    model = layers.serial(layers.Flatten(), layers.Dense(16), layers.activation(gates.log)(),
                          layers.Dense(10))
    with pytest.raises(NonFiniteLossError) as caught:
        fit(model, small, TrainConfig(epochs=1), out=tmp_path / "run", progress=False,
            monitor_every=5)
    message = str(caught.value)
    assert message.startswith("the training loss became nan at step 0 (epoch 1, batch 1 of 10);"
                              " the forward pass first gives a non-finite value at gate log in "
                              "layer log_0")
    health = json.loads((tmp_path / "run" / "health.json").read_text())
    (nonfinite,) = health["diagnoses"]
    assert (nonfinite["kind"], nonfinite["layer"], nonfinite["step"]) == ("nonfinite", "log_0", 0)


def test_a_gradient_that_alone_is_not_finite_is_traced_backward():
    """sqrt at 0: a finite loss, an infinite cotangent."""
    origin = monitor.first_nonfinite(lambda w: gates.sum(gates.sqrt(w * 0.0)), jnp.ones(3))
    assert (origin.direction, origin.op) == ("backward", "sqrt")
    assert monitor.first_nonfinite(lambda w: gates.sum(w * w), jnp.ones(3)) is None


def test_a_resumed_run_keeps_the_records_before_it(small, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, schedule="constant")
    whole = fit(models.mlp(), small, config, progress=False, monitor_every=3).health
    fit(models.mlp(), small, dataclasses.replace(config, epochs=1), out=tmp_path,
        progress=False, monitor_every=3, allow_changes=True)
    resumed = fit(models.mlp(), small, config, out=tmp_path, progress=False, monitor_every=3,
                  allow_changes=True).health
    assert resumed["steps"] == whole["steps"] == [0, 3, 6, 9]
    np.testing.assert_allclose(resumed["loss"], whole["loss"], rtol=1e-5)
    on_disk = json.loads((tmp_path / "health.json").read_text())
    assert on_disk["steps"] == whole["steps"]


def test_the_optax_loop_of_the_module_docstring(small):
    """The Python API in a loop of a user's own."""
    model, x0 = models.mlp(), small.x_train[:1]
    watch = monitor.watch(model, x0, every=2)
    mon = monitor.Monitor(watch)
    optimizer = optax.sgd(0.1)
    params = model.init(jax.random.key(0), x0)
    opt_state = optimizer.init(params)

    @functools.partial(jax.jit, static_argnames="record")  # a program with, one without
    def step(params, opt_state, x, y, record):
        def loss(p):
            out = model.run(p, x, capture=watch.capture)
            return gates.softmax_cross_entropy(out.output, y), out.captured
        (value, acts), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        health = monitor.measure(watch, params, grads, updates, acts, value) if record else None
        return optax.apply_updates(params, updates), opt_state, value, health

    for t in range(6):
        x, y = small.x_train[32 * t:32 * t + 32], small.y_train[32 * t:32 * t + 32]
        params, opt_state, value, health = step(params, opt_state, x, y, t % watch.every == 0)
        if t % watch.every == 0:
            mon.add(t, health)
    assert [r["step"] for r in mon.records] == [0, 2, 4]
    assert mon.records[-1]["loss"] < mon.records[0]["loss"]


def test_a_finite_loss_with_a_gradient_that_is_not_is_stopped_and_traced(small):
    """sqrt after relu: sqrt(0) is finite, its derivative infinite, times relu's 0 is NaN."""
    model = layers.serial(layers.Flatten(), layers.Dense(16), layers.Relu(),
                          layers.activation(gates.sqrt)(), layers.Dense(10))
    with pytest.raises(NonFiniteLossError) as caught:
        fit(model, small, TrainConfig(epochs=1), progress=False, monitor_every=4)
    assert str(caught.value).startswith(
        "a gradient became non-finite at step 0 (epoch 1, batch 1 of 10) (the loss is ")
    assert ("the backward pass first gives a non-finite gradient (cotangent) at gate sqrt in "
            "layer sqrt_0") in str(caught.value)
