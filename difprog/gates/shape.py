"""Gates that move values without changing them: their rules move the gradient the same way back."""

from __future__ import annotations

import math

import jax.numpy as jnp

from difprog.errors import ShapeError
from difprog.gate import gate
from difprog.gates._util import normalize_axis


def _reshape(x, shape):
    """y = x laid out in `shape` (one entry may be -1); dx = dy laid out in x's shape."""
    return jnp.reshape(x, shape)

def _reshape_backward(g, out, x, shape):
    return (jnp.reshape(g, x.shape),)

def _reshape_tangent(dx, out, x, shape):
    return jnp.reshape(dx, out.shape)

def _check_reshape(x, shape):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    known = math.prod(n for n in shape if n != -1)
    fits = known == x.size if -1 not in shape else known > 0 and x.size % known == 0
    if shape.count(-1) > 1 or any(n < -1 for n in shape) or not fits:
        raise ShapeError(f"gate 'reshape': cannot lay out x{list(x.shape)} ({x.size} values) "
                         f"as {list(shape)}; the sizes must agree and at most one entry may be -1")

reshape = gate(_reshape, backward=_reshape_backward, tangent=_reshape_tangent,
               static=("shape",), check=_check_reshape)


def _concatenate(xs, axis=-1):
    """y = [x_1, ..., x_k] joined along axis; dx_i = the slice of dy where x_i was placed."""
    return jnp.concatenate(xs, axis=axis)

def _concatenate_backward(g, out, xs, axis):
    ends = _ends([x.shape[axis] for x in xs])
    return (type(xs)(jnp.split(g, ends[:-1], axis=axis)),)

def _concatenate_tangent(dxs, out, xs, axis):
    return jnp.concatenate(dxs, axis=axis)

def _ends(sizes):
    ends, total = [], 0
    for n in sizes:
        total += n
        ends.append(total)
    return ends

def _check_concatenate(xs, axis):
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ShapeError(f"gate 'concatenate': xs must be a non-empty list or tuple of arrays, "
                         f"got {type(xs).__name__}")
    shapes = [list(x.shape) for x in xs]
    ndim = xs[0].ndim
    if ndim == 0 or not -ndim <= axis < ndim:
        raise ShapeError(f"gate 'concatenate': axis {axis} is out of range for inputs {shapes}")
    (along,) = normalize_axis(axis, ndim)
    rest = {tuple(n for i, n in enumerate(x.shape) if i != along) if x.ndim == ndim else None
            for x in xs}
    if len(rest) != 1 or None in rest:
        raise ShapeError(f"gate 'concatenate': inputs {shapes} must agree on every axis but "
                         f"axis {axis}")

concatenate = gate(_concatenate, backward=_concatenate_backward, tangent=_concatenate_tangent,
                   pytree_inputs=True, check=_check_concatenate)
