"""Activation gates, in numerically stable forms (finite values and gradients for |x| up to 1e4).

Each states its forward and its local derivative d out / d x once; `elementwise` makes both
rules from it (backward = g * derivative, tangent = dx * derivative).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from difprog.gate import elementwise
from difprog.gates._util import check_real, keep_nan


def _relu(x):
    """relu(x) = max(x, 0); d = 1 for x > 0, else 0 (relu'(0) = 0, as in JAX). NaN stays NaN."""
    return jax.nn.relu(x)

relu = elementwise(_relu, lambda out, x: jnp.sign(out))


def _leaky_relu(x, negative_slope=0.01):
    """leaky_relu(x) = x for x >= 0, else a x; d = 1 for x >= 0, else a."""
    return jnp.where(x >= 0, x, negative_slope * x)

def _leaky_relu_derivative(out, x, negative_slope):
    return keep_nan(x, jnp.where(x >= 0, 1, negative_slope).astype(x.dtype))

def _check_leaky_relu(x, negative_slope):
    check_real("leaky_relu", "negative_slope", negative_slope)

leaky_relu = elementwise(_leaky_relu, _leaky_relu_derivative, check=_check_leaky_relu)


def _sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)); d sigmoid = s (1 - s)."""
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1 / (1 + e), e / (1 + e))

sigmoid = elementwise(_sigmoid, lambda out, x: out * (1 - out))


def _tanh(x):
    """tanh(x); d tanh = 1 - tanh^2."""
    return jnp.tanh(x)

tanh = elementwise(_tanh, lambda out, x: 1 - out * out)


def _softplus(x):
    """softplus(x) = log(1 + exp(x)), computed as logaddexp(x, 0); d softplus = sigmoid(x)."""
    return jnp.logaddexp(x, 0.0)

softplus = elementwise(_softplus, lambda out, x: _sigmoid(x))


def _gelu(x):
    """gelu(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2; d gelu = Phi(x) + x phi(x)."""
    return x * _normal_cdf(x)

def _normal_cdf(x):
    return (1 + erf(x / math.sqrt(2))) / 2

gelu = elementwise(
    _gelu, lambda out, x: _normal_cdf(x) + x * jnp.exp(-x * x / 2) / math.sqrt(2 * math.pi))
