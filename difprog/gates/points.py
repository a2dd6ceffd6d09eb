"""Samplers for the points at which gates are checked, for `register(gate, points=...)`.

Each sampler draws NumPy values from an rng, chosen away from kinks (relu at 0, ties of max) so
finite differences are meaningful; `unary` and `binary` make the points of an elementwise gate
at several shapes (broadcasting, a batch axis). `empty` and `empty_labels` make the zero-size
arrays of a gate's `zero_size` cases.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["apart", "away_from_zero", "beyond", "binary", "distinct", "empty", "empty_binary",
           "empty_labels", "empty_unary", "labels", "normal", "positive", "unary"]


def normal(rng, *shape):
    return rng.standard_normal(shape)


def away_from_zero(rng, *shape):
    """Values in +-[0.2, 2]: clear of the kink at 0."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def positive(rng, *shape):
    return rng.uniform(0.5, 2.0, shape)


def distinct(rng, *shape):
    """Values at least 0.1 apart, so a maximum has no near-tie."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - n * 0.05).reshape(shape)


def labels(rng, *shape, classes):
    return rng.integers(0, classes, shape).astype(np.int32)


def beyond(rng, kink, *shape):
    """Values at least 0.2 from `kink` on either side (softplus's threshold jumps there)."""
    return kink + away_from_zero(rng, *shape)


def apart(rng, *shape):
    """Values on a grid of 0.5 plus jitter under 0.05: two draws tie or differ by >= 0.4."""
    return rng.integers(-4, 5, shape) * 0.5 + rng.uniform(0, 0.05, shape)


def unary(sample: Callable) -> Callable:
    """The points of a one-input elementwise gate: `sample`d at four shapes, rank 0 to 3."""
    return lambda rng: [((sample(rng, *shape),), {}) for shape in [(), (5,), (3, 4), (2, 3, 4)]]


def binary(sample: Callable) -> Callable:
    """The points of a two-input elementwise gate, broadcasting both ways."""
    shapes = [((), ()), ((5,), (5,)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]
    return lambda rng: [((sample(rng, *a), sample(rng, *b)), {}) for a, b in shapes]


def empty(*shape):
    """A float32 array of `shape` (one with a 0 in it, for zero-size cases) holding 0.5s."""
    return np.zeros(shape, np.float32) + 0.5


def empty_labels(*shape):
    """An int32 array of zeros of `shape`."""
    return np.zeros(shape, np.int32)


def empty_unary():
    """The zero-size cases of a one-input elementwise gate."""
    return [((empty(2, 0),), {}), ((empty(0),), {})]


def empty_binary():
    """The zero-size cases of a two-input elementwise gate, broadcasting."""
    return [((empty(0, 3), empty(3)), {}), ((empty(2, 0), empty(2, 1)), {}),
            ((empty(0), empty()), {})]
