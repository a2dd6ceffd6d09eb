"""The activation gates (difprog/gates/activations.py) against independent references: gelu's
exact and tanh forms, softplus's beta and threshold, against jax.nn, hand formulas and, where
installed, torch (float64); finite values and gradients for |x| up to 1e4 in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from difprog import gates
from difprog.errors import DtypeError
from tests.conftest import EXTREME_VALUES as X
from tests.conftest import grad_of_sum, torch_or_skip, torch_tensor


@pytest.mark.parametrize("name, expected", [
    ("sigmoid", [0, 0, 0.26894143, 0.5, 0.7310586, 1, 1]),
    ("softplus", [0, 0, 0.31326166, 0.6931472, 1.3132616, 100, 1e4]),
    ("tanh", [-1, -1, -0.7615942, 0, 0.7615942, 1, 1]),
])
def test_sigmoid_softplus_tanh_are_stable_for_large_inputs(name, expected):
    gate = gates.ALL[name]
    np.testing.assert_allclose(gate(X), expected, rtol=1e-6, atol=1e-30)
    grad = jax.vmap(jax.grad(gate))(X)
    hess = jax.vmap(jax.hessian(gate))(X)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))


ABOVE = 1e4  # the activations stay finite, values and gradients, for |x| up to this


def test_gelu_is_exact_by_default_and_tanh_with_approximate():
    with jax.enable_x64(True):
        x = jnp.linspace(-6.0, 6.0, 41)
        for approximate in (False, True):
            ref = lambda x, a=approximate: jax.nn.gelu(x, approximate=a)
            kwargs = {"approximate": True} if approximate else {}
            # atol: jax.nn.gelu's 1 + tanh(u) cancels for x << 0 (ours is sigmoid(2 u))
            np.testing.assert_allclose(gates.gelu(x, **kwargs), ref(x), rtol=1e-13, atol=1e-14)
            gelu = lambda x, kwargs=kwargs: gates.gelu(x, **kwargs)
            np.testing.assert_allclose(grad_of_sum(gelu)(x), grad_of_sum(ref)(x), rtol=1e-12,
                                       atol=1e-14)
            np.testing.assert_allclose(jax.jvp(gelu, (x,), (jnp.ones_like(x),))[1],
                                       grad_of_sum(ref)(x), rtol=1e-12, atol=1e-14)
        assert not np.allclose(gates.gelu(x), jax.nn.gelu(x))  # jax.nn's default is tanh


def test_gelu_tanh_form_by_hand():
    with jax.enable_x64(True):
        x = np.array([-3.0, -0.7, 0.0, 0.4, 2.5])
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        t = np.tanh(u)
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (
            1 + 3 * 0.044715 * x * x)
        gelu = lambda x: gates.gelu(x, approximate=True)
        np.testing.assert_allclose(gelu(jnp.asarray(x)), 0.5 * x * (1 + t), rtol=1e-14)
        np.testing.assert_allclose(grad_of_sum(gelu)(jnp.asarray(x)), slope, rtol=1e-13)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_is_finite_for_large_inputs(approximate):
    x = jnp.array([-ABOVE, -50.0, 50.0, ABOVE], jnp.float32)
    gelu = lambda x: gates.gelu(x, approximate=approximate)
    np.testing.assert_array_equal(gelu(x), [0, 0, 50, ABOVE])
    np.testing.assert_array_equal(grad_of_sum(gelu)(x), [0, 0, 1, 1])
    np.testing.assert_array_equal(jax.jvp(gelu, (x,), (jnp.ones_like(x),))[1], [0, 0, 1, 1])


def test_gelu_approximate_must_be_a_bool():
    for bad in (1, "tanh", None):
        with pytest.raises(DtypeError, match=r"'gelu'.*'approximate'.*True.*False"):
            gates.gelu(jnp.ones(3), approximate=bad)


def _softplus_by_hand(x, beta, threshold):
    bx = beta * x
    above = bx > threshold
    return np.where(above, x, np.logaddexp(bx, 0) / beta), np.where(above, 1, expit(bx))


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 1.0), (0.5, 3.0), (-1.5, 2.0),
                                             (-1.0, -1.0), (3, 5)])
def test_softplus_beta_and_threshold_by_hand(beta, threshold):
    with jax.enable_x64(True):
        x = np.linspace(-8.0, 8.0, 33) + 0.01  # clear of every threshold's jump
        value, slope = _softplus_by_hand(x, beta, threshold)
        softplus = lambda x: gates.softplus(x, beta=beta, threshold=threshold)
        np.testing.assert_allclose(softplus(jnp.asarray(x)), value, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(grad_of_sum(softplus)(jnp.asarray(x)), slope, rtol=1e-13)
        np.testing.assert_allclose(jax.jvp(softplus, (jnp.asarray(x),), (jnp.ones(33),))[1],
                                   slope, rtol=1e-13)


def test_softplus_default_is_jax_nn_softplus():
    with jax.enable_x64(True):
        x = jnp.linspace(-30.0, 19.0, 50)
        np.testing.assert_allclose(gates.softplus(x), jax.nn.softplus(x), rtol=1e-14)
        np.testing.assert_allclose(grad_of_sum(gates.softplus)(x), grad_of_sum(jax.nn.softplus)(x),
                                   rtol=1e-14)


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 1.0), (-1.5, 2.0),
                                             (1.0, 1e6), (-1.0, 1e6)])
def test_softplus_is_finite_for_large_inputs(beta, threshold):
    x = jnp.array([-ABOVE, -100.0, 100.0, ABOVE], jnp.float32)
    softplus = lambda x: gates.softplus(x, beta=beta, threshold=threshold)
    for result in (softplus(x), grad_of_sum(softplus)(x), jax.jvp(softplus, (x,), (x,))[1]):
        assert np.isfinite(np.asarray(result)).all()
    value, slope = _softplus_by_hand(np.asarray(x, np.float64), beta, threshold)
    np.testing.assert_allclose(softplus(x), value, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad_of_sum(softplus)(x), slope, rtol=1e-6, atol=1e-30)


def test_softplus_refuses_a_zero_or_non_finite_beta_and_threshold():
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=r"'softplus'.*'beta'.*nonzero.*got 0"):
        gates.softplus(x, beta=0)
    with pytest.raises(ValueError, match=r"'softplus'.*'beta'.*got inf"):
        gates.softplus(x, beta=math.inf)
    with pytest.raises(ValueError, match=r"'softplus'.*'threshold'.*got nan"):
        gates.softplus(x, threshold=math.nan)
    with pytest.raises(DtypeError, match=r"'softplus'.*'beta'"):
        gates.softplus(x, beta="2")


def test_gelu_and_softplus_against_torch():
    torch, F = torch_or_skip()
    with jax.enable_x64(True):
        x = np.linspace(-6.0, 6.0, 25) + 0.01
        cases = [(lambda x: gates.gelu(x, approximate=True),
                  lambda t: F.gelu(t, approximate="tanh")),
                 (gates.gelu, F.gelu)]
        cases += [(lambda x, b=b, th=th: gates.softplus(x, beta=b, threshold=th),
                   lambda t, b=b, th=th: F.softplus(t, beta=b, threshold=th))
                  for b, th in [(1.0, 20.0), (2.0, 1.0), (-1.5, 2.0), (0.5, -1.0)]]
        for mine, theirs in cases:
            t = torch_tensor(torch, x)
            out = theirs(t)
            (grad,) = torch.autograd.grad(out.sum(), t)
            np.testing.assert_allclose(mine(jnp.asarray(x)), out.detach().numpy(), rtol=1e-12,
                                       atol=1e-15)
            np.testing.assert_allclose(grad_of_sum(mine)(jnp.asarray(x)), grad.numpy(), rtol=1e-12,
                                       atol=1e-15)
