"""Gates that move values without changing them: their rules move the gradient the same way back."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from difprog.errors import DtypeError, ShapeError
from difprog.gate import linear
from difprog.gates._util import check_axis, check_extent, is_int
from difprog.gates.points import empty, normal
from difprog.gates.registry import register

__all__ = ["concatenate", "reshape"]


def _reshape(x, shape):
    """y = x laid out in `shape` (one entry may be -1); dx = dy laid out in x's shape."""
    return jnp.reshape(x, shape)

def _reshape_backward(g, out, x, shape):
    return (jnp.reshape(g, x.shape),)

def _check_reshape(x, shape):
    if not (is_int(shape) or isinstance(shape, tuple) and all(is_int(n) for n in shape)):
        raise DtypeError(f"gate 'reshape': argument 'shape' must be an int or a tuple of ints, "
                         f"got {shape!r} ({type(shape).__name__})")
    shape = (shape,) if is_int(shape) else shape
    check_extent("reshape", "shape", shape)
    known = math.prod(n for n in shape if n != -1)
    fits = known == x.size if -1 not in shape else known > 0 and x.size % known == 0
    if shape.count(-1) > 1 or any(n < -1 for n in shape) or not fits:
        raise ShapeError(f"gate 'reshape': argument 'shape' cannot lay out x{list(x.shape)} "
                         f"({x.size} values) as {list(shape)}; the sizes must agree, no entry may "
                         f"be below -1 and at most one may be -1 (not with a 0 entry)")

reshape = register(
    linear(_reshape, _reshape_backward, static=("shape",), check=_check_reshape),
    points=lambda rng: [((normal(rng, 2, 3, 4), (6, 4)), {}), ((normal(rng, 2, 3, 2), (2, -1)), {}),
                        ((normal(rng, 5), (5, 1)), {})],
    zero_size=lambda: [((empty(0, 3), (3, 0)), {}), ((empty(0, 3), (-1, 3)), {}),
                       ((empty(0, 3), 0), {})],
    bad={"shape": (("a",), "a", 1.5, (2.0, 12.0), (-2, -12), (True, 24), None, (-1, -1, 24))},
    affine=("x",))


def _concatenate(xs, axis=-1):
    """y = [x_1, ..., x_k] joined along axis (None: flattened); dx_i = the slice of dy x_i fills."""
    return jnp.concatenate(xs, axis=axis)

def _concatenate_backward(g, out, xs, axis):
    if axis is None:
        pieces = jnp.split(g, _ends([x.size for x in xs])[:-1])
        return (type(xs)(piece.reshape(x.shape) for piece, x in zip(pieces, xs)),)
    ends = _ends([x.shape[axis] for x in xs])
    return (type(xs)(jnp.split(g, ends[:-1], axis=axis)),)

def _ends(sizes):
    ends, total = [], 0
    for n in sizes:
        total += n
        ends.append(total)
    return ends

def _check_concatenate(xs, axis):
    odd = [x for x in xs if not isinstance(x, jax.Array)] if isinstance(xs, (list, tuple)) else [xs]
    if odd:
        holding = "" if odd[0] is xs else f"a {type(xs).__name__} holding "
        raise DtypeError(f"gate 'concatenate': argument 'xs' must be a list or tuple of arrays, "
                         f"got {holding}{type(odd[0]).__name__}")
    shapes = [list(x.shape) for x in xs]
    if not xs:
        raise ShapeError("gate 'concatenate': argument 'xs' is empty; it needs at least one array")
    if axis is None:
        return
    ndim = xs[0].ndim
    if ndim == 0:
        raise ShapeError(f"gate 'concatenate': argument 'xs' holds arrays of rank 0 {shapes}, "
                         f"which have no axis to join along; use axis=None to join them flat")
    (along,) = check_axis("concatenate", axis, ndim, allow_tuple=False)
    rest = {tuple(n for i, n in enumerate(x.shape) if i != along) if x.ndim == ndim else None
            for x in xs}
    if len(rest) != 1 or None in rest:
        raise ShapeError(f"gate 'concatenate': inputs {shapes} must agree on every axis but "
                         f"axis {axis}")

concatenate = register(
    linear(_concatenate, _concatenate_backward, pytree_inputs=True, check=_check_concatenate),
    points=lambda rng: [(([normal(rng, 2, 3), normal(rng, 2, 4)],), {}),
                        (((normal(rng, 1, 3), normal(rng, 2, 3), normal(rng, 3, 3)),),
                         {"axis": 0})],
    zero_size=lambda: [(([empty(0, 2), empty(3, 2)],), {"axis": 0}),
                       (([empty(2, 0), empty(2, 0)],), {}),
                       (([empty(0, 2), empty(3)],), {"axis": None})],
    bad={"axis": ("a", 1.5, 5, (0,), True)}, affine=("xs",))
