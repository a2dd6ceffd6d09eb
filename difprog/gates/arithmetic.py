"""Arithmetic gates: each forward beside its hand-written derivative or backward rule.

Patterns from the lectures: the add gate distributes the gradient, the mul gate swaps its inputs,
a broadcast (copy) adds gradients back up, the max gate routes the gradient to the winner.
Elementwise gates state their local derivative once (`elementwise`); linear gates state their
backward and take the forward as their tangent (`linear`). Each gate is registered beside its
rules with the points at which it is proven.
"""

from __future__ import annotations

import jax.numpy as jnp

from difprog.gate import elementwise, gate, linear, unbroadcast
from difprog.gates._util import keep_nan
from difprog.gates.points import (
    apart,
    away_from_zero,
    binary,
    empty,
    empty_binary,
    empty_unary,
    normal,
    positive,
    unary,
)
from difprog.gates.registry import register

__all__ = ["abs", "add", "divide", "exp", "log", "maximum", "minimum", "multiply", "negative",
           "power", "reciprocal", "sqrt", "square", "subtract"]


def _add(x, y):
    """add(x, y) = x + y; d/dx = d/dy = 1: the add gate distributes the gradient."""
    return x + y

def _add_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(g, y.shape)

add = register(linear(_add, _add_backward), points=binary(normal), zero_size=empty_binary,
               affine=("x", "y"), domain="real")


def _subtract(x, y):
    """subtract(x, y) = x - y; d/dx = 1, d/dy = -1."""
    return x - y

def _subtract_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(-g, y.shape)

subtract = register(linear(_subtract, _subtract_backward), points=binary(normal),
                    zero_size=empty_binary, affine=("x", "y"), domain="real")


def _multiply(x, y):
    """multiply(x, y) = x y; d/dx = y, d/dy = x: the mul gate swaps its inputs."""
    return x * y

multiply = register(elementwise(_multiply, lambda out, x, y: (y, x)), points=binary(normal),
                    zero_size=empty_binary, domain="real")


def _divide(x, y):
    """divide(x, y) = x / y; d/dx = 1 / y, d/dy = -x / y^2 = -out / y."""
    return x / y

def _divide_derivative(out, x, y):
    slope = 1 / y
    return slope, -out * slope

def _divide_points(rng):
    return [((normal(rng, *a), away_from_zero(rng, *b)), {})
            for a, b in [((), ()), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]]

divide = register(elementwise(_divide, _divide_derivative), points=_divide_points,
                  zero_size=empty_binary)


def _negative(x):
    """negative(x) = -x; d = -1."""
    return -x

def _negative_backward(g, out, x):
    return (-g,)

negative = register(linear(_negative, _negative_backward), points=unary(normal),
                    zero_size=empty_unary, affine=("x",), domain="real")


def _square(x):
    """square(x) = x^2; d = 2 x."""
    return x * x

square = register(elementwise(_square, lambda out, x: 2 * x), points=unary(normal),
                  zero_size=empty_unary, domain="real", expression=True)


def _sqrt(x):
    """sqrt(x); d = 1 / (2 sqrt(x))."""
    return jnp.sqrt(x)

sqrt = register(elementwise(_sqrt, lambda out, x: 1 / (2 * out)), points=unary(positive),
                zero_size=empty_unary, domain="positive", expression=True)


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
def _power_points(rng):
    return [((positive(rng, 3, 4), 3.0), {}), ((positive(rng, 5), 0.5), {}),
            ((positive(rng, 2, 3), -1.5), {}), ((positive(rng, 3, 4), normal(rng, 4)), {}),
            ((positive(rng, 2, 1, 4), normal(rng, 3, 1)), {}),
            ((positive(rng, 5), normal(rng, 2, 5)), {})]

def _power_zero_size():
    return [((empty(2, 0), 3.0), {}), ((empty(0), 0.5), {}), ((empty(0, 3), empty(3)), {}),
            ((empty(2, 1), empty(0)), {})]

power = register(gate(_power, backward=_power_backward, tangent=_power_tangent),
                 points=_power_points, zero_size=_power_zero_size, expression=True)


def _exp(x):
    """exp(x); d = exp(x) = out."""
    return jnp.exp(x)

exp = register(elementwise(_exp, lambda out, x: out), points=unary(normal),
               zero_size=empty_unary, domain="real", expression=True)


def _log(x):
    """log(x); d = 1 / x."""
    return jnp.log(x)

log = register(elementwise(_log, lambda out, x: 1 / x), points=unary(positive),
               zero_size=empty_unary, domain="positive", expression=True)


def _reciprocal(x):
    """reciprocal(x) = 1 / x; d = -1 / x^2 = -out^2."""
    return 1 / x

reciprocal = register(elementwise(_reciprocal, lambda out, x: -out * out),
                      points=unary(away_from_zero), zero_size=empty_unary, domain="positive",
                      expression=True)


def _abs(x):
    """abs(x) = |x|; d = 1 for x >= 0 and -1 below (abs'(0) = 1, as in JAX); NaN stays NaN."""
    return jnp.abs(x)

def _abs_derivative(out, x):
    return keep_nan(x, jnp.where(x >= 0, 1, -1).astype(x.dtype))

abs = register(elementwise(_abs, _abs_derivative), points=unary(away_from_zero),
               zero_size=empty_unary, domain="real", expression=True)


def _maximum(x, y):
    """maximum(x, y); the gradient goes to the larger input, split equally on ties."""
    return jnp.maximum(x, y)

def _maximum_derivative(out, x, y):
    share = _winner_share(x, y)
    return share, 1 - share

def _apart_points(rng):
    """Points of maximum and minimum: the two inputs tie or differ by at least 0.2."""
    return [((apart(rng, *a), apart(rng, *b) + 0.2), {})
            for a, b in [((), ()), ((5,), (5,)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]]

maximum = register(elementwise(_maximum, _maximum_derivative), points=_apart_points,
                   zero_size=empty_binary, domain="real", expression=True)


def _minimum(x, y):
    """minimum(x, y); the gradient goes to the smaller input, split equally on ties."""
    return jnp.minimum(x, y)

def _minimum_derivative(out, x, y):
    share = _winner_share(y, x)
    return share, 1 - share

minimum = register(elementwise(_minimum, _minimum_derivative), points=_apart_points,
                   zero_size=empty_binary, domain="real", expression=("minimum", "min"))


def _winner_share(x, y):
    """1 where x wins, 0 where y wins, 1/2 on a tie, NaN where either is NaN."""
    share = jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0)).astype(jnp.result_type(x, y))
    return jnp.where(jnp.isnan(x) | jnp.isnan(y), jnp.nan, share)
