"""Property tests: elementwise and reduction gates agree with JAX's autodiff of their forward
over generated shapes and values."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from difprog import gates

SETTINGS = settings(max_examples=15, deadline=None)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
finite = st.floats(-5, 5, allow_nan=False, width=64)
positive = st.floats(0.1, 5, width=64)

SMOOTH_UNARY = ["negative", "square", "exp", "sigmoid", "tanh", "softplus", "gelu"]
POSITIVE_UNARY = ["sqrt", "log", "reciprocal"]
KINKED_UNARY = ["relu", "abs", "leaky_relu"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]


def _agree(f, ref, *x):
    with jax.enable_x64(True):
        x = tuple(jnp.asarray(a, jnp.float64) for a in x)
        argnums = tuple(range(len(x)))
        scalar = lambda fn: lambda *a: jnp.sum(jnp.sin(fn(*a)))
        np.testing.assert_allclose(f(*x), ref(*x), rtol=1e-12, atol=1e-12)
        for mine, theirs in zip(jax.grad(scalar(f), argnums)(*x), jax.grad(scalar(ref), argnums)(*x)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
        v = tuple(jnp.cos(a) for a in x)
        np.testing.assert_allclose(jax.jvp(f, x, v)[1], jax.jvp(ref, x, v)[1], rtol=1e-10, atol=1e-12)


@SETTINGS
@given(st.sampled_from(SMOOTH_UNARY + KINKED_UNARY), hnp.arrays(np.float64, shapes, elements=finite))
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
@given(st.sampled_from(["sum", "mean", "max", "logsumexp", "softmax", "log_softmax"]),
       hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                  elements=finite), st.data())
def test_reductions_over_any_axis(name, x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    gate = gates.ALL[name]
    _agree(lambda x: gate(x, axis=axis), lambda x: gate.forward(x, axis=axis), x)
