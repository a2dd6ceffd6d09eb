"""Every registered gate (gates.ALL): its rules against JAX's autodiff of its forward and against
finite differences, at its registered check points (several shapes, broadcasting, a batch axis),
eagerly, under jit and under vmap, and to second order."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates
from difprog.gates import check_points
from tests.conftest import (
    GATE_NAMES,
    as_dtype,
    assert_trees_close,
    bound_arguments,
    first_point,
    inner,
    random_like,
)


@pytest.mark.parametrize("name", GATE_NAMES)
def test_check_gate_passes_at_every_point(name):
    for args, kwargs in check_points(name):
        report = difprog.check_gate(gates.ALL[name], *args, **kwargs)
        assert report.ok, str(report)


def _vjp_and_jvp(fn, inputs, others, g, v):
    names = list(inputs)
    f = lambda *x: fn(**dict(zip(names, x)), **others)
    x = tuple(inputs.values())
    out, vjp = jax.vjp(f, *x)
    return out, vjp(g), jax.jvp(f, x, v)[1]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", GATE_NAMES)
def test_rules_match_autodiff_of_forward(name, mode):
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        inputs, others = bound_arguments(gate, *first_point(name))
        inputs = as_dtype(inputs, jnp.float64)
        g = random_like(gate.forward(**inputs, **others))
        v = tuple(random_like(inputs, seed=2).values())
        mine = lambda i, g, v: _vjp_and_jvp(gate, i, others, g, v)
        ref = lambda i, g, v: _vjp_and_jvp(gate.forward, i, others, g, v)
        if mode == "jit":
            mine, ref = jax.jit(mine), jax.jit(ref)
        assert_trees_close(mine(inputs, g, v), ref(inputs, g, v))


def _functions_of_inputs(gate, names, others):
    return (lambda *x: gate(**dict(zip(names, x)), **others),
            lambda *x: gate.forward(**dict(zip(names, x)), **others))


@pytest.mark.parametrize("name", GATE_NAMES)
def test_rules_under_vmap(name):
    """A batch of two points through jax.vmap equals JAX's autodiff of the forward, and an
    unbatched input broadcast over the batch gets the sum of the per-example cotangents."""
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        inputs, others = bound_arguments(gate, *first_point(name))
        inputs = as_dtype(inputs, jnp.float64)
        batch = jax.tree.map(lambda p, q: jnp.stack([p, q]), inputs, random_like(inputs, seed=4))
        x, v = tuple(batch.values()), tuple(random_like(batch, seed=5).values())
        f, ref = _functions_of_inputs(gate, list(inputs), others)
        argnums = tuple(range(len(x)))
        scalar = lambda fn: lambda *x: jnp.sum(jnp.sin(fn(*x)))
        jvp = lambda fn: lambda x, v: jax.jvp(fn, x, v)[1]
        assert_trees_close(jax.vmap(jax.grad(scalar(f), argnums))(*x),
                           jax.vmap(jax.grad(scalar(ref), argnums))(*x))
        assert_trees_close(jax.vmap(jvp(f))(x, v), jax.vmap(jvp(ref))(x, v))
        if len(x) > 1:
            unbatched = jax.tree.map(lambda t: t[0], x[-1])
            in_axes = (*[0] * (len(x) - 1), None)
            mapped = lambda fn: lambda *xs: jnp.sum(jnp.sin(jax.vmap(fn, in_axes)(*xs)))
            assert_trees_close(jax.grad(mapped(f), argnums)(*x[:-1], unbatched),
                               jax.grad(mapped(ref), argnums)(*x[:-1], unbatched))


@pytest.mark.parametrize("name", GATE_NAMES)
def test_second_order_jax_hessian_and_grad_of_grad(name):
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        inputs, others = bound_arguments(gate, *first_point(name))
        inputs = as_dtype(inputs, jnp.float64)
        names = list(inputs)
        first = inputs[names[0]]
        rest = {n: inputs[n] for n in names[1:]}
        scalar = lambda fn: lambda x0: jnp.sum(jnp.sin(fn(**{names[0]: x0}, **rest, **others)))
        assert_trees_close(jax.jit(jax.hessian(scalar(gate)))(first),
                           jax.hessian(scalar(gate.forward))(first), rtol=1e-9)
        grad_of_grad = lambda fn: jax.grad(lambda x0: inner(jax.grad(scalar(fn))(x0),
                                                            random_like(x0, seed=6)))
        assert_trees_close(grad_of_grad(gate)(first), grad_of_grad(gate.forward)(first), rtol=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
@pytest.mark.parametrize("name", GATE_NAMES)
def test_gradients_come_back_in_the_input_dtype(name, dtype):
    gate = gates.ALL[name]
    with jax.enable_x64(dtype == jnp.float64):
        inputs, others = bound_arguments(gate, *first_point(name))
        inputs = as_dtype(inputs, dtype)
        names = list(inputs)
        f = lambda *x: jnp.sum(gate(**dict(zip(names, x)), **others).astype(jnp.float32))
        grads = jax.grad(f, argnums=tuple(range(len(names))))(*inputs.values())
        for grad, x in zip(jax.tree.leaves(grads), jax.tree.leaves(inputs)):
            assert grad.dtype == x.dtype and grad.shape == x.shape
            assert np.all(np.isfinite(np.asarray(grad, np.float32)))
        ref = jax.grad(lambda *x: jnp.sum(gate.forward(**dict(zip(names, x)), **others)
                                          .astype(jnp.float32)),
                       argnums=tuple(range(len(names))))(*inputs.values())
        rtol = {jnp.bfloat16: 5e-2, jnp.float32: 1e-4, jnp.float64: 1e-10}[dtype]
        assert_trees_close(as_dtype(grads, jnp.float32), as_dtype(ref, jnp.float32),
                           rtol=rtol, atol=rtol)


def test_check_gate_holds_a_python_number_input_constant():
    """check_gate(power, x, 2) with negative x checks d/dx (finite) and holds p = 2 constant, as
    the call does; with p an array, d/dp = x^p log x is NaN at x < 0 and the check says so."""
    x = jnp.array([-1.5, -0.5, 0.7, 2.0])
    report = difprog.check_gate(gates.power, x, 2)
    assert report.ok, str(report)
    assert "p=2 (held constant: p)" in report.shapes and "held constant" in str(report)
    assert not difprog.check_gate(gates.power, x, jnp.asarray(2.0)).ok
    wrong = gates.power.with_rules(backward=lambda g, out, x, p: (3 * g * x, jnp.zeros_like(p)))
    assert not difprog.check_gate(wrong, x, 2).ok  # d/dx is still checked
    both_numbers = difprog.check_gate(gates.multiply, 2.0, 3.0)  # all numbers: all varied
    assert both_numbers.ok and both_numbers.errors["reverse"] < 1e-12


# Gates whose later points hold options that no test of their family runs under vmap (the
# convolutions, pools, losses and attention have their own).
EVERY_POINT = ["gelu", "softplus", "power", "rms_norm", "embedding"]


def _cases():
    for name in EVERY_POINT:
        for i in range(len(check_points(name))):
            yield pytest.param(name, i, id=f"{name}-{i}")


@pytest.mark.parametrize("name, index", list(_cases()))
def test_every_point_under_vmap_matches_autodiff_of_forward(name, index):
    """A batch of two copies of each point (one perturbed) through jax.vmap, gradients and
    tangents, against JAX's autodiff of the forward."""
    gate = gates.ALL[name]
    with jax.enable_x64(True):
        inputs, others = bound_arguments(gate, *check_points(name)[index])
        inputs = as_dtype(inputs, jnp.float64)
        batch = jax.tree.map(lambda p, q: jnp.stack([p, p + 0.01 * q]), inputs,
                             random_like(inputs, seed=4))
        x, v = tuple(batch.values()), tuple(random_like(batch, seed=5).values())
        names = list(inputs)
        arrays = {k: jnp.stack([w, w]) for k, w in others.items() if k in gate.array_names}
        static = {k: w for k, w in others.items() if k not in arrays}

        def run(fn):
            f = lambda a, *x: fn(**dict(zip(names, x)), **a, **static)
            grad = jax.grad(lambda a, *x: jnp.sum(jnp.sin(f(a, *x))), tuple(range(1, len(x) + 1)))
            jvp = lambda a, x, v: jax.jvp(lambda *x: f(a, *x), x, v)[1]
            return jax.vmap(grad)(arrays, *x), jax.vmap(jvp)(arrays, x, v)

        assert_trees_close(jax.jit(lambda: run(gate))(), run(gate.forward))
