"""Points such as 'x=-2,y=5,w=[1,2]' (`difprog explain --at`), read without eval."""

from __future__ import annotations

import keyword
import re

import numpy as np

from difprog.errors import ArgumentError
from difprog.expression._limits import MAX_POINT_DEPTH, MAX_POINT_LENGTH, MAX_POINT_NUMBERS
from difprog.expression._text import NAME, as_text, finite_number, shown


def parse_point(text: str) -> dict[str, np.ndarray]:
    """'x=-2,y=5,w=[1,2]' as {'x': -2.0, 'y': 5.0, 'w': [1.0, 2.0]} in float64."""
    text = as_text(text, "--at", MAX_POINT_LENGTH)
    point: dict[str, np.ndarray] = {}
    numbers = 0
    for item in _split_top_level(text):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name in point:
            raise ArgumentError(f"--at gives {name} twice")
        if not sep or not NAME.fullmatch(name) or keyword.iskeyword(name):
            raise ArgumentError(f"--at takes name=value pairs separated by commas, "
                                f"such as x=-2,y=5; got {shown(item.strip())}")
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
                             f"numbers, got {shown(text)}: {reason}")

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
            stack[-1].append(finite_number(number, f"the value of {name}"))
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
