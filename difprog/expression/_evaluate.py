"""The functions an expression calls, and the evaluation of a parsed program with difprog
gates (constants in float64 by numpy), within the limits on array sizes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from difprog import gates
from difprog.errors import ArgumentError
from difprog.expression._limits import MAX_ELEMENTS, MAX_TOTAL_ELEMENTS


def _max(x, y=None, **kwargs):
    """max(x, y) is the maximum gate; max(x) reduces over every axis (or axis=...)."""
    return gates.max(x, **kwargs) if y is None else gates.maximum(x, y, **kwargs)


class _Functions(Mapping):
    """The functions expressions call: every gate registered with `expression=...`, under those
    names, read from the registry at each use (a gate registered later is callable too); `max`
    is `_max`, the maximum gate with two arguments and the max reduction with one."""

    def __getitem__(self, name: str) -> Callable:
        gate = gates.REGISTRY.functions[name]
        return _max if gate is gates.max else gate

    def __iter__(self) -> Iterator[str]:
        return iter(gates.REGISTRY.functions)

    def __len__(self) -> int:
        return len(gates.REGISTRY.functions)


FUNCTIONS: Mapping[str, Callable] = _Functions()
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


_NUMPY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_PYTHON = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b, "**": lambda a, b: a ** b}


def is_constant(value: Any) -> bool:
    """Whether `value` is a constant of the expression (evaluated by numpy) rather than an array."""
    return isinstance(value, (int, float, np.ndarray, np.generic))


def _jax(value: Any) -> Any:
    """A constant vector as a jax array (numbers stay Python numbers: weakly typed)."""
    return jnp.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else value


def _check_size(shape: tuple[int, ...], what: str) -> None:
    """Refuses an intermediate array of more than MAX_ELEMENTS elements."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise ArgumentError(f"{what} would make an array of shape {shape}, more than "
                            f"{MAX_ELEMENTS:,} elements; use smaller arrays")


def _broadcast_size_check(values: list, what: str) -> None:
    """Refuses operands whose broadcast result is too large (a mismatch is left to the op)."""
    try:
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))
    except ValueError:
        return
    _check_size(shape, what)


def _binary(op: str, a: Any, b: Any) -> Any:
    """a op b: in float64 numpy for two constants, else with the array's own operators."""
    _broadcast_size_check([a, b], f"{op!r}")
    if is_constant(a) and is_constant(b):
        with np.errstate(all="ignore"):
            result = _NUMPY[op](np.asarray(a, np.float64), np.asarray(b, np.float64))
        return float(result) if result.ndim == 0 else result
    if op == "**" and isinstance(b, float) and b.is_integer() and abs(b) < 2**31:
        b = int(b)  # x**2 is jax's integer_pow, which explain shows as the square gate
    return _PYTHON[op](_jax(a), _jax(b))


def _call(name: str, args: list, keywords: tuple) -> Any:
    """The function `name` applied to evaluated arguments and constant keywords."""
    if name == "matmul" and len(args) == 2 and all(np.ndim(a) >= 1 for a in args):
        a, b = np.shape(args[0]), np.shape(args[1])
        _check_size(a[:-1] + b[:-2] + b[-1:], "matmul")
    elif len(args) > 1:
        _broadcast_size_check(args, name)
    return FUNCTIONS[name](*(_jax(a) for a in args), **dict(keywords))


def _vector(items: list) -> Any:
    """[a, b, ...] as an array: numpy float64 for constants, else stacked with jax.numpy."""
    shapes = {np.shape(item) for item in items}
    if len(shapes) > 1:
        raise ArgumentError(f"the items of a vector must all have one shape, got "
                            f"{' and '.join(str(s) for s in sorted(shapes))}")
    _check_size((len(items), *shapes.pop()), "a vector")
    if all(is_constant(item) for item in items):
        return np.array(items, np.float64)
    return jnp.stack([jnp.asarray(item) for item in items])


def run(program: list[tuple], env: dict[str, Any]) -> Any:
    """Evaluates the postfix program over a value stack (no recursion)."""
    stack: list[Any] = []
    total = 0
    for instruction in program:
        if stack:
            total += math.prod(np.shape(stack[-1]))
            if total > MAX_TOTAL_ELEMENTS:
                raise ArgumentError(f"the arrays of this expression hold more than "
                                    f"{MAX_TOTAL_ELEMENTS:,} numbers in all; use smaller arrays "
                                    f"or a shorter expression")
        kind = instruction[0]
        if kind == "constant":
            stack.append(instruction[1])
        elif kind == "variable":
            stack.append(env[instruction[1]])
        elif kind == "negate":
            stack.append(-stack.pop())
        elif kind == "binary":
            b, a = stack.pop(), stack.pop()
            stack.append(_binary(instruction[1], a, b))
        elif kind == "call":
            _, name, count, keywords = instruction
            args = stack[len(stack) - count:]
            del stack[len(stack) - count:]
            stack.append(_call(name, args, keywords))
        else:  # vector
            count = instruction[1]
            items = stack[len(stack) - count:]
            del stack[len(stack) - count:]
            stack.append(_vector(items))
    (result,) = stack
    return result


def first_line(error: BaseException) -> str:
    """The first line of an error's message (or its type), at most 200 characters."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
