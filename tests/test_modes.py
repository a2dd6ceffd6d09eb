"""compare_modes, hvp and hessian against JAX's autodiff of plain-jax.numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates, layers, modes
from tests.conftest import assert_trees_close


def _mlp(n, m, width=64):
    model = layers.serial(layers.Dense(width), layers.Tanh(), layers.Dense(width), layers.Tanh(),
                          layers.Dense(m))
    params = model.init(jax.random.key(0), jnp.zeros(n))
    return (lambda x: model.apply(params, x)), params


def _mlp_reference(params):
    def f(x):
        h = jnp.tanh(x @ params["dense_0"]["w"] + params["dense_0"]["b"])
        h = jnp.tanh(h @ params["dense_1"]["w"] + params["dense_1"]["b"])
        return h @ params["dense_2"]["w"] + params["dense_2"]["b"]
    return f


def test_both_jacobians_match_jax_jacobian_of_the_reference():
    with jax.enable_x64(True):
        f, params = _mlp(5, 3, width=8)
        x = jax.random.normal(jax.random.key(1), (5,))
        report = difprog.compare_modes(f, x, repeats=2)
        assert report.agree and report.max_difference < 1e-12
        assert report.n_inputs == 5 and report.n_outputs == 3
        assert report.forward.passes == 5 and report.reverse.passes == 3
        assert_trees_close(report.jacobian, (jax.jacobian(_mlp_reference(params))(x),))


def test_several_arguments_and_pytree_outputs():
    f = lambda x, y: {"s": gates.sum(gates.multiply(x, y)), "p": gates.multiply(x, y)}
    x, y = jnp.arange(1.0, 4.0), jnp.arange(4.0, 7.0)
    report = difprog.compare_modes(f, x, y, repeats=2)
    assert report.n_inputs == 6 and report.n_outputs == 4 and report.agree
    np.testing.assert_allclose(report.jacobian["p"][1], jnp.diag(x))
    np.testing.assert_allclose(report.jacobian["s"][0], y)


@pytest.mark.parametrize("n, m, fewer", [(1, 1024, "forward"), (1024, 1, "reverse")])
def test_the_mode_theory_favours_needs_fewer_passes_and_flops(n, m, fewer):
    """What XLA compiled is deterministic; which mode measured faster is the benchmark's to show
    (`difprog bench modes`), since two microsecond programs on a loaded CI machine can swap."""
    f, _ = _mlp(n, m)
    report = difprog.compare_modes(f, jax.random.normal(jax.random.key(2), (n,)), repeats=3)
    more, less = ((report.reverse, report.forward) if fewer == "forward"
                  else (report.forward, report.reverse))
    assert (more.passes, less.passes) == (max(n, m), 1)
    assert more.flops > 10 * less.flops
    assert more.temp_bytes >= less.temp_bytes
    assert f"n = {n} inputs and m = {m} outputs" in report.reason
    faster = min(("forward", "reverse"), key=lambda mode: getattr(report, mode).seconds)
    assert report.cheaper == faster
    text = str(report)
    assert "forward (jacfwd)" in text and f"cheaper: {faster}" in text


@pytest.mark.parametrize("seconds, cheaper, says", [
    ({"forward": 1e-5, "reverse": 4e-5}, "forward", "forward mode needs fewer passes and "
                                                     "measured 4.0x faster"),
    ({"forward": 3e-5, "reverse": 1e-5}, "reverse", "theory favours forward mode, but reverse "
                                                     "mode measured 3.00x faster"),
])
def test_the_verdict_is_the_measured_faster_mode_and_says_when_theory_disagrees(seconds, cheaper,
                                                                                says):
    verdict, reason = modes._verdict(2, 50, seconds)
    assert verdict == cheaper and says in reason
    assert "n = 2 inputs and m = 50 outputs" in reason


def test_the_verdict_with_as_many_inputs_as_outputs_says_both_need_the_same_passes():
    verdict, reason = modes._verdict(7, 7, {"forward": 2e-5, "reverse": 1e-5})
    assert verdict == "reverse" and "both need the same number of passes" in reason


def test_hvp_and_hessian_match_the_reference_without_forming_the_hessian():
    with jax.enable_x64(True):
        f, params = _mlp(4, 2, width=6)
        loss = lambda x: gates.sum(gates.square(f(x)))
        reference = lambda x: jnp.sum(_mlp_reference(params)(x) ** 2)
        x = jax.random.normal(jax.random.key(3), (4,))
        v = jax.random.normal(jax.random.key(4), (4,))
        expected = jax.hessian(reference)(x)
        assert_trees_close(difprog.hessian(loss)(x), expected)
        assert_trees_close(difprog.hvp(loss, x, v), expected @ v)
        jaxpr = str(jax.make_jaxpr(lambda x, v: difprog.hvp(loss, x, v))(x, v))
        assert "f64[4,4]" not in jaxpr


def test_hvp_of_a_pytree_of_params():
    with jax.enable_x64(True):
        _, params = _mlp(3, 1, width=4)
        model = layers.serial(layers.Dense(4), layers.Tanh(), layers.Dense(4), layers.Tanh(),
                              layers.Dense(1))
        x = jnp.ones((2, 3))
        loss = lambda p: gates.mean(gates.square(model.apply(p, x)))
        v = jax.tree.map(jnp.ones_like, params)
        reference = lambda p: jnp.mean(jax.vmap(_mlp_reference(p))(x) ** 2)
        expected = jax.jvp(jax.grad(reference), (params,), (v,))[1]
        assert_trees_close(difprog.hvp(loss, params, v), expected)


def test_bad_arguments():
    with pytest.raises(difprog.ArgumentError, match="at least one argument"):
        difprog.compare_modes(lambda: 1.0)
    for repeats in (0, True, 2.0):
        with pytest.raises(difprog.ArgumentError,
                           match=f"compare_modes: repeats must be a positive int, got {repeats}"):
            difprog.compare_modes(gates.exp, jnp.ones(2), repeats=repeats)
    for seconds in (-1, float("nan"), "0.1"):
        with pytest.raises(difprog.ArgumentError, match="compare_modes: min_seconds must be a "
                                                        "finite number >= 0, got"):
            difprog.compare_modes(gates.exp, jnp.ones(2), min_seconds=seconds)
