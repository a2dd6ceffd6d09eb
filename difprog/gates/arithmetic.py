"""Arithmetic gates: each forward beside its hand-written derivative or backward rule.

Patterns from the lectures: the add gate distributes the gradient, the mul gate swaps its inputs,
a broadcast (copy) adds gradients back up, the max gate routes the gradient to the winner.
Elementwise gates state their local derivative once (`elementwise`); linear gates state their
backward and take the forward as their tangent (`linear`).
"""

from __future__ import annotations

import jax.numpy as jnp

from difprog.gate import elementwise, gate, linear, unbroadcast
from difprog.gates._util import keep_nan


def _add(x, y):
    """add(x, y) = x + y; d/dx = d/dy = 1: the add gate distributes the gradient."""
    return x + y

def _add_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(g, y.shape)

add = linear(_add, _add_backward)


def _subtract(x, y):
    """subtract(x, y) = x - y; d/dx = 1, d/dy = -1."""
    return x - y

def _subtract_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(-g, y.shape)

subtract = linear(_subtract, _subtract_backward)


def _negative(x):
    """negative(x) = -x; d = -1."""
    return -x

def _negative_backward(g, out, x):
    return (-g,)

negative = linear(_negative, _negative_backward)


def _multiply(x, y):
    """multiply(x, y) = x y; d/dx = y, d/dy = x: the mul gate swaps its inputs."""
    return x * y

multiply = elementwise(_multiply, lambda out, x, y: (y, x))


def _divide(x, y):
    """divide(x, y) = x / y; d/dx = 1 / y, d/dy = -x / y^2 = -out / y."""
    return x / y

def _divide_derivative(out, x, y):
    slope = 1 / y
    return slope, -out * slope

divide = elementwise(_divide, _divide_derivative)


def _square(x):
    """square(x) = x^2; d = 2 x."""
    return x * x

square = elementwise(_square, lambda out, x: 2 * x)


def _sqrt(x):
    """sqrt(x); d = 1 / (2 sqrt(x))."""
    return jnp.sqrt(x)

sqrt = elementwise(_sqrt, lambda out, x: 1 / (2 * out))


def _power(x, p):
    """power(x, p) = x^p, p a number or an array (broadcast against x); d/dx = p x^(p - 1)
    (0 where p = 0), d/dp = x^p log(x) (0 at x = 0, NaN for x < 0: JAX's conventions)."""
    return jnp.power(x, p)

def _power_partials(out, x, p):
    dx = jnp.where(p == 0, 0, p * jnp.power(x, p - 1))
    dp = out * jnp.log(jnp.where(x == 0, 1, x))
    return dx, dp

def _power_backward(g, out, x, p):
    dx, dp = _power_partials(out, x, p)
    return unbroadcast(g * dx, x.shape), unbroadcast(g * dp, jnp.shape(p))

def _power_tangent(dx, dp, out, x, p):
    sx, sp = _power_partials(out, x, p)
    return jnp.broadcast_to(_times(dx, sx) + _times(dp, sp), out.shape)

def _times(tangent, slope):
    """tangent * slope, but 0 where the tangent is 0: an input held constant adds nothing, even
    where its slope is NaN (d/dp at x < 0) or infinite (d/dx at x = 0, p < 1), as in JAX."""
    return jnp.where(tangent == 0, 0, tangent * slope)

# Not `elementwise`: its tangent, sum of dx * d/dx, would turn power(x, 3.0)'s unused
# 0 * d/dp = 0 * NaN at x < 0 into a NaN tangent.
power = gate(_power, backward=_power_backward, tangent=_power_tangent)


def _exp(x):
    """exp(x); d = exp(x) = out."""
    return jnp.exp(x)

exp = elementwise(_exp, lambda out, x: out)


def _log(x):
    """log(x); d = 1 / x."""
    return jnp.log(x)

log = elementwise(_log, lambda out, x: 1 / x)


def _reciprocal(x):
    """reciprocal(x) = 1 / x; d = -1 / x^2 = -out^2."""
    return 1 / x

reciprocal = elementwise(_reciprocal, lambda out, x: -out * out)


def _abs(x):
    """abs(x) = |x|; d = 1 for x >= 0 and -1 below (abs'(0) = 1, as in JAX); NaN stays NaN."""
    return jnp.abs(x)

abs = elementwise(_abs, lambda out, x: keep_nan(x, jnp.where(x >= 0, 1, -1).astype(x.dtype)))


def _maximum(x, y):
    """maximum(x, y); the gradient goes to the larger input, split equally on ties."""
    return jnp.maximum(x, y)

def _maximum_derivative(out, x, y):
    share = _winner_share(x, y)
    return share, 1 - share

maximum = elementwise(_maximum, _maximum_derivative)


def _minimum(x, y):
    """minimum(x, y); the gradient goes to the smaller input, split equally on ties."""
    return jnp.minimum(x, y)

def _minimum_derivative(out, x, y):
    share = _winner_share(y, x)
    return share, 1 - share

minimum = elementwise(_minimum, _minimum_derivative)


def _winner_share(x, y):
    """1 where x wins, 0 where y wins, 1/2 on a tie, NaN where either is NaN."""
    share = jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0)).astype(jnp.result_type(x, y))
    return jnp.where(jnp.isnan(x) | jnp.isnan(y), jnp.nan, share)
