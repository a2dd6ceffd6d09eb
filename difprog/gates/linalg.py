"""The matmul gate: never form a Jacobian, let the shapes decide."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from difprog.errors import ShapeError
from difprog.gate import bilinear
from difprog.gates._util import unbroadcast
from difprog.gates.points import empty, normal
from difprog.gates.registry import register

__all__ = ["matmul"]


def _matmul(x, w):
    """matmul(x, w) = x w; dL/dx = dL/dy w^T and dL/dw = x^T dL/dy (batch axes summed)."""
    return jnp.matmul(x, w)

def _matmul_backward(g, out, x, w):
    if w.ndim == 2:  # contract x's and g's batch axes directly: no transposed copies
        batch = tuple(range(x.ndim - 1))
        gx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
        gw = lax.dot_general(x, g, ((batch, batch), ((), ())))
        return gx, gw
    x2 = x[None, :] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    g2 = g[..., None] if w.ndim == 1 else g
    g2 = g2[..., None, :] if x.ndim == 1 else g2
    gx = unbroadcast(jnp.matmul(g2, jnp.swapaxes(w2, -1, -2)), x2.shape)
    gw = unbroadcast(jnp.matmul(jnp.swapaxes(x2, -1, -2), g2), w2.shape)
    return gx.reshape(x.shape), gw.reshape(w.shape)

def _check_matmul(x, w):
    if x.ndim == 0 or w.ndim == 0:
        raise ShapeError(f"gate 'matmul' needs arrays of rank >= 1, got x{list(x.shape)} and "
                         f"w{list(w.shape)}; use multiply for scalars")
    k = x.shape[-1]
    k_w = w.shape[0] if w.ndim == 1 else w.shape[-2]
    if k != k_w:
        raise ShapeError(f"gate 'matmul' cannot multiply x{list(x.shape)} by w{list(w.shape)}: "
                         f"x has {k} columns but w has {k_w} rows")

def _matmul_points(rng):
    return [((normal(rng, *a), normal(rng, *b)), {}) for a, b in
            [((4, 3), (3, 2)), ((3,), (3, 2)), ((4, 3), (3,)), ((2, 4, 3), (3, 5)),
             ((2, 4, 3), (2, 3, 5))]]

def _matmul_zero_size():
    return [((empty(0, 3), empty(3, 2)), {}), ((empty(2, 0), empty(0, 3)), {}),
            ((empty(0), empty(0)), {}), ((empty(2, 3), empty(3, 0)), {}),
            ((empty(2, 0, 3), empty(2, 3, 4)), {})]

# Bilinear: its tangent, matmul(dx, w) + matmul(x, dw), comes from the forward.
matmul = register(bilinear(_matmul, _matmul_backward, check=_check_matmul),
                  points=_matmul_points, zero_size=_matmul_zero_size, expression=True)
