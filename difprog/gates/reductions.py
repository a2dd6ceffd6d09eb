"""Reductions and the softmax family; a reduction's backward copies the gradient back out."""

from __future__ import annotations

import jax.numpy as jnp

from difprog.errors import ShapeError
from difprog.gate import gate, linear
from difprog.gates._util import check_axis, expand_reduced, normalize_axis
from difprog.gates.points import distinct, empty, normal
from difprog.gates.registry import register

__all__ = ["log_softmax", "logsumexp", "max", "mean", "softmax", "sum"]


def _check_reduction(name, empty_ok=True):
    """The check of a reduction's arguments: `axis` names axes of x (None: all of them)."""
    def check(x, axis):
        axes = check_axis(name, axis, x.ndim)
        empty = [a for a in axes if x.shape[a] == 0]
        if empty and not empty_ok:
            raise ShapeError(f"gate {name!r}: axis {empty[0]} of x{list(x.shape)} is empty, and "
                             f"a {name} of no values has no value (jax.numpy refuses it too)")
    return check


def _reduction_points(rng):
    return [((distinct(rng, 6),), {}), ((distinct(rng, 3, 4),), {"axis": 0}),
            ((distinct(rng, 2, 3, 4),), {"axis": (0, 2)}), ((distinct(rng, 2, 3, 4),), {})]

def _softmax_points(rng):
    return [((normal(rng, 5),), {}), ((normal(rng, 3, 4),), {"axis": 0}),
            ((normal(rng, 2, 3, 4),), {"axis": -1})]

def _reduction_zero_size():
    return [((empty(0, 3),), {"axis": 0}), ((empty(0, 3),), {"axis": 1}), ((empty(0, 3),), {})]

def _softmax_zero_size():
    return [((empty(5, 0),), {}), ((empty(0, 3),), {}), ((empty(5, 0),), {"axis": 0}),
            ((empty(2, 0, 3),), {"axis": (1, 2)})]

BAD_AXIS = {"axis": ("a", 1.5, 5, -7, (0, 0), (0, "a"), 1j, True, ((0,),))}


def _sum(x, axis=None):
    """sum(x) over axis; d/dx_i = 1: the gradient is copied to every summand."""
    return jnp.sum(x, axis=axis)

def _sum_backward(g, out, x, axis):
    return (expand_reduced(g, normalize_axis(axis, x.ndim), x.shape),)

sum = register(linear(_sum, _sum_backward, check=_check_reduction("sum")),
               points=_reduction_points, zero_size=_reduction_zero_size, bad=BAD_AXIS,
               affine=("x",), domain="real", expression=True)


def _mean(x, axis=None):
    """mean(x) over axis of n entries; d/dx_i = 1 / n."""
    return jnp.mean(x, axis=axis)

def _mean_backward(g, out, x, axis):
    axes = normalize_axis(axis, x.ndim)
    return (expand_reduced(g / _count(x, axes), axes, x.shape),)

def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n

mean = register(linear(_mean, _mean_backward, check=_check_reduction("mean")),
                points=_reduction_points, zero_size=_reduction_zero_size, bad=BAD_AXIS,
                affine=("x",), domain="real", expression=True)


def _max(x, axis=None):
    """max(x) over axis; the gradient goes to the winner, split equally among ties."""
    return jnp.max(x, axis=axis)

def _max_backward(g, out, x, axis):
    axes = normalize_axis(axis, x.ndim)
    return (expand_reduced(g, axes, x.shape) * _winners(out, x, axes),)

def _max_tangent(dx, out, x, axis):
    return jnp.sum(dx * _winners(out, x, normalize_axis(axis, x.ndim)), axis=axis)

def _winners(out, x, axes):
    """1 / (number of maxima) at each maximum of x, 0 elsewhere; NaN where the max is NaN
    (said explicitly: XLA may turn 0 / 0 into 0 after rewriting the division)."""
    out = jnp.expand_dims(out, axes)
    is_max = (x == out).astype(x.dtype)
    return jnp.where(jnp.isnan(out), jnp.nan, is_max / jnp.sum(is_max, axis=axes, keepdims=True))

max = register(gate(_max, backward=_max_backward, tangent=_max_tangent,
                    check=_check_reduction("max", empty_ok=False)),
               points=_reduction_points, bad=BAD_AXIS, domain="real", expression=True,
               zero_size=lambda: [((empty(0, 3),), {"axis": 1}), ((empty(2, 0),), {"axis": 0})])


def _logsumexp(x, axis=-1):
    """logsumexp(x) = m + log sum exp(x - m), m = max x; d/dx = softmax(x)."""
    return jnp.squeeze(_logsumexp_keepdims(x, axis), axis)

def _logsumexp_backward(g, out, x, axis):
    axes = normalize_axis(axis, x.ndim)
    return (jnp.expand_dims(g, axes) * jnp.exp(x - jnp.expand_dims(out, axes)),)

def _logsumexp_tangent(dx, out, x, axis):
    axes = normalize_axis(axis, x.ndim)
    return jnp.sum(jnp.exp(x - jnp.expand_dims(out, axes)) * dx, axis=axis)

def _logsumexp_keepdims(x, axis):
    """logsumexp keeping the reduced axes: -inf over an empty axis, NaN where x has a NaN."""
    m = jnp.max(x, axis=axis, keepdims=True, initial=-jnp.inf if x.size == 0 else None)
    m = jnp.where(jnp.isfinite(m), m, 0)
    return m + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))

logsumexp = register(gate(_logsumexp, backward=_logsumexp_backward, tangent=_logsumexp_tangent,
                          check=_check_reduction("logsumexp")),
                     points=_softmax_points, zero_size=_softmax_zero_size, bad=BAD_AXIS,
                     domain="real", expression=True)


def _softmax(x, axis=-1):
    """softmax(x) = exp(x - logsumexp x); ds = s (g - sum(g s))."""
    return jnp.exp(x - _logsumexp_keepdims(x, axis))

def _softmax_backward(g, out, x, axis):
    return (out * (g - jnp.sum(g * out, axis=axis, keepdims=True)),)

def _softmax_tangent(dx, out, x, axis):
    return out * (dx - jnp.sum(out * dx, axis=axis, keepdims=True))

softmax = register(gate(_softmax, backward=_softmax_backward, tangent=_softmax_tangent,
                        check=_check_reduction("softmax")),
                   points=_softmax_points, zero_size=_softmax_zero_size, bad=BAD_AXIS,
                   domain="real", expression=True)


def _log_softmax(x, axis=-1):
    """log_softmax(x) = x - logsumexp(x); d = g - softmax(x) sum(g)."""
    return x - _logsumexp_keepdims(x, axis)

def _log_softmax_backward(g, out, x, axis):
    return (g - jnp.exp(out) * jnp.sum(g, axis=axis, keepdims=True),)

def _log_softmax_tangent(dx, out, x, axis):
    return dx - jnp.sum(jnp.exp(out) * dx, axis=axis, keepdims=True)

log_softmax = register(gate(_log_softmax, backward=_log_softmax_backward,
                            tangent=_log_softmax_tangent, check=_check_reduction("log_softmax")),
                       points=_softmax_points, zero_size=_softmax_zero_size, bad=BAD_AXIS,
                       domain="real", expression=True)
