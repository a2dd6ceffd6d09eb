"""Expressions such as '(x + y) * z' and points such as 'x=-2,y=5,z=-4', for `difprog explain`.

An expression is read by a tokenizer and parser of difprog's own and evaluated by walking the
parsed program with difprog gates: no Python `eval`, `exec`, `compile` or `ast` ever sees the
user's text, and nothing but the grammar below is in scope. Its grammar, loosest binding first:

    expression := term (('+' | '-') term)*
    term       := unary (('*' | '/') unary)*
    unary      := ('-' | '+') unary | power          # -x**2 is -(x**2), as in Python
    power      := atom ['**' unary]                  # right-associative: 2**3**2 is 2**9
    atom       := number | name | call | '(' expression ')' | vector
    vector     := '[' expression (',' expression)* [','] ']'    # nested vectors make matrices
    call       := function '(' positional* keyword* ')'         # separated by commas
    keyword    := name '=' (['-' | '+'] number | '(' [integer (',' integer)* [',']] ')')
    number     := 3 | 2.5 | .5 | 1e-3 | 6.02E+23     # always float64
    name       := a variable given by --at, the constant pi or e, or (before '(') a function

The functions are the gates exp, log, sqrt, abs, square, reciprocal, power, sigmoid, tanh, relu,
leaky_relu, softplus, gelu, sum, mean, logsumexp, softmax, log_softmax, maximum, minimum and
matmul, plus max(x, y) (the maximum gate), max(x) (the max reduction) and min(x, y) (the minimum
gate). Keyword values are constants: `leaky_relu(x, negative_slope=0.2)`, `sum(x, axis=(0, 1))`;
a positional argument that is a plain integer such as the 0 in `sum(x, 0)` or the 3 in
`power(x, 3)` is passed as that integer. A variable may shadow a function or constant of the same
name. Everything else is refused with a one-line `difprog.ArgumentError` before anything is
evaluated: attribute access, subscripts, strings, comparisons, conditionals, lambdas,
comprehensions, assignments and every other Python keyword or operator.

Limits: an expression of at most 10,000 characters, 5,000 tokens and 2,000 nodes (numbers,
variables, operations and calls: a 1,000-term sum is fine, a 2,000-term one is refused), nested at
most 64 levels deep (brackets, calls, signs and powers each count), vector literals of at most
1,000 items, numbers finite and at most 1e300 in size. Arithmetic on constants is done in float64
by numpy, so `10**10**10` is inf at once, never a huge Python integer. While evaluating, no array
may have more than 1,000,000 elements, nor all of them together more than 10,000,000 (explain
keeps every one). A point given by --at is at most 100,000 characters and 10,000 numbers. Text
that is not valid UTF-8, or holds control or invisible characters other than spaces, tabs and
newlines, is refused.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable

import jax.numpy as jnp

from difprog.errors import ArgumentError, DifprogError
from difprog.expression._evaluate import CONSTANTS, FUNCTIONS, first_line, is_constant, run
from difprog.expression._limits import MAX_LENGTH
from difprog.expression._parser import Parser
from difprog.expression._point import parse_point
from difprog.expression._text import NAME, as_text, shown, tokenize

__all__ = ["CONSTANTS", "FUNCTIONS", "expression_function", "parse_point"]


def _check_names(names: list[str]) -> list[str]:
    """The variable names, refused unless they are distinct ASCII identifiers."""
    if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"names must be a list of variable names, got {names!r:.60}")
    seen = set()
    for name in names:
        if not NAME.fullmatch(name) or keyword.iskeyword(name):
            raise ArgumentError(f"{shown(name, 30)} is not a variable name; use letters, "
                                f"digits and _, such as x or w1")
        if name in seen:
            raise ArgumentError(f"--at gives {name} twice")
        seen.add(name)
    return list(names)


def expression_function(expression: str, names: list[str]) -> Callable:
    """A function of `names` (in order) that evaluates `expression` with difprog gates.

    The expression is parsed here, so every refusal (grammar, limits, unknown functions,
    missing or unused variables) is an ArgumentError raised before anything is evaluated.
    """
    expression = as_text(expression, "the expression", MAX_LENGTH)
    names = _check_names(names)
    parser = Parser(expression, tokenize(expression), names)
    program = parser.parse()
    quoted = shown(expression)
    if parser.missing:
        missing = sorted(parser.missing)
        raise ArgumentError(f"{quoted} uses {', '.join(missing)}, which --at does not give a "
                            f"value; add e.g. --at {missing[0]}=1.0, or use one of the functions "
                            f"{', '.join(sorted(FUNCTIONS))} or the constants e, pi")
    unused = [n for n in names if n not in parser.used]
    if unused:
        raise ArgumentError(f"--at gives {', '.join(unused)}, which {quoted} does not use")
    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])

    def f(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ArgumentError(f"f{signature} ({quoted}): {error}") from None
        try:
            env = {n: jnp.asarray(v) for n, v in bound.arguments.items()}
            result = run(program, env)
            return jnp.asarray(result) if is_constant(result) else result
        except DifprogError:
            raise
        except Exception as error:  # the expression is the user's: say what went wrong in it
            raise ArgumentError(f"cannot evaluate {quoted}: {first_line(error)}") from error

    f.__signature__ = signature
    f.__name__ = f.__qualname__ = "f"
    f.__doc__ = f"f{signature} = {expression}"
    return f
