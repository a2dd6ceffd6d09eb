"""Arithmetic gates: each forward beside its backward (VJP) and tangent (JVP) rule.

Patterns from the lectures: the add gate distributes the gradient, the mul gate swaps its inputs,
a broadcast (copy) adds gradients back up, the max gate routes the gradient to the winner.
"""

from __future__ import annotations

import jax.numpy as jnp

from difprog.gate import gate
from difprog.gates._util import unbroadcast


def _add(x, y):
    """add(x, y) = x + y; d/dx = d/dy = 1: the add gate distributes the gradient."""
    return x + y

def _add_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(g, y.shape)

def _add_tangent(dx, dy, out, x, y):
    return dx + dy

add = gate(_add, backward=_add_backward, tangent=_add_tangent)


def _subtract(x, y):
    """subtract(x, y) = x - y; d/dx = 1, d/dy = -1."""
    return x - y

def _subtract_backward(g, out, x, y):
    return unbroadcast(g, x.shape), unbroadcast(-g, y.shape)

def _subtract_tangent(dx, dy, out, x, y):
    return dx - dy

subtract = gate(_subtract, backward=_subtract_backward, tangent=_subtract_tangent)


def _multiply(x, y):
    """multiply(x, y) = x y; d/dx = y, d/dy = x: the mul gate swaps its inputs."""
    return x * y

def _multiply_backward(g, out, x, y):
    return unbroadcast(g * y, x.shape), unbroadcast(g * x, y.shape)

def _multiply_tangent(dx, dy, out, x, y):
    return dx * y + x * dy

multiply = gate(_multiply, backward=_multiply_backward, tangent=_multiply_tangent)


def _divide(x, y):
    """divide(x, y) = x / y; d/dx = 1 / y, d/dy = -x / y^2 = -out / y."""
    return x / y

def _divide_backward(g, out, x, y):
    gx = g / y
    return unbroadcast(gx, x.shape), unbroadcast(-gx * out, y.shape)

def _divide_tangent(dx, dy, out, x, y):
    return (dx - out * dy) / y

divide = gate(_divide, backward=_divide_backward, tangent=_divide_tangent)


def _negative(x):
    """negative(x) = -x; d = -1."""
    return -x

def _negative_backward(g, out, x):
    return (-g,)

def _negative_tangent(dx, out, x):
    return -dx

negative = gate(_negative, backward=_negative_backward, tangent=_negative_tangent)


def _square(x):
    """square(x) = x^2; d = 2 x."""
    return x * x

def _square_backward(g, out, x):
    return (2 * x * g,)

def _square_tangent(dx, out, x):
    return 2 * x * dx

square = gate(_square, backward=_square_backward, tangent=_square_tangent)


def _sqrt(x):
    """sqrt(x); d = 1 / (2 sqrt(x))."""
    return jnp.sqrt(x)

def _sqrt_backward(g, out, x):
    return (g / (2 * out),)

def _sqrt_tangent(dx, out, x):
    return dx / (2 * out)

sqrt = gate(_sqrt, backward=_sqrt_backward, tangent=_sqrt_tangent)


def _power(x, p):
    """power(x, p) = x^p for a constant p; d = p x^(p - 1)."""
    return jnp.power(x, p)

def _power_backward(g, out, x, p):
    return (g * _power_slope(x, p),)

def _power_tangent(dx, out, x, p):
    return dx * _power_slope(x, p)

def _power_slope(x, p):
    return jnp.zeros_like(x) if p == 0 else p * jnp.power(x, p - 1)

power = gate(_power, backward=_power_backward, tangent=_power_tangent, static=("p",))


def _exp(x):
    """exp(x); d = exp(x) = out."""
    return jnp.exp(x)

def _exp_backward(g, out, x):
    return (g * out,)

def _exp_tangent(dx, out, x):
    return dx * out

exp = gate(_exp, backward=_exp_backward, tangent=_exp_tangent)


def _log(x):
    """log(x); d = 1 / x."""
    return jnp.log(x)

def _log_backward(g, out, x):
    return (g / x,)

def _log_tangent(dx, out, x):
    return dx / x

log = gate(_log, backward=_log_backward, tangent=_log_tangent)


def _reciprocal(x):
    """reciprocal(x) = 1 / x; d = -1 / x^2 = -out^2."""
    return 1 / x

def _reciprocal_backward(g, out, x):
    return (-g * out * out,)

def _reciprocal_tangent(dx, out, x):
    return -dx * out * out

reciprocal = gate(_reciprocal, backward=_reciprocal_backward, tangent=_reciprocal_tangent)


def _abs(x):
    """abs(x) = |x|; d = 1 for x >= 0 and -1 below (abs'(0) = 1, as in JAX)."""
    return jnp.abs(x)

def _abs_backward(g, out, x):
    return (jnp.where(x >= 0, g, -g),)

def _abs_tangent(dx, out, x):
    return jnp.where(x >= 0, dx, -dx)

abs = gate(_abs, backward=_abs_backward, tangent=_abs_tangent)


def _maximum(x, y):
    """maximum(x, y); the gradient goes to the larger input, split equally on ties."""
    return jnp.maximum(x, y)

def _maximum_backward(g, out, x, y):
    wx = _winner_share(x, y)
    return unbroadcast(g * wx, x.shape), unbroadcast(g * (1 - wx), y.shape)

def _maximum_tangent(dx, dy, out, x, y):
    wx = _winner_share(x, y)
    return dx * wx + dy * (1 - wx)

def _winner_share(x, y):
    """1 where x wins, 0 where y wins, 1/2 on a tie."""
    return jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0)).astype(jnp.result_type(x, y))

maximum = gate(_maximum, backward=_maximum_backward, tangent=_maximum_tangent)


def _minimum(x, y):
    """minimum(x, y); the gradient goes to the smaller input, split equally on ties."""
    return jnp.minimum(x, y)

def _minimum_backward(g, out, x, y):
    wx = _winner_share(y, x)
    return unbroadcast(g * wx, x.shape), unbroadcast(g * (1 - wx), y.shape)

def _minimum_tangent(dx, dy, out, x, y):
    wx = _winner_share(y, x)
    return dx * wx + dy * (1 - wx)

minimum = gate(_minimum, backward=_minimum_backward, tangent=_minimum_tangent)
