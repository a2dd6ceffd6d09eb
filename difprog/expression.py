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
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from difprog import gates
from difprog.errors import ArgumentError, DifprogError

__all__ = ["CONSTANTS", "FUNCTIONS", "expression_function", "parse_point"]

MAX_LENGTH = 10_000
MAX_TOKENS = 5_000
MAX_NODES = 2_000
MAX_DEPTH = 64
MAX_VECTOR = 1_000
MAX_MAGNITUDE = 1e300
MAX_ELEMENTS = 1_000_000
MAX_TOTAL_ELEMENTS = 10_000_000
MAX_POINT_LENGTH = 100_000
MAX_POINT_NUMBERS = 10_000
MAX_POINT_DEPTH = 32


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


# --- text --------------------------------------------------------------------------------------

def _shown(text: str, limit: int = 60) -> str:
    """The text as it appears in an error message: quoted, escaped, shortened."""
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def _as_text(value: Any, what: str, limit: int) -> str:
    """`value` as checked text: a str (or UTF-8 bytes) of at most `limit` printable characters."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) > 4 * limit:
            raise ArgumentError(f"{what} is {len(value):,} bytes long; the limit is {limit:,} "
                                f"characters")
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ArgumentError(f"{what} is not valid UTF-8 (byte {error.start + 1}); "
                                f"write it as plain text") from None
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise ArgumentError(f"{what} is {len(value):,} characters long; the limit is {limit:,}")
    if not value.isprintable():
        _refuse_unprintable(value, what)
    return value


def _refuse_unprintable(text: str, what: str) -> None:
    """Refuses lone surrogates (bytes that were not UTF-8) and control characters."""
    for i, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise ArgumentError(f"{what} is not valid UTF-8 (character {i + 1}); write it as "
                                f"plain text")
        if not char.isprintable() and char not in "\t\n\r":
            raise ArgumentError(f"{what} contains the control or invisible character "
                                f"U+{ord(char):04X} at character {i + 1}; remove it")


def _number(text: str, what: str) -> float:
    """The literal `text` as a float, refused when it is not finite or larger than 1e300."""
    value = float(text)
    if not abs(value) <= MAX_MAGNITUDE:
        raise ArgumentError(f"{what}: the number {_shown(text, 30)} is too large; numbers must "
                            f"be finite and at most 1e300 in size")
    return value


def _small_int(text: str) -> int | None:
    """The literal `text` as an int when it is a plain integer of at most 9 digits."""
    return int(text) if text.isdigit() and len(text) <= 9 else None


# --- tokens ------------------------------------------------------------------------------------

class _Token(NamedTuple):
    """One token of an expression, where it starts, and a number's value."""

    kind: str  # "number", "name", "op" or "end"
    text: str
    position: int
    value: float | None = None


_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[0-9A-Za-z_.]+")
_SPACE = re.compile(r"[ \t\r\n]+")
_OPERATORS = ("**", "+", "-", "*", "/", "(", ")", "[", "]", ",", "=")
_FORBIDDEN = {  # longest first, so that '==' is not read as '='
    ":=": "assignments (:=) are not supported",
    "==": "comparisons (==) are not supported: an expression is arithmetic; use max, min or relu",
    "!=": "comparisons (!=) are not supported: an expression is arithmetic; use max, min or relu",
    "<=": "comparisons (<=) are not supported: an expression is arithmetic; use max, min or relu",
    ">=": "comparisons (>=) are not supported: an expression is arithmetic; use max, min or relu",
    "<<": "bitwise operators (<<) are not supported",
    ">>": "bitwise operators (>>) are not supported",
    "//": "floor division (//) is not supported; use /",
    "<": "comparisons (<) are not supported: an expression is arithmetic; use max, min or relu",
    ">": "comparisons (>) are not supported: an expression is arithmetic; use max, min or relu",
    ".": "attribute access (.) is not supported",
    ":": "':' (lambdas, slices, annotations) is not supported",
    "'": "strings are not supported",
    '"': "strings are not supported",
    "@": "the @ operator is not supported; write matmul(x, w)",
    "%": "the % operator is not supported",
    "^": "^ is not a power here; write x**2",
    "~": "bitwise operators (~) are not supported",
    "&": "bitwise operators (&) are not supported",
    "|": "bitwise operators (|) are not supported",
    "{": "sets and dicts ({}) are not supported; write a vector such as [1, 2]",
    "}": "sets and dicts ({}) are not supported; write a vector such as [1, 2]",
    ";": "';' is not supported: give one expression",
    "#": "comments (#) are not supported",
    "\\": "backslashes are not supported",
}
_KEYWORDS = {
    "lambda": "lambdas are not supported",
    "if": "conditionals (if/else) are not supported; use max, min or relu",
    "else": "conditionals (if/else) are not supported; use max, min or relu",
    "for": "comprehensions are not supported; write a vector such as [1, 2, x]",
    "in": "comprehensions and membership tests are not supported",
    "and": "boolean operators (and, or, not) are not supported",
    "or": "boolean operators (and, or, not) are not supported",
    "not": "boolean operators (and, or, not) are not supported",
    "is": "comparisons (is) are not supported",
    "True": "True and False are not numbers here; write 1 or 0",
    "False": "True and False are not numbers here; write 1 or 0",
    "None": "None is not a value here; leave the argument out",
}
_ALPHABET = "ASCII letters, digits, spaces and + - * / ** ( ) [ ] , ="


def _refuse(expression: str, position: int, reason: str) -> ArgumentError:
    """The error for `expression` at `position` (0-based), to raise."""
    return ArgumentError(f"cannot read {_shown(expression)} at character {position + 1}: "
                         f"{reason}")


def _tokenize(expression: str) -> list[_Token]:
    """The expression's tokens, ending with an 'end' token; refuses anything outside the grammar."""
    tokens: list[_Token] = []
    i, n = 0, len(expression)
    while i < n:
        if len(tokens) > MAX_TOKENS:
            raise ArgumentError(f"{_shown(expression)} has more than {MAX_TOKENS:,} tokens; "
                                f"write a shorter expression")
        space = _SPACE.match(expression, i)
        if space:
            i = space.end()
            continue
        token = _read_token(expression, i)
        tokens.append(token)
        i = token.position + len(token.text)
    tokens.append(_Token("end", "", n))
    return tokens


def _read_token(expression: str, i: int) -> _Token:
    """The token that starts at character i."""
    char = expression[i]
    if "0" <= char <= "9" or char == "." and "0" <= expression[i + 1:i + 2] <= "9":
        return _read_number(expression, i)
    name = _NAME.match(expression, i)
    if name:
        word = name.group()
        if keyword.iskeyword(word):
            reason = _KEYWORDS.get(word, f"the Python keyword {word!r} is not supported")
            raise _refuse(expression, i, reason)
        return _Token("name", word, i)
    for text in _FORBIDDEN:
        if expression.startswith(text, i):
            raise _refuse(expression, i, _FORBIDDEN[text])
    for text in _OPERATORS:
        if expression.startswith(text, i):
            return _Token("op", text, i)
    raise _refuse(expression, i, f"unexpected character {char!r}; expressions use {_ALPHABET}")


def _read_number(expression: str, i: int) -> _Token:
    """The number that starts at character i, refused when letters or a dot run on after it."""
    match = _NUMBER.match(expression, i)
    end = match.end()
    if end < len(expression) and (expression[end].isalnum() or expression[end] in "._"):
        word = _WORD.match(expression, i).group()
        raise _refuse(expression, i, f"{_shown(word, 30)} is not a number difprog reads; write "
                                     f"numbers such as 3, -0.5 or 1e-3")
    text = match.group()
    return _Token("number", text, i, _number(text, f"cannot read {_shown(expression)}"))


# --- parser ------------------------------------------------------------------------------------

class _Parser:
    """Recursive descent over the token list, emitting a postfix program.

    The program is a list of instructions: ('constant', value), ('variable', name),
    ('negate',), ('binary', op), ('call', name, n_positional, keywords), ('vector', n).
    Recursion only happens through nesting, which is bounded by MAX_DEPTH.
    """

    def __init__(self, expression: str, tokens: list[_Token], names: list[str]):
        self.expression, self.tokens, self.names = expression, tokens, set(names)
        self.i, self.depth = 0, 0
        self.program: list[tuple] = []
        self.used: set[str] = set()
        self.missing: list[str] = []

    def parse(self) -> list[tuple]:
        """The whole expression as a postfix program."""
        self.expression_()
        if self.peek().kind != "end":
            raise self.unexpected(self.peek())
        if len(self.program) > MAX_NODES:
            raise ArgumentError(f"{_shown(self.expression)} has {len(self.program):,} nodes "
                                f"(numbers, variables, operations and calls); the limit is "
                                f"{MAX_NODES:,}: write a shorter expression")
        return self.program

    def peek(self, ahead: int = 0) -> _Token:
        """The next token (or the one `ahead` after it) without taking it."""
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        """The next token, taken."""
        token = self.peek()
        self.i += 1
        return token

    def at(self, *texts: str) -> bool:
        """Whether the next token is one of the operators `texts`."""
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def expect(self, text: str, purpose: str) -> None:
        """Takes the operator `text`, or refuses saying what it was for."""
        token = self.peek()
        if not self.at(text):
            got = "the end" if token.kind == "end" else repr(token.text)
            raise _refuse(self.expression, token.position, f"expected {text!r} {purpose}, "
                                                           f"got {got}")
        self.take()

    def enter(self, token: _Token) -> None:
        """One level deeper, refused beyond MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _refuse(self.expression, token.position,
                          f"nested more than {MAX_DEPTH} levels deep (brackets, calls, signs "
                          f"and powers each count); write a flatter expression")

    def unexpected(self, token: _Token) -> ArgumentError:
        """The error for a token that cannot come where it is."""
        reasons = {
            "end": "the expression ends too early",
            "[": "subscripts (x[...]) are not supported; use sum, mean or max over axes",
            "(": "only the functions can be called",
            ")": "')' has no matching '('",
            "]": "']' has no matching '['",
            "=": "'=' only gives keyword arguments, as in leaky_relu(x, negative_slope=0.2)",
        }
        if token.kind == "end":
            reason = reasons["end"]
        elif token.kind in ("name", "number"):
            reason = f"missing an operator such as + or * before {token.text!r}"
        else:
            reason = reasons.get(token.text, f"unexpected {token.text!r}")
        return _refuse(self.expression, token.position, reason)

    def expression_(self) -> None:
        """expression := term (('+' | '-') term)*"""
        self.term()
        while self.at("+", "-"):
            op = self.take().text
            self.term()
            self.program.append(("binary", op))

    def term(self) -> None:
        """term := unary (('*' | '/') unary)*"""
        self.unary()
        while self.at("*", "/"):
            op = self.take().text
            self.unary()
            self.program.append(("binary", op))

    def unary(self) -> None:
        """unary := ('-' | '+') unary | power"""
        if not self.at("-", "+"):
            self.power()
            return
        sign = self.take()
        self.enter(sign)
        self.unary()
        self.depth -= 1
        if sign.text == "-":
            self.program.append(("negate",))

    def power(self) -> None:
        """power := atom ['**' unary]"""
        self.atom()
        if self.at("**"):
            op = self.take()
            self.enter(op)
            self.unary()
            self.depth -= 1
            self.program.append(("binary", "**"))

    def atom(self) -> None:
        """atom := number | name | call | '(' expression ')' | vector"""
        token = self.take()
        if token.kind == "number":
            self.program.append(("constant", token.value))
        elif token.kind == "name" and self.at("("):
            self.call(token)
        elif token.kind == "name":
            self.name(token)
        elif token.text == "(" and token.kind == "op":
            self.enter(token)
            self.expression_()
            self.expect(")", f"to close the '(' at character {token.position + 1}")
            self.depth -= 1
        elif token.text == "[" and token.kind == "op":
            self.enter(token)
            self.vector(token)
            self.depth -= 1
        else:
            self.i -= 1
            raise self.unexpected(token)
        if self.at("(", "["):
            raise self.unexpected(self.peek())

    def name(self, token: _Token) -> None:
        """A variable, a constant, or (refused) a function that is not called."""
        name = token.text
        if name in self.names:
            self.used.add(name)
            self.program.append(("variable", name))
        elif name in CONSTANTS:
            self.program.append(("constant", CONSTANTS[name]))
        elif name in FUNCTIONS:
            raise _refuse(self.expression, token.position,
                          f"{name} is a function: call it, as in {name}(x)")
        else:
            if name not in self.missing:
                self.missing.append(name)
            self.program.append(("variable", name))

    def vector(self, open_: _Token) -> None:
        """vector := '[' expression (',' expression)* [','] ']'"""
        if self.at("]"):
            raise _refuse(self.expression, open_.position, "an empty vector [] has no "
                                                            "elements; give at least one")
        count = 0
        while True:
            self.expression_()
            count += 1
            if count > MAX_VECTOR:
                raise _refuse(self.expression, open_.position,
                              f"a vector of more than {MAX_VECTOR:,} items; the limit is "
                              f"{MAX_VECTOR:,}")
            if not self.at(","):
                break
            self.take()
            if self.at("]"):
                break
        self.expect("]", f"to close the '[' at character {open_.position + 1}")
        self.program.append(("vector", count))

    def call(self, token: _Token) -> None:
        """call := function '(' positional* keyword* ')'"""
        name = token.text
        self.check_callable(token)
        open_ = self.take()
        self.enter(open_)
        count, keywords = 0, {}
        while not self.at(")"):
            if self.peek().kind == "name" and self.peek(1).text == "=":
                key = self.take().text
                self.take()
                if key in keywords:
                    raise _refuse(self.expression, self.peek().position,
                                  f"{name}(...) gets {key}= twice")
                keywords[key] = self.constant(name, key)
            elif keywords:
                raise _refuse(self.expression, self.peek().position,
                              "a positional argument cannot follow a keyword argument")
            else:
                self.argument()
                count += 1
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"to close the call of {name}")
        self.depth -= 1
        self.check_arguments(token, count, keywords)
        self.program.append(("call", name, count, tuple(keywords.items())))

    def check_callable(self, token: _Token) -> None:
        """Refuses calls of variables, constants and unknown functions."""
        name = token.text
        if name in self.names:
            raise _refuse(self.expression, token.position,
                          f"{name} is a variable given by --at, so {name}(...) cannot call the "
                          f"function {name}; rename the variable")
        if name in CONSTANTS:
            raise _refuse(self.expression, token.position,
                          f"{name} is a constant, not a function")
        if name not in FUNCTIONS:
            raise ArgumentError(f"{_shown(self.expression)} calls {name}, which is not one of "
                                f"the functions {', '.join(sorted(FUNCTIONS))}")

    def check_arguments(self, token: _Token, count: int, keywords: dict) -> None:
        """Refuses a call whose arguments the function's signature cannot take."""
        name = token.text
        if name == "max":
            signature = gates.max.signature if count == 1 else gates.maximum.signature
        else:
            signature = FUNCTIONS[name].signature
        try:
            signature.bind(*range(count), **keywords)
        except TypeError as error:
            raise _refuse(self.expression, token.position,
                          f"{name}{signature} cannot be called this way: {error}") from None

    def argument(self) -> None:
        """A positional argument: a plain (signed) integer is kept as an int, else an expression."""
        sign = self.peek().text if self.at("-", "+") else ""
        number = self.peek(1 if sign else 0)
        after = self.peek(2 if sign else 1)
        value = _small_int(number.text) if number.kind == "number" else None
        if value is not None and after.kind == "op" and after.text in (",", ")"):
            self.i += 2 if sign else 1
            self.program.append(("constant", -value if sign == "-" else value))
        else:
            self.expression_()

    def constant(self, name: str, key: str) -> Any:
        """A keyword value: a signed number, or a tuple of integers."""
        if self.at("("):
            return self.integer_tuple(name, key)
        sign = -1 if self.at("-") else 1
        if self.at("-", "+"):
            self.take()
        token = self.take()
        if token.kind != "number":
            raise _refuse(self.expression, token.position,
                          f"the value of {key}= in {name}(...) must be a number or a tuple of "
                          f"integers such as (0, 1)")
        value = _small_int(token.text)
        return sign * (token.value if value is None else value)

    def integer_tuple(self, name: str, key: str) -> tuple[int, ...]:
        """'(' [integer (',' integer)* [',']] ')' as a tuple of ints."""
        open_ = self.take()
        items = []
        while not self.at(")"):
            sign = -1 if self.at("-") else 1
            if self.at("-", "+"):
                self.take()
            token = self.take()
            value = _small_int(token.text) if token.kind == "number" else None
            if value is None or len(items) >= MAX_VECTOR:
                raise _refuse(self.expression, token.position,
                              f"the value of {key}= in {name}(...) must be a tuple of small "
                              f"integers such as (0, 1)")
            items.append(sign * value)
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"to close the '(' at character {open_.position + 1}")
        return tuple(items)


# --- evaluation --------------------------------------------------------------------------------

_NUMPY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_PYTHON = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b, "**": lambda a, b: a ** b}


def _is_constant(value: Any) -> bool:
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
    if _is_constant(a) and _is_constant(b):
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
    if all(_is_constant(item) for item in items):
        return np.array(items, np.float64)
    return jnp.stack([jnp.asarray(item) for item in items])


def _run(program: list[tuple], env: dict[str, Any]) -> Any:
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


def _first_line(error: BaseException) -> str:
    """The first line of an error's message (or its type), at most 200 characters."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# --- public ------------------------------------------------------------------------------------

def _check_names(names: list[str]) -> list[str]:
    """The variable names, refused unless they are distinct ASCII identifiers."""
    if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"names must be a list of variable names, got {names!r:.60}")
    seen = set()
    for name in names:
        if not _NAME.fullmatch(name) or keyword.iskeyword(name):
            raise ArgumentError(f"{_shown(name, 30)} is not a variable name; use letters, "
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
    expression = _as_text(expression, "the expression", MAX_LENGTH)
    names = _check_names(names)
    parser = _Parser(expression, _tokenize(expression), names)
    program = parser.parse()
    shown = _shown(expression)
    if parser.missing:
        missing = sorted(parser.missing)
        raise ArgumentError(f"{shown} uses {', '.join(missing)}, which --at does not give a "
                            f"value; add e.g. --at {missing[0]}=1.0, or use one of the functions "
                            f"{', '.join(sorted(FUNCTIONS))} or the constants e, pi")
    unused = [n for n in names if n not in parser.used]
    if unused:
        raise ArgumentError(f"--at gives {', '.join(unused)}, which {shown} does not use")
    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])

    def f(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ArgumentError(f"f{signature} ({shown}): {error}") from None
        try:
            env = {n: jnp.asarray(v) for n, v in bound.arguments.items()}
            result = _run(program, env)
            return jnp.asarray(result) if _is_constant(result) else result
        except DifprogError:
            raise
        except Exception as error:  # the expression is the user's: say what went wrong in it
            raise ArgumentError(f"cannot evaluate {shown}: {_first_line(error)}") from error

    f.__signature__ = signature
    f.__name__ = f.__qualname__ = "f"
    f.__doc__ = f"f{signature} = {expression}"
    return f


def parse_point(text: str) -> dict[str, np.ndarray]:
    """'x=-2,y=5,w=[1,2]' as {'x': -2.0, 'y': 5.0, 'w': [1.0, 2.0]} in float64."""
    text = _as_text(text, "--at", MAX_POINT_LENGTH)
    point: dict[str, np.ndarray] = {}
    numbers = 0
    for item in _split_top_level(text):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name in point:
            raise ArgumentError(f"--at gives {name} twice")
        if not sep or not _NAME.fullmatch(name) or keyword.iskeyword(name):
            raise ArgumentError(f"--at takes name=value pairs separated by commas, "
                                f"such as x=-2,y=5; got {_shown(item.strip())}")
        point[name] = _parse_array(name, value.strip())
        numbers += point[name].size
        if numbers > MAX_POINT_NUMBERS:
            raise ArgumentError(f"--at gives more than {MAX_POINT_NUMBERS:,} numbers; use "
                                f"smaller arrays")
    if not point:
        raise ArgumentError("--at names no variables; give e.g. --at x=-2,y=5")
    return point


def _split_top_level(text: str) -> list[str]:
    """The items of `text` between commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


_POINT_TOKEN = re.compile(r"\s*(?:([\[(])|([\])])|(,)|([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
                          r"(?:[eE][+-]?[0-9]+)?))\s*")


def _parse_array(name: str, text: str) -> np.ndarray:
    """A number or a nested list of numbers, read without recursion, as a float64 array."""
    def refuse(reason: str) -> ArgumentError:
        return ArgumentError(f"the value of {name} must be a number or a nested list of "
                             f"numbers, got {_shown(text)}: {reason}")

    stack: list[list] = [[]]
    expect_value, i = True, 0
    while i < len(text):
        match = _POINT_TOKEN.match(text, i)
        if not match or match.end() == i:
            raise refuse(f"unexpected {text[i]!r} at character {i + 1}")
        opening, closing, comma, number = match.groups()
        i = match.end()
        if opening or number:
            if not expect_value:
                raise refuse("missing a comma")
            if opening:
                stack.append([])
                if len(stack) > MAX_POINT_DEPTH + 1:
                    raise refuse(f"nested more than {MAX_POINT_DEPTH} levels deep")
                continue
            stack[-1].append(_number(number, f"the value of {name}"))
            expect_value = False
        elif comma:
            if expect_value or len(stack) == 1:
                raise refuse("a comma out of place")
            expect_value = True
        else:
            if len(stack) == 1:
                raise refuse("a bracket out of place")
            items = stack.pop()
            stack[-1].append(items)
            expect_value = False
    if len(stack) != 1 or len(stack[0]) != 1:
        raise refuse("unbalanced brackets" if len(stack) != 1 else "no value")
    try:
        return np.asarray(stack[0][0], np.float64)
    except ValueError:
        raise refuse("the rows have different lengths") from None
