"""The arithmetic gates (difprog/gates/arithmetic.py): power with a constant or an array exponent,
its conventions at x = 0 and x < 0 (JAX's), against hand formulas and, where installed, torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import gates
from difprog.errors import DtypeError
from tests.conftest import grad_of_sum, torch_or_skip, torch_tensor


def test_power_with_a_constant_on_negative_x():
    with jax.enable_x64(True):
        assert float(jax.grad(lambda x: gates.power(x, 3.0))(-2.0)) == 12.0
        assert float(jax.jvp(lambda x: gates.power(x, 3.0), (-2.0,), (1.0,))[1]) == 12.0
        assert float(jax.jit(jax.hessian(lambda x: gates.power(x, 3.0)))(-2.0)) == -12.0
        assert float(gates.power(-3.0, 2)) == 9.0
        assert float(jax.grad(lambda x: gates.power(x, 2))(-3.0)) == -6.0
        lin = jax.linearize(lambda x: gates.power(x, 3), jnp.array([-2.0, -1.0]))[1]
        np.testing.assert_array_equal(lin(jnp.ones(2)), [12.0, 3.0])


def test_power_with_a_python_number_keeps_the_input_dtype():
    x = jnp.array([1.5, 2.0], jnp.float32)
    for p in (2, 0.5, -1):
        assert gates.power(x, p).dtype == jnp.float32
        assert jax.grad(lambda x, p=p: jnp.sum(gates.power(x, p)))(x).dtype == jnp.float32
    assert gates.power(x.astype(jnp.bfloat16), 3).dtype == jnp.bfloat16


def test_power_refuses_an_integer_array_exponent():
    with pytest.raises(DtypeError, match=r"'power'.*'p'.*int32"):
        gates.power(jnp.ones(3), jnp.array([1, 2, 3], jnp.int32))


_BASES = [-2.0, -0.5, 0.0, 0.5, 2.0]


_EXPONENTS = [-1.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0]


def test_power_follows_jax_conventions_at_zero_and_below():
    """Both derivatives equal jax.grad of jnp.power (an array exponent) everywhere, NaN for
    NaN, but for d/dx at x = 0, p = 0: 0, as jnp.power with an integer 0 and torch give
    (JAX's float rule gives 0 * 0^-1 = NaN there)."""
    with jax.enable_x64(True):
        x, p = (jnp.asarray(a) for a in np.meshgrid(_BASES, _EXPONENTS))
        mine = jax.jit(grad_of_sum(gates.power, (0, 1)))(x, p)
        ref = list(grad_of_sum(jnp.power, (0, 1))(x, p))
        at_zero = (x == 0) & (p == 0)
        assert np.isnan(ref[0][at_zero]).all()
        ref[0] = jnp.where(at_zero, grad_of_sum(lambda x: jnp.power(x, 0))(x), ref[0])
        np.testing.assert_allclose(gates.power(x, p), jnp.power(x, p), rtol=1e-15)
        for m, r in zip(mine, ref):
            np.testing.assert_allclose(m, r, rtol=1e-14, equal_nan=True)
        tangents = [jax.jvp(lambda *a: gates.power(*a), (x, p), t)[1]
                    for t in ((jnp.ones_like(x), jnp.zeros_like(p)),
                              (jnp.zeros_like(x), jnp.ones_like(p)))]
        for t, r in zip(tangents, ref):
            np.testing.assert_allclose(t, r, rtol=1e-14, equal_nan=True)


def test_power_gradient_of_the_exponent_alone_at_zero_base():
    with jax.enable_x64(True):
        for p in (0.5, 2.0):
            assert float(jax.grad(lambda p: gates.power(0.0, p))(p)) == 0.0
            assert float(jax.jvp(lambda p: gates.power(0.0, p), (p,), (1.0,))[1]) == 0.0


def test_power_broadcasts_an_array_exponent():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x, p = rng.uniform(0.5, 2, (2, 1, 4)), rng.standard_normal((3, 1))
        gx, gp = grad_of_sum(gates.power, (0, 1))(x, p)
        out = x**p
        np.testing.assert_allclose(gx, np.sum(p * x ** (p - 1), axis=1, keepdims=True),
                                   rtol=1e-13)
        np.testing.assert_allclose(gp, np.sum(out * np.log(x), axis=(0, 2))[:, None],
                                   rtol=1e-13)


def test_power_with_a_tensor_exponent_against_torch():
    torch, _ = torch_or_skip()
    with jax.enable_x64(True):
        x, p = np.meshgrid(_BASES, _EXPONENTS)
        tx, tp = torch_tensor(torch, x), torch_tensor(torch, p)
        out = torch.pow(tx, tp)
        gx, gp = torch.autograd.grad(out.sum(), (tx, tp))
        mine = grad_of_sum(gates.power, (0, 1))(jnp.asarray(x), jnp.asarray(p))
        np.testing.assert_allclose(gates.power(x, p), out.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(mine[0], gx.numpy(), rtol=1e-14)
        # d/dp differs only at x = 0, p < 0: torch inf * log(0) = -inf, JAX log(1) * inf = NaN.
        differ = (x == 0) & (p < 0)
        np.testing.assert_allclose(np.asarray(mine[1])[~differ], gp.numpy()[~differ],
                                   rtol=1e-14)
        assert np.isnan(np.asarray(mine[1])[differ]).all()
