"""Small helpers the gates share: undoing broadcasts and normalising axes."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unbroadcast(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums a cotangent over the axes that broadcasting added, back to `shape` (the copy gate adds)."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    return jnp.sum(g, axis=tuple(range(extra)) + stretched).reshape(shape)


def normalize_axis(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """The reduced axes as a sorted tuple of non-negative ints (None means all)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def expand_reduced(g: jax.Array, axes: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    """Puts back the axes a reduction removed and broadcasts to `shape` (the sum gate copies)."""
    return jnp.broadcast_to(jnp.expand_dims(g, axes), shape)


def pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """An int or a pair of ints as a pair."""
    pair_ = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair_) != 2 or not all(isinstance(v, int) and v > 0 for v in pair_):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair_
