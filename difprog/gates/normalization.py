"""Layer normalisation and RMS normalisation over the last axis, batch normalisation over every
axis but the last."""

from __future__ import annotations

import math

import jax.numpy as jnp

from difprog.errors import ShapeError
from difprog.gate import gate
from difprog.gates._util import check_real, unbroadcast
from difprog.gates.points import empty, normal
from difprog.gates.registry import register

__all__ = ["batch_norm", "layer_norm", "rms_norm"]


def _layer_norm(x, scale, offset, eps=1e-5):
    """y = xhat scale + offset, xhat = (x - mean) / sqrt(var + eps) over the last axis;
    dx = (gh - mean(gh) - xhat mean(gh xhat)) / sigma with gh = g scale."""
    return _standardized(x, scale, offset, eps, (-1,))

def _layer_norm_backward(g, out, x, scale, offset, eps):
    return _standardized_backward(g, x, scale, offset, eps, (-1,))

def _layer_norm_tangent(dx, dscale, doffset, out, x, scale, offset, eps):
    return _standardized_tangent(dx, dscale, doffset, x, scale, eps, (-1,))

def _standardized(x, scale, offset, eps, axes):
    """xhat scale + offset, xhat standardised over `axes`."""
    xhat, _ = _normalize(x, eps, axes)
    return xhat * scale + offset

def _standardized_backward(g, x, scale, offset, eps, axes):
    xhat, sigma = _normalize(x, eps, axes)
    gh = g * scale
    dx = (gh - jnp.mean(gh, axes, keepdims=True)
          - xhat * jnp.mean(gh * xhat, axes, keepdims=True)) / sigma
    return dx, unbroadcast(g * xhat, scale.shape), unbroadcast(g, offset.shape)

def _standardized_tangent(dx, dscale, doffset, x, scale, eps, axes):
    xhat, sigma = _normalize(x, eps, axes)
    dxhat = (dx - jnp.mean(dx, axes, keepdims=True)
             - xhat * jnp.mean(xhat * dx, axes, keepdims=True)) / sigma
    return dxhat * scale + xhat * dscale + doffset

def _normalize(x, eps, axes):
    """(x - mean) / sigma and sigma = sqrt(var + eps), the statistics over `axes` (two passes:
    the variance of the centred values)."""
    mean = jnp.mean(x, axes, keepdims=True)
    centered = x - mean
    sigma = jnp.sqrt(jnp.mean(centered * centered, axes, keepdims=True) + eps)
    return centered / sigma, sigma

def _check_layer_norm(x, scale, offset, eps):
    _check_norm("layer_norm", x, eps, scale=scale, offset=offset)

def _check_norm(name, x, eps, **parameters):
    check_real(name, "eps", eps, minimum=0)
    if x.ndim == 0:
        raise ShapeError(f"gate {name!r} normalises over the last axis and needs x of rank "
                         ">= 1, got a scalar")
    for parameter, p in parameters.items():
        if p.shape != x.shape[-1:]:
            raise ShapeError(f"gate {name!r}: {parameter} must have shape {list(x.shape[-1:])} "
                             f"(the last axis of x{list(x.shape)}), got {list(p.shape)}")

_BAD_EPS = {"eps": (-1, "a", 1j, math.nan, math.inf, True, None)}

layer_norm = register(
    gate(_layer_norm, backward=_layer_norm_backward, tangent=_layer_norm_tangent,
         check=_check_layer_norm),
    points=lambda rng: [((normal(rng, 5), normal(rng, 5), normal(rng, 5)), {}),
                        ((normal(rng, 3, 4), normal(rng, 4), normal(rng, 4)), {"eps": 1e-3})],
    zero_size=lambda: [((empty(0, 4), empty(4), empty(4)), {}),
                       ((empty(3, 0), empty(0), empty(0)), {})],
    bad=_BAD_EPS, affine=("offset",))


def _batch_norm(x, scale, offset, eps=1e-5):
    """y = xhat scale + offset, xhat = (x - mean) / sqrt(var + eps) with the batch's statistics
    over every axis but the last; dx = (gh - mean(gh) - xhat mean(gh xhat)) / sigma, gh = g scale,
    those means over the same axes."""
    return _standardized(x, scale, offset, eps, _leading(x))

def _batch_norm_backward(g, out, x, scale, offset, eps):
    return _standardized_backward(g, x, scale, offset, eps, _leading(x))

def _batch_norm_tangent(dx, dscale, doffset, out, x, scale, offset, eps):
    return _standardized_tangent(dx, dscale, doffset, x, scale, eps, _leading(x))

def _leading(x):
    return tuple(range(x.ndim - 1))

def _check_batch_norm(x, scale, offset, eps):
    if x.ndim < 2:
        raise ShapeError(f"gate 'batch_norm' normalises each channel (the last axis) over the "
                         f"others and needs x of rank >= 2, got shape {list(x.shape)}")
    _check_norm("batch_norm", x, eps, scale=scale, offset=offset)

batch_norm = register(
    gate(_batch_norm, backward=_batch_norm_backward, tangent=_batch_norm_tangent,
         check=_check_batch_norm),
    points=lambda rng: [((normal(rng, 6, 3), normal(rng, 3), normal(rng, 3)), {}),
                        ((normal(rng, 2, 3, 4, 5), normal(rng, 5), normal(rng, 5)),
                         {"eps": 1e-3})],
    zero_size=lambda: [((empty(0, 4), empty(4), empty(4)), {}),
                       ((empty(3, 0), empty(0), empty(0)), {})],
    bad=_BAD_EPS, affine=("offset",))


def _rms_norm(x, scale, eps=1e-6):
    """y = xhat scale, xhat = x / r, r = sqrt(mean(x^2) + eps) over the last axis;
    dx = (gh - xhat mean(gh xhat)) / r with gh = g scale."""
    xhat, _ = _rms_normalize(x, eps)
    return xhat * scale

def _rms_norm_backward(g, out, x, scale, eps):
    xhat, r = _rms_normalize(x, eps)
    gh = g * scale
    dx = (gh - xhat * jnp.mean(gh * xhat, -1, keepdims=True)) / r
    return dx, unbroadcast(g * xhat, scale.shape)

def _rms_norm_tangent(dx, dscale, out, x, scale, eps):
    xhat, r = _rms_normalize(x, eps)
    dxhat = (dx - xhat * jnp.mean(xhat * dx, -1, keepdims=True)) / r
    return dxhat * scale + xhat * dscale

def _rms_normalize(x, eps):
    r = jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + eps)
    return x / r, r

rms_norm = register(
    gate(_rms_norm, backward=_rms_norm_backward, tangent=_rms_norm_tangent,
         check=lambda x, scale, eps: _check_norm("rms_norm", x, eps, scale=scale)),
    points=lambda rng: [((normal(rng, 3, 4), normal(rng, 4)), {}),
                        ((normal(rng, 5), normal(rng, 5)), {"eps": 1e-3}),
                        ((normal(rng, 2, 3, 4), normal(rng, 4)), {"eps": 0})],
    zero_size=lambda: [((empty(0, 4), empty(4)), {}), ((empty(3, 0), empty(0)), {"eps": 1e-3})],
    bad=_BAD_EPS)
