"""Argument checks shared by every gate, layer, model, command and function of difprog.

Each check returns the value (converted where it says so) or raises a difprog error whose message
starts with `owner` (the gate, layer or function at fault) and names the argument and the value:

    >>> arguments.positive_int("Dense", "features", 0)
    ArgumentError: Dense: features must be a positive int, got 0

A bool is never taken for a number (`True` is an int in Python, but no setting means it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from difprog.errors import ArgumentError

__all__ = ["class_ids", "flag", "float_batch", "integer", "is_int", "is_real", "one_of",
           "optional_int", "positive_int", "prng_key", "real"]


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer, False for a bool or anything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for a Python or NumPy real number (int or float), False for a bool or anything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def flag(owner: str, name: str, value: Any) -> bool:
    """`value` if it is True or False; ArgumentError otherwise (1, 'yes' and None included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def integer(owner: str, name: str, value: Any, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """`value` as an int if it is an integer within [minimum, maximum] (each bound optional)."""
    if not _int_within(value, minimum, maximum):
        raise ArgumentError(f"{owner}: {name} must be {_int_range(minimum, maximum)}, "
                            f"got {value!r}")
    return int(value)


def optional_int(owner: str, name: str, value: Any, *, minimum: int | None = None,
                 maximum: int | None = None) -> int | None:
    """None, or `value` as an int within [minimum, maximum] (a setting whose None means 'all' or
    'no limit'); the message says "must be None or ..."."""
    if value is None:
        return None
    if not _int_within(value, minimum, maximum):
        raise ArgumentError(f"{owner}: {name} must be None or {_int_range(minimum, maximum)}, "
                            f"got {value!r}")
    return int(value)


def positive_int(owner: str, name: str, value: Any, *, maximum: int | None = None) -> int:
    """`value` as an int if it is an integer >= 1 (and <= maximum, when given)."""
    return integer(owner, name, value, minimum=1, maximum=maximum)


def real(owner: str, name: str, value: Any, *, minimum: float | None = None,
         maximum: float | None = None, positive: bool = False,
         below_maximum: bool = False) -> float:
    """`value` as a float if it is a finite real number within the bounds given.

    Args:
        minimum, maximum: inclusive bounds, each optional.
        positive: the value must be > 0.
        below_maximum: the maximum itself is excluded (a rate in [0, 1)).
    """
    ok = is_real(value) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (not positive or value > 0)
    ok = ok and (maximum is None or (value < maximum if below_maximum else value <= maximum))
    if not ok:
        raise ArgumentError(f"{owner}: {name} must be "
                            f"{_real_range(minimum, maximum, positive, below_maximum)}, "
                            f"got {value!r}")
    return float(value)


def one_of(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices` (compared with ==, a bool never matching a number)."""
    choices = tuple(choices)
    if isinstance(value, (str, int, float)) or value is None:
        for choice in choices:
            if type(choice) is type(value) and choice == value:
                return value
    raise ArgumentError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


def prng_key(owner: str, value: Any) -> Any:
    """`value` if it is one PRNG key: typed (`jax.random.key(seed)`) or a raw uint32 pair."""
    import jax
    import jax.numpy as jnp

    typed = isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key)
    raw = isinstance(value, (jax.Array, np.ndarray)) and value.shape == (2,) and (
        value.dtype == np.uint32)
    if not (typed and value.shape == ()) and not raw:
        raise ArgumentError(f"{owner}: key must be one PRNG key, jax.random.key(seed), got "
                            f"{getattr(value, 'shape', value)!r}")
    return value


def float_batch(owner: str, x: Any) -> Any:
    """x, a NumPy or JAX floating array with a batch axis and at least one value, as a JAX
    array; DtypeError or ShapeError naming `owner` otherwise."""
    import jax
    import jax.numpy as jnp

    from difprog.errors import DtypeError, ShapeError

    if not isinstance(x, (jax.Array, np.ndarray)) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise DtypeError(f"{owner}: x must be a floating array of inputs (N, ...), got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2 or not x.size:
        raise ShapeError(f"{owner}: x must be a non-empty batch of inputs (N, ...), got shape "
                         f"{tuple(x.shape)}; add the batch axis with x[None]")
    return jnp.asarray(x)


def class_ids(owner: str, value: Any, n: int, count: int, what: str = "classes") -> Any:
    """`value`, an int or one int per image of a batch of n, as (n,) int32 class ids in
    [0, count); `what` names them in the message ('classes', 'labels', 'targets')."""
    import jax.numpy as jnp

    ints = np.asarray(value)
    if ints.dtype == bool or not np.issubdtype(ints.dtype, np.integer) or ints.ndim > 1:
        raise ArgumentError(f"{owner}: {what} must be an int or one int per image, got "
                            f"{value!r}")
    if ints.ndim == 1 and ints.shape[0] != n:
        raise ArgumentError(f"{owner}: {ints.shape[0]} {what} for a batch of {n} images; give "
                            f"one int, or one per image")
    if ints.size and (ints.min() < 0 or ints.max() >= count):
        raise ArgumentError(f"{owner}: {what} must lie in [0, {count}) (the model has {count} "
                            f"classes), got {ints.tolist()}")
    return jnp.broadcast_to(jnp.asarray(ints, jnp.int32), (n,))


def _int_within(value: Any, minimum: int | None, maximum: int | None) -> bool:
    return is_int(value) and (minimum is None or value >= minimum) and (
        maximum is None or value <= maximum)


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum == 1 and maximum is None:
        return "a positive int"
    if minimum == 0 and maximum is None:
        return "an int >= 0"
    if minimum is not None and maximum is not None:
        return f"an int from {minimum} to {maximum}"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def _real_range(minimum: float | None, maximum: float | None, positive: bool,
                below_maximum: bool) -> str:
    if positive and minimum is None and maximum is None:
        return "a positive finite number"
    parts = []
    if positive:
        parts.append("> 0")
    elif minimum is not None:
        parts.append(f">= {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if below_maximum else '<='} {maximum}")
    return "a finite number" + (f" {' and '.join(parts)}" if parts else "")
