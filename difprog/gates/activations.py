"""Activation gates, in numerically stable forms (finite values and gradients for |x| up to 1e4).

Each states its forward and its local derivative d out / d x once; `elementwise` makes both
rules from it (backward = g * derivative, tangent = dx * derivative).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from difprog.errors import ArgumentError, DtypeError
from difprog.gate import elementwise
from difprog.gates._util import check_real, keep_nan
from difprog.gates.points import away_from_zero, beyond, empty, empty_unary, normal, unary
from difprog.gates.registry import register

__all__ = ["gelu", "leaky_relu", "relu", "sigmoid", "softplus", "tanh"]


def _relu(x):
    """relu(x) = max(x, 0); d = 1 for x > 0, else 0 (relu'(0) = 0, as in JAX). NaN stays NaN."""
    return jax.nn.relu(x)

relu = register(elementwise(_relu, lambda out, x: jnp.sign(out)), points=unary(away_from_zero),
                zero_size=empty_unary, domain="real", expression=True)


def _leaky_relu(x, negative_slope=0.01):
    """leaky_relu(x) = x for x >= 0, else a x; d = 1 for x >= 0, else a."""
    return jnp.where(x >= 0, x, negative_slope * x)

def _leaky_relu_derivative(out, x, negative_slope):
    return keep_nan(x, jnp.where(x >= 0, 1, negative_slope).astype(x.dtype))

def _check_leaky_relu(x, negative_slope):
    check_real("leaky_relu", "negative_slope", negative_slope)

leaky_relu = register(
    elementwise(_leaky_relu, _leaky_relu_derivative, check=_check_leaky_relu),
    points=lambda rng: [((away_from_zero(rng, 3, 4),), {}),
                        ((away_from_zero(rng, 6),), {"negative_slope": 0.2})],
    zero_size=lambda: [((empty(0, 3),), {"negative_slope": 0.2})],
    bad={"negative_slope": ("x", 1j, None)}, domain="real", expression=True)


def _sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)); d sigmoid = s (1 - s)."""
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1 / (1 + e), e / (1 + e))

sigmoid = register(elementwise(_sigmoid, lambda out, x: out * (1 - out)), points=unary(normal),
                   zero_size=empty_unary, domain="real", expression=True)


def _tanh(x):
    """tanh(x); d tanh = 1 - tanh^2."""
    return jnp.tanh(x)

tanh = register(elementwise(_tanh, lambda out, x: 1 - out * out), points=unary(normal),
                zero_size=empty_unary, domain="real", expression=True)


def _softplus(x, beta=1.0, threshold=20.0):
    """softplus(x) = log(1 + exp(beta x)) / beta, and x where beta x > threshold (torch's
    semantics; beta may be negative); d = sigmoid(beta x), and 1 above the threshold."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)

def _softplus_derivative(out, x, beta, threshold):
    bx = beta * x
    return jnp.where(bx > threshold, 1, _sigmoid(bx))

def _check_softplus(x, beta, threshold):
    if check_real("softplus", "beta", beta) == 0:
        raise ArgumentError("gate 'softplus': argument 'beta' must be a finite nonzero number "
                            f"(softplus divides by it), got {beta!r}")
    check_real("softplus", "threshold", threshold)

def _softplus_points(rng):
    return [*unary(normal)(rng), ((normal(rng, 3, 4),), {"beta": 2.0, "threshold": 30.0}),
            ((beyond(rng, 0.5, 6),), {"beta": 2.0, "threshold": 1.0}),
            ((beyond(rng, 1.0, 2, 3),), {"beta": -1.5, "threshold": -1.5})]

softplus = register(
    elementwise(_softplus, _softplus_derivative, check=_check_softplus),
    points=_softplus_points,
    zero_size=lambda: [*empty_unary(), ((empty(0, 3),), {"beta": -2.0, "threshold": 1.0})],
    bad={"beta": (0, 0.0, -0.0, "a", 1j, math.nan, math.inf, True, None),
         "threshold": ("a", 1j, math.nan, -math.inf, True, None)},
    domain="real", expression=True)


_GELU_C, _GELU_A = math.sqrt(2 / math.pi), 0.044715  # the tanh form's constants


def _gelu(x, approximate=False):
    """gelu(x) = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, exact by default (as torch; note
    jax.nn.gelu defaults to approximate=True); d = Phi(x) + x phi(x). With approximate=True the
    tanh form x (1 + tanh u) / 2 = x sigmoid(2 u), u = sqrt(2 / pi) (x + 0.044715 x^3), as
    jax.nn.gelu(approximate=True) and torch's approximate='tanh';
    d = s + x s (1 - s) 2 du/dx with s = sigmoid(2 u)."""
    return x * (_tanh_cdf(x) if approximate else _normal_cdf(x))

def _gelu_derivative(out, x, approximate):
    if not approximate:
        return _normal_cdf(x) + x * jnp.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    s = _tanh_cdf(x)
    return s + x * s * (1 - s) * (2 * _GELU_C) * (1 + 3 * _GELU_A * x * x)


def _normal_cdf(x):
    return (1 + erf(x / math.sqrt(2))) / 2

def _tanh_cdf(x):
    """(1 + tanh u) / 2 = sigmoid(2 u): the same number, without tanh's cancellation near -1."""
    return _sigmoid(2 * _GELU_C * (x + _GELU_A * x ** 3))

def _check_gelu(x, approximate):
    if not isinstance(approximate, bool):
        raise DtypeError(f"gate 'gelu': argument 'approximate' must be True (the tanh form, "
                         f"torch's approximate='tanh') or False (exact), got {approximate!r} "
                         f"({type(approximate).__name__})")

gelu = register(
    elementwise(_gelu, _gelu_derivative, check=_check_gelu),
    points=lambda rng: [*unary(normal)(rng), ((normal(rng, 3, 4),), {"approximate": True}),
                        ((3 * normal(rng, 6),), {"approximate": True})],
    zero_size=lambda: [*empty_unary(), ((empty(3, 0),), {"approximate": True})],
    bad={"approximate": (1, 0, 1.0, "tanh", "none", None)}, domain="real", expression=True)
