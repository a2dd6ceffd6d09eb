"""The text of an expression: checked (UTF-8, printable, its length) and cut into tokens."""

from __future__ import annotations

import keyword
import re
from typing import Any, NamedTuple

from difprog.errors import ArgumentError
from difprog.expression._limits import MAX_MAGNITUDE, MAX_TOKENS


def shown(text: str, limit: int = 60) -> str:
    """The text as it appears in an error message: quoted, escaped, shortened."""
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def as_text(value: Any, what: str, limit: int) -> str:
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


def finite_number(text: str, what: str) -> float:
    """The literal `text` as a float, refused when it is not finite or larger than 1e300."""
    value = float(text)
    if not abs(value) <= MAX_MAGNITUDE:
        raise ArgumentError(f"{what}: the number {shown(text, 30)} is too large; numbers must "
                            f"be finite and at most 1e300 in size")
    return value


def small_int(text: str) -> int | None:
    """The literal `text` as an int when it is a plain integer of at most 9 digits."""
    return int(text) if text.isdigit() and len(text) <= 9 else None


# --- tokens ------------------------------------------------------------------------------------

class Token(NamedTuple):
    """One token of an expression, where it starts, and a number's value."""

    kind: str  # "number", "name", "op" or "end"
    text: str
    position: int
    value: float | None = None


_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


def refuse(expression: str, position: int, reason: str) -> ArgumentError:
    """The error for `expression` at `position` (0-based), to raise."""
    return ArgumentError(f"cannot read {shown(expression)} at character {position + 1}: "
                         f"{reason}")


def tokenize(expression: str) -> list[Token]:
    """The expression's tokens, ending with an 'end' token; refuses anything outside the grammar."""
    tokens: list[Token] = []
    i, n = 0, len(expression)
    while i < n:
        if len(tokens) > MAX_TOKENS:
            raise ArgumentError(f"{shown(expression)} has more than {MAX_TOKENS:,} tokens; "
                                f"write a shorter expression")
        space = _SPACE.match(expression, i)
        if space:
            i = space.end()
            continue
        token = _read_token(expression, i)
        tokens.append(token)
        i = token.position + len(token.text)
    tokens.append(Token("end", "", n))
    return tokens


def _read_token(expression: str, i: int) -> Token:
    """The token that starts at character i."""
    char = expression[i]
    if "0" <= char <= "9" or char == "." and "0" <= expression[i + 1:i + 2] <= "9":
        return _read_number(expression, i)
    name = NAME.match(expression, i)
    if name:
        word = name.group()
        if keyword.iskeyword(word):
            reason = _KEYWORDS.get(word, f"the Python keyword {word!r} is not supported")
            raise refuse(expression, i, reason)
        return Token("name", word, i)
    for text in _FORBIDDEN:
        if expression.startswith(text, i):
            raise refuse(expression, i, _FORBIDDEN[text])
    for text in _OPERATORS:
        if expression.startswith(text, i):
            return Token("op", text, i)
    raise refuse(expression, i, f"unexpected character {char!r}; expressions use {_ALPHABET}")


def _read_number(expression: str, i: int) -> Token:
    """The number that starts at character i, refused when letters or a dot run on after it."""
    match = _NUMBER.match(expression, i)
    end = match.end()
    if end < len(expression) and (expression[end].isalnum() or expression[end] in "._"):
        word = _WORD.match(expression, i).group()
        raise refuse(expression, i, f"{shown(word, 30)} is not a number difprog reads; write "
                                     f"numbers such as 3, -0.5 or 1e-3")
    text = match.group()
    return Token("number", text, i, finite_number(text, f"cannot read {shown(expression)}"))
