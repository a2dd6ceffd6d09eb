"""Property tests: elementwise and reduction gates agree with JAX's autodiff of their forward
over generated shapes and values; which gates, and on which values, each registers (`domain=`)."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from difprog import gates
from difprog.gates import REGISTRY

SETTINGS = settings(max_examples=15, deadline=None)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
finite = st.floats(-5, 5, allow_nan=False, width=64)
positive = st.floats(0.1, 5, width=64)


def _with_domain(domain, *, inputs, axis=False):
    """Registered gates of `domain` with that many inputs, with (or without) an `axis`."""
    return [name for name, entry in REGISTRY.items()
            if entry.domain == domain and len(entry.gate.input_names) == inputs
            and ("axis" in entry.gate.static_names) == axis]


UNARY = _with_domain("real", inputs=1)
POSITIVE_UNARY = _with_domain("positive", inputs=1)
BINARY = _with_domain("real", inputs=2)
REDUCTIONS = _with_domain("real", inputs=1, axis=True)


def test_the_registry_gives_each_property_its_gates():
    """At least today's gates, as registered: a gate registered with a domain joins its
    property, and none of these leaves one unnoticed."""
    assert set(UNARY) >= {"negative", "square", "exp", "sigmoid", "tanh", "softplus", "gelu",
                          "relu", "abs", "leaky_relu"}
    assert set(POSITIVE_UNARY) >= {"sqrt", "log", "reciprocal"}
    assert set(BINARY) >= {"add", "subtract", "multiply", "maximum", "minimum"}
    assert set(REDUCTIONS) >= {"sum", "mean", "max", "logsumexp", "softmax", "log_softmax"}


def _agree(f, ref, *x):
    with jax.enable_x64(True):
        x = tuple(jnp.asarray(a, jnp.float64) for a in x)
        argnums = tuple(range(len(x)))
        scalar = lambda fn: lambda *a: jnp.sum(jnp.sin(fn(*a)))
        np.testing.assert_allclose(f(*x), ref(*x), rtol=1e-12, atol=1e-12)
        for mine, theirs in zip(jax.grad(scalar(f), argnums)(*x),
                                jax.grad(scalar(ref), argnums)(*x)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
        v = tuple(jnp.cos(a) for a in x)
        np.testing.assert_allclose(jax.jvp(f, x, v)[1], jax.jvp(ref, x, v)[1], rtol=1e-10,
                                   atol=1e-12)


@SETTINGS
@given(st.sampled_from(UNARY), hnp.arrays(np.float64, shapes, elements=finite))
def test_unary(name, x):
    _agree(gates.ALL[name], gates.ALL[name].forward, x)


@SETTINGS
@given(st.sampled_from(POSITIVE_UNARY), hnp.arrays(np.float64, shapes, elements=positive))
def test_unary_on_positive_values(name, x):
    _agree(gates.ALL[name], gates.ALL[name].forward, x)


@SETTINGS
@given(st.sampled_from(BINARY), hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3,
                                                                  max_side=3), st.data())
def test_binary_with_broadcasting(name, shapes, data):
    x, y = (data.draw(hnp.arrays(np.float64, s, elements=finite)) for s in shapes.input_shapes)
    _agree(gates.ALL[name], gates.ALL[name].forward, x, y)


@SETTINGS
@given(st.sampled_from(REDUCTIONS),
       hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                  elements=finite), st.data())
def test_reductions_over_any_axis(name, x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    gate = gates.ALL[name]
    _agree(lambda x: gate(x, axis=axis), lambda x: gate.forward(x, axis=axis), x)
