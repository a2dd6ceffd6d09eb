"""Expressions such as '(x + y) * z' and points such as 'x=-2,y=5,z=-4', for `difprog explain`.

An expression is Python arithmetic over named variables and difprog gates (exp, sigmoid, max...);
nothing else is in scope. Its variables become the function's arguments, in the order the
point names them.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable

import numpy as np

from difprog import gates
from difprog.errors import ArgumentError, DifprogError


def _max(x, y=None):
    """max(x, y) is the maximum gate; max(x) reduces over every axis."""
    return gates.max(x) if y is None else gates.maximum(x, y)


FUNCTIONS = {
    **{name: gates.ALL[name] for name in (
        "exp", "log", "sqrt", "abs", "square", "reciprocal", "power", "sigmoid", "tanh", "relu",
        "leaky_relu", "softplus", "gelu", "sum", "mean", "logsumexp", "softmax", "log_softmax",
        "maximum", "minimum", "matmul")},
    "max": _max, "min": gates.minimum, "pi": math.pi, "e": math.e,
}


def expression_function(expression: str, names: list[str]) -> Callable:
    """A function of `names` (in order) that evaluates `expression` with difprog gates."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise ArgumentError(f"cannot parse {expression!r}: {error.msg}") from None
    called = {n.func.id for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    unknown = sorted(called - set(FUNCTIONS) - set(names))
    if unknown:
        raise ArgumentError(f"{expression!r} calls {unknown[0]}, which is not one of the "
                            f"functions {', '.join(sorted(FUNCTIONS))}")
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    missing, unused = sorted(used - set(names) - set(FUNCTIONS)), sorted(set(names) - used)
    if missing:
        raise ArgumentError(f"{expression!r} uses {', '.join(missing)}, which --at does "
                            f"not give a value; add e.g. --at {missing[0]}=1.0, or use one of "
                            f"the functions {', '.join(sorted(FUNCTIONS))}")
    if unused:
        raise ArgumentError(f"--at gives {', '.join(unused)}, which {expression!r} "
                            f"does not use")
    code = compile(tree, "<expression>", "eval")

    def f(*values):
        try:
            return eval(code, {"__builtins__": {}, **FUNCTIONS}, dict(zip(names, values)))
        except DifprogError:
            raise
        except Exception as error:  # the expression is the user's: say what went wrong in it
            raise ArgumentError(f"cannot evaluate {expression!r}: {error}") from error

    f.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    f.__name__ = "f"
    return f


def parse_point(text: str) -> dict[str, np.ndarray]:
    """'x=-2,y=5,w=[1,2]' as {'x': -2.0, 'y': 5.0, 'w': [1.0, 2.0]} in float64."""
    point: dict[str, np.ndarray] = {}
    for item in _split_top_level(text):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name in point:
            raise ArgumentError(f"--at gives {name} twice")
        if not sep or not name.isidentifier():
            raise ArgumentError(f"--at takes name=value pairs separated by commas, "
                                f"such as x=-2,y=5; got {item!r}")
        try:
            point[name] = np.asarray(ast.literal_eval(value.strip()), np.float64)
        except (ValueError, SyntaxError, TypeError):
            raise ArgumentError(f"the value of {name} must be a number or a nested "
                                f"list of numbers, got {value.strip()!r}") from None
    if not point:
        raise ArgumentError("--at names no variables; give e.g. --at x=-2,y=5")
    return point


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [i for i in [*items, current] if i.strip()]
