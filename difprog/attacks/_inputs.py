"""What every attack checks before it runs: the function attacked, the images, their labels,
the input range and the budget, each refused with a difprog error naming the attack."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from difprog import arguments
from difprog.errors import ArgumentError, ShapeError
from difprog.layers import Layer

Forward = Callable[[Any, jax.Array], jax.Array]  # (params, images) -> logits


@dataclasses.dataclass(frozen=True)
class _Plain:
    """A function of the images alone, called as the attacks call a model: `(params, x)`."""

    function: Callable[[jax.Array], jax.Array]

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return self.function(x)


def forward(name: str, model: Any, params: Any) -> Forward:
    """`(params, x) -> logits` for a difprog layer (its `apply`, evaluation mode), a function
    `model(params, x)`, or, with params None, a function `model(x)`."""
    if isinstance(model, Layer):
        return model.apply
    if not callable(model):
        raise ArgumentError(f"{name}: model must be a difprog layer or a function from images "
                            f"to logits, got {type(model).__name__}")
    try:
        hash(model)
    except TypeError:
        raise ArgumentError(f"{name}: the model function must be hashable (a function, not an "
                            f"instance of {type(model).__name__}, which defines __eq__ without "
                            f"__hash__): it keys the compiled attack") from None
    return _Plain(model) if params is None else model


def bounds(name: str, value: Any) -> tuple[float, float]:
    """(low, high), two finite numbers with low < high."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(arguments.is_real(v) and math.isfinite(v) for v in pair) or (
            pair[0] >= pair[1]):
        raise ArgumentError(f"{name}: bounds must be (low, high), two finite numbers with "
                            f"low < high (the range of valid inputs), got {value!r}")
    return float(pair[0]), float(pair[1])


def images(name: str, x: Any, low: float, high: float) -> jax.Array:
    """x as a non-empty floating batch (N, ...) whose values all lie in [low, high]."""
    x = arguments.float_batch(name, x)
    smallest, largest = float(jnp.min(x)), float(jnp.max(x))
    if not (low <= smallest and largest <= high):  # NaN fails too
        raise ArgumentError(f"{name}: the inputs must lie within bounds [{low:g}, {high:g}], "
                            f"but they range over [{smallest:g}, {largest:g}]; scale them or "
                            f"pass the bounds they use")
    return x


def labels(name: str, forward: Forward, params: Any, x: jax.Array, value: Any,
           what: str = "labels") -> jax.Array:
    """The labels (or targets) as (N,) int32 in [0, classes), the model checked to map x to
    (N, classes) logits."""
    logits = jax.eval_shape(forward, params, x)
    if len(logits.shape) != 2 or logits.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}: the model must map (N, ...) inputs to (N, classes) logits; "
                         f"it gives {tuple(logits.shape)} for inputs {tuple(x.shape)}")
    return arguments.class_ids(name, value, *logits.shape, what)


def key(name: str, value: Any) -> jax.Array:
    """One PRNG key (typed, or a raw uint32 pair)."""
    return arguments.prng_key(name, value)
