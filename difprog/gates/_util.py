"""Small helpers the gates share: undoing broadcasts, normalising axes, and the checks of static
arguments (axis, window, stride, padding, real constants) that every gate runs before tracing.

Each check raises a difprog error that names the gate, the argument and what it got: DtypeError
for a value of the wrong type, ShapeError for one that does not fit the array's shape, and
ArgumentError for a value of the right type that the gate cannot use.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from difprog.errors import ArgumentError, DtypeError, ShapeError
from difprog.gate import unbroadcast

__all__ = [
    "check_axis",
    "check_count",
    "check_flag",
    "check_padding",
    "check_pair",
    "check_real",
    "expand_reduced",
    "is_int",
    "keep_nan",
    "layer_padding",
    "normalize_axis",
    "pair",
    "unbroadcast",
]


def normalize_axis(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """The reduced axes as a sorted tuple of non-negative ints (None means all)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def expand_reduced(g: jax.Array, axes: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    """Puts back the axes a reduction removed and broadcasts to `shape` (the sum gate copies)."""
    return jnp.broadcast_to(jnp.expand_dims(g, axes), shape)


MAX_EXTENT = 2**31 - 1  # XLA indexes with 32-bit sizes: larger strides, pads or shapes crash it


def is_int(value: Any) -> bool:
    """Whether `value` is a Python int (a bool is not one here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_extent(gate_name: str, name: str, value: Any) -> None:
    """ArgumentError when an int in `value` (an int or nested tuples) exceeds MAX_EXTENT."""
    entries = value if isinstance(value, tuple) else (value,)
    for entry in entries:
        if isinstance(entry, tuple):
            check_extent(gate_name, name, entry)
        elif is_int(entry) and abs(entry) > MAX_EXTENT:
            raise ArgumentError(f"gate {gate_name!r}: argument {name!r} holds {entry}, more "
                                f"than the largest size XLA can index ({MAX_EXTENT})")


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def check_axis(gate_name: str, axis: Any, ndim: int, *, name: str = "axis",
               allow_none: bool = True, allow_tuple: bool = True) -> tuple[int, ...]:
    """The axes `axis` names in an array of rank `ndim`, sorted and non-negative, or a difprog
    error: DtypeError unless it is an int (or None, or a tuple of ints, where allowed),
    ShapeError for an axis outside [-ndim, ndim), ArgumentError for an axis named twice."""
    if axis is None and allow_none:
        return tuple(range(ndim))
    entries = axis if allow_tuple and isinstance(axis, tuple) else (axis,)
    if not all(is_int(a) for a in entries):
        kinds = ["an int", *(["None"] if allow_none else []),
                 *(["a tuple of ints"] if allow_tuple else [])]
        raise DtypeError(f"gate {gate_name!r}: argument {name!r} must be "
                         f"{', '.join(kinds[:-1]) + ' or ' if len(kinds) > 1 else ''}"
                         f"{kinds[-1]}, {_got(axis)}")
    bad = [a for a in entries if not -ndim <= a < ndim]
    if bad:
        raise ShapeError(f"gate {gate_name!r}: argument {name!r} is {axis!r}, but axis {bad[0]} "
                         f"is out of range for an input of rank {ndim} (axes lie in "
                         f"[{-ndim}, {ndim}))")
    axes = sorted(a % ndim for a in entries)
    if len(set(axes)) != len(axes):
        raise ArgumentError(f"gate {gate_name!r}: argument {name!r} names an axis twice, "
                            f"{_got(axis)}")
    return tuple(axes)


def check_real(gate_name: str, name: str, value: Any, *, minimum: float | None = None) -> float:
    """`value` as a float, or a difprog error: DtypeError unless it is a real Python number,
    ArgumentError if it is NaN, infinite or below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DtypeError(f"gate {gate_name!r}: argument {name!r} must be a real number (an int "
                         f"or a float), {_got(value)}")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        least = "" if minimum is None else f" of at least {minimum}"
        raise ArgumentError(f"gate {gate_name!r}: argument {name!r} must be a finite number"
                            f"{least}, got {value!r}")
    return float(value)


def pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """An int or a pair of ints as a pair; ArgumentError (a ValueError) unless they are positive."""
    pair_ = (value, value) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) \
        else ()
    if len(pair_) != 2 or not all(is_int(v) and 0 < v <= MAX_EXTENT for v in pair_):
        raise ArgumentError(f"{name} must be a positive int (at most {MAX_EXTENT}) or a pair of "
                            f"them, {_got(value)}")
    return pair_


def check_pair(gate_name: str, name: str, value: Any) -> tuple[int, int]:
    """A gate's window or stride as a pair: DtypeError unless `value` is an int or a tuple of
    ints, ArgumentError unless it is one or two of them and they are positive."""
    if is_int(value):
        value_pair = (value, value)
    elif isinstance(value, tuple) and all(is_int(v) for v in value):
        value_pair = value
    else:
        raise DtypeError(f"gate {gate_name!r}: argument {name!r} must be a positive int or a "
                         f"pair of them, {_got(value)}")
    if len(value_pair) != 2 or min(value_pair) <= 0:
        raise ArgumentError(f"gate {gate_name!r}: argument {name!r} must be a positive int or a "
                            f"pair of them, got {value!r}")
    check_extent(gate_name, name, value_pair)
    return value_pair


PADDING_NAMES = ("SAME", "VALID", "SAME_LOWER")
_PADDING_FORMS = ("'SAME', 'VALID' or 'SAME_LOWER' (any case), a non-negative int p (p on every "
                  "side), a pair (ph, pw) (ph above and below, pw left and right) or two "
                  "(low, high) pairs, one per spatial axis")


def check_padding(gate_name: str, padding: Any, *, what: str | None = None
                  ) -> str | tuple[tuple[int, int], tuple[int, int]]:
    """A window's padding in the forms PyTorch and JAX users write, as 'SAME', 'VALID',
    'SAME_LOWER' or ((top, bottom), (left, right)): a name in any case, an int p (p on all four
    sides), a pair (ph, pw) (torch's: (ph, ph) and (pw, pw)) or two (low, high) pairs. A difprog
    error otherwise: DtypeError for the wrong types, ArgumentError for negative pads or the
    wrong lengths. `what` names the argument in the message (default the gate's 'padding')."""
    what = what or f"gate {gate_name!r}: argument 'padding'"
    if isinstance(padding, str):
        if padding.upper() not in PADDING_NAMES:
            raise ArgumentError(f"{what} must be {_PADDING_FORMS}, got {padding!r}")
        return padding.upper()
    entries = padding if isinstance(padding, (tuple, list)) else (padding,)
    if not all(is_int(p) or isinstance(p, (tuple, list)) and all(is_int(n) for n in p)
               for p in entries):
        raise DtypeError(f"{what} must be {_PADDING_FORMS}, {_got(padding)}")
    if is_int(padding):
        pads = ((padding, padding), (padding, padding))
    elif len(entries) == 2 and all(is_int(p) for p in entries):
        pads = tuple((p, p) for p in entries)
    elif all(isinstance(p, (tuple, list)) and len(p) == 2 for p in entries):
        pads = tuple(tuple(p) for p in entries)
    else:
        pads = ()
    if len(pads) != 2 or min(n for p in pads for n in p) < 0:
        raise ArgumentError(f"{what} must be {_PADDING_FORMS}, got {padding!r}")
    check_extent(gate_name, "padding", pads)
    return pads


def layer_padding(layer: str, padding: Any) -> str | tuple:
    """A layer's padding as it will pass it to its gate: a name in capitals, or the pads as the
    user wrote them with lists made tuples; a difprog error naming the layer if it is not one of
    check_padding's forms."""
    check_padding(layer, padding, what=f"{layer}: padding")
    if isinstance(padding, str):
        return padding.upper()
    return tuple(tuple(p) if isinstance(p, list) else p for p in padding) \
        if isinstance(padding, (tuple, list)) else padding


def check_flag(gate_name: str, name: str, value: Any) -> bool:
    """`value` if it is True or False; a DtypeError naming the gate and argument otherwise."""
    if not isinstance(value, bool):
        raise DtypeError(f"gate {gate_name!r}: argument {name!r} must be True or False, "
                         f"{_got(value)}")
    return value


def check_count(gate_name: str, name: str, value: Any) -> int:
    """`value` if it is a positive int (not a bool): DtypeError or ArgumentError otherwise."""
    if not is_int(value):
        raise DtypeError(f"gate {gate_name!r}: argument {name!r} must be a positive int, "
                         f"{_got(value)}")
    if not 0 < value <= MAX_EXTENT:
        raise ArgumentError(f"gate {gate_name!r}: argument {name!r} must be a positive int "
                            f"(at most {MAX_EXTENT}), got {value!r}")
    return value


def keep_nan(x, slope):
    """`slope`, but NaN where x is NaN: a kink's derivative must not turn NaN into a number."""
    return jnp.where(jnp.isnan(x), x, slope)
