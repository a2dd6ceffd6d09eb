"""Activation gates, in numerically stable forms (finite values and gradients for |x| up to 1e4)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from difprog.gate import gate


def _relu(x):
    """relu(x) = max(x, 0); d = 1 for x > 0, else 0 (relu'(0) = 0, as in JAX). NaN stays NaN."""
    return jax.nn.relu(x)

def _relu_backward(g, out, x):
    return (jnp.where(x <= 0, 0, g),)

def _relu_tangent(dx, out, x):
    return jnp.where(x <= 0, 0, dx)

relu = gate(_relu, backward=_relu_backward, tangent=_relu_tangent)


def _leaky_relu(x, negative_slope=0.01):
    """leaky_relu(x) = x for x >= 0, else a x; d = 1 for x >= 0, else a."""
    return jnp.where(x >= 0, x, negative_slope * x)

def _leaky_relu_backward(g, out, x, negative_slope):
    return (jnp.where(x >= 0, g, negative_slope * g),)

def _leaky_relu_tangent(dx, out, x, negative_slope):
    return jnp.where(x >= 0, dx, negative_slope * dx)

leaky_relu = gate(_leaky_relu, backward=_leaky_relu_backward, tangent=_leaky_relu_tangent)


def _sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)); d sigmoid = s (1 - s)."""
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1 / (1 + e), e / (1 + e))

def _sigmoid_backward(g, out, x):
    return (g * out * (1 - out),)

def _sigmoid_tangent(dx, out, x):
    return dx * out * (1 - out)

sigmoid = gate(_sigmoid, backward=_sigmoid_backward, tangent=_sigmoid_tangent)


def _tanh(x):
    """tanh(x); d tanh = 1 - tanh^2."""
    return jnp.tanh(x)

def _tanh_backward(g, out, x):
    return (g * (1 - out * out),)

def _tanh_tangent(dx, out, x):
    return dx * (1 - out * out)

tanh = gate(_tanh, backward=_tanh_backward, tangent=_tanh_tangent)


def _softplus(x):
    """softplus(x) = log(1 + exp(x)), computed as logaddexp(x, 0); d softplus = sigmoid(x)."""
    return jnp.logaddexp(x, 0.0)

def _softplus_backward(g, out, x):
    return (g * _sigmoid(x),)

def _softplus_tangent(dx, out, x):
    return dx * _sigmoid(x)

softplus = gate(_softplus, backward=_softplus_backward, tangent=_softplus_tangent)


def _gelu(x):
    """gelu(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2; d gelu = Phi(x) + x phi(x)."""
    return x * _normal_cdf(x)

def _gelu_backward(g, out, x):
    return (g * _gelu_slope(x),)

def _gelu_tangent(dx, out, x):
    return dx * _gelu_slope(x)

def _normal_cdf(x):
    return (1 + erf(x / math.sqrt(2))) / 2

def _gelu_slope(x):
    return _normal_cdf(x) + x * jnp.exp(-x * x / 2) / math.sqrt(2 * math.pi)

gelu = gate(_gelu, backward=_gelu_backward, tangent=_gelu_tangent)
