"""Worked examples from the standard backprop lectures, reproduced through difprog gates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difprog import gates


def test_add_then_multiply_circuit():
    """f = (x + y) z at x=-2, y=5, z=-4: q = 3, f = -12, df/dx = df/dy = z = -4, df/dz = q = 3."""
    f = lambda x, y, z: gates.multiply(gates.add(x, y), z)
    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
    assert float(value) == -12.0
    assert [float(g) for g in grads] == [-4.0, -4.0, 3.0]


def test_sigmoid_neuron():
    """f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w=(2,-3,-3), x=(-1,-2): f = 0.73,
    dx = (0.39, -0.59), dw = (-0.20, -0.39, 0.20)."""
    def neuron(w, x):
        dot = gates.add(gates.add(gates.multiply(w[0], x[0]), gates.multiply(w[1], x[1])), w[2])
        return gates.sigmoid(dot)
    w, x = jnp.array([2.0, -3.0, -3.0]), jnp.array([-1.0, -2.0])
    value, (dw, dx) = jax.value_and_grad(neuron, argnums=(0, 1))(w, x)
    assert round(float(value), 2) == 0.73
    np.testing.assert_array_equal(np.round(np.asarray(dx, np.float64), 2), [0.39, -0.59])
    np.testing.assert_array_equal(np.round(np.asarray(dw, np.float64), 2), [-0.20, -0.39, 0.20])


def test_matmul_backward_shapes():
    """D = W X with W (5, 10), X (10, 3): dW = dD X^T is (5, 10), dX = W^T dD is (10, 3)."""
    key_w, key_x, key_d = jax.random.split(jax.random.key(0), 3)
    W = jax.random.normal(key_w, (5, 10))
    X = jax.random.normal(key_x, (10, 3))
    dD = jax.random.normal(key_d, (5, 3))
    D, vjp = jax.vjp(gates.matmul, W, X)
    dW, dX = vjp(dD)
    assert D.shape == (5, 3) and dW.shape == W.shape and dX.shape == X.shape
    np.testing.assert_allclose(dW, dD @ X.T, rtol=1e-6)
    np.testing.assert_allclose(dX, W.T @ dD, rtol=1e-6)


def test_relu_over_a_vector_routes_gradient_to_positive_entries():
    x = jnp.array([-1.0, 2.0, 0.0, -3.0, 4.0])
    out, vjp = jax.vjp(gates.relu, x)
    np.testing.assert_array_equal(out, [0.0, 2.0, 0.0, 0.0, 4.0])
    np.testing.assert_array_equal(vjp(jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]))[0],
                                  [0.0, 2.0, 0.0, 0.0, 5.0])


def test_gate_patterns_add_distributes_mul_swaps_max_routes_copy_adds():
    g = jnp.array(2.0)
    assert [float(c) for c in jax.vjp(gates.add, 3.0, -1.0)[1](g)] == [2.0, 2.0]
    assert [float(c) for c in jax.vjp(gates.multiply, 3.0, -1.0)[1](g)] == [-2.0, 6.0]
    assert [float(c) for c in jax.vjp(gates.maximum, 3.0, -1.0)[1](g)] == [2.0, 0.0]
    assert [float(c) for c in jax.vjp(gates.maximum, 3.0, 3.0)[1](g)] == [1.0, 1.0]
    # A broadcast copies y to every row, so its gradient is the sum over the rows.
    _, vjp = jax.vjp(gates.add, jnp.zeros((3, 2)), jnp.zeros(2))
    np.testing.assert_array_equal(vjp(jnp.ones((3, 2)))[1], [3.0, 3.0])
