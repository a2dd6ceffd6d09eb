"""Numerically stable forms: finite values and gradients for |x| up to 1e4 in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.gates import check_points

X = jnp.array([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4], jnp.float32)


@pytest.mark.parametrize("name, expected", [
    ("sigmoid", [0, 0, 0.26894143, 0.5, 0.7310586, 1, 1]),
    ("softplus", [0, 0, 0.31326166, 0.6931472, 1.3132616, 100, 1e4]),
    ("tanh", [-1, -1, -0.7615942, 0, 0.7615942, 1, 1]),
])
def test_elementwise(name, expected):
    gate = gates.ALL[name]
    np.testing.assert_allclose(gate(X), expected, rtol=1e-6, atol=1e-30)
    grad = jax.vmap(jax.grad(gate))(X)
    hess = jax.vmap(jax.hessian(gate))(X)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))


@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax"])
def test_softmax_family(name):
    gate = gates.ALL[name]
    x = jnp.stack([X, -X, jnp.full(7, 1e4)])
    out = gate(x)
    assert np.all(np.isfinite(out))
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(gate(x))))(x)
    assert np.all(np.isfinite(grad))
    tangent = jax.jvp(gate, (x,), (jnp.ones_like(x),))[1]
    assert np.all(np.isfinite(tangent))


def test_logsumexp_values():
    np.testing.assert_allclose(gates.logsumexp(jnp.array([1e4, -1e4])), 1e4)
    np.testing.assert_allclose(gates.logsumexp(jnp.array([1e4, 1e4])), 1e4 + np.log(2), rtol=1e-7)


def test_softmax_cross_entropy():
    logits = jnp.stack([X, -X])
    labels = jnp.array([0, 0])
    loss, grad = jax.value_and_grad(gates.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(loss, (2e4 + 0.0) / 2, rtol=1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", list(gates.ALL))
def test_nan_in_gives_nan_out_never_a_silent_number(name):
    args, kwargs = check_points(name)[0]
    gate = gates.ALL[name]
    poisoned = list(args)
    first = gate.input_names[0]
    index = list(gate.signature.parameters).index(first)
    poisoned[index] = jax.tree.map(lambda a: jnp.asarray(a).at[(0,) * jnp.ndim(a)].set(jnp.nan)
                                   if jnp.ndim(a) else jnp.asarray(jnp.nan), poisoned[index])
    assert np.isnan(np.asarray(gate(*poisoned, **kwargs))).any(), name
