"""Layer normalisation over the last axis."""

from __future__ import annotations

import jax.numpy as jnp

from difprog.errors import ShapeError
from difprog.gate import gate
from difprog.gates._util import check_real, unbroadcast


def _layer_norm(x, scale, offset, eps=1e-5):
    """y = xhat scale + offset, xhat = (x - mean) / sqrt(var + eps) over the last axis;
    dx = (gh - mean(gh) - xhat mean(gh xhat)) / sigma with gh = g scale."""
    xhat, _ = _normalize(x, eps)
    return xhat * scale + offset

def _layer_norm_backward(g, out, x, scale, offset, eps):
    xhat, sigma = _normalize(x, eps)
    gh = g * scale
    dx = (gh - jnp.mean(gh, -1, keepdims=True)
          - xhat * jnp.mean(gh * xhat, -1, keepdims=True)) / sigma
    return dx, unbroadcast(g * xhat, scale.shape), unbroadcast(g, offset.shape)

def _layer_norm_tangent(dx, dscale, doffset, out, x, scale, offset, eps):
    xhat, sigma = _normalize(x, eps)
    dxhat = (dx - jnp.mean(dx, -1, keepdims=True)
             - xhat * jnp.mean(xhat * dx, -1, keepdims=True)) / sigma
    return dxhat * scale + xhat * dscale + doffset

def _normalize(x, eps):
    mean = jnp.mean(x, -1, keepdims=True)
    centered = x - mean
    sigma = jnp.sqrt(jnp.mean(centered * centered, -1, keepdims=True) + eps)
    return centered / sigma, sigma

def _check_layer_norm(x, scale, offset, eps):
    check_real("layer_norm", "eps", eps, minimum=0)
    if x.ndim == 0:
        raise ShapeError("gate 'layer_norm' normalises over the last axis and needs x of rank "
                         ">= 1, got a scalar")
    for name, p in (("scale", scale), ("offset", offset)):
        if p.shape != x.shape[-1:]:
            raise ShapeError(f"gate 'layer_norm': {name} must have shape {list(x.shape[-1:])} "
                             f"(the last axis of x{list(x.shape)}), got {list(p.shape)}")

layer_norm = gate(_layer_norm, backward=_layer_norm_backward, tangent=_layer_norm_tangent,
                  check=_check_layer_norm)
