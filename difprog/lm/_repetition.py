"""How repetitive a text is, the measure of a sampler's degeneration (Holtzman et al. 2020, "The
Curious Case of Neural Text Degeneration"): the longest run of one repeated character, and the
share of distinct n-grams. A sample is judged against stretches of the validation text of its
own length, since code has runs of its own (indentation, rules of '=')."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from difprog import arguments
from difprog.errors import ArgumentError

__all__ = ["Repetition", "repetition", "stretches"]


class Repetition(NamedTuple):
    """The figures of one text: its longest run of one character, and distinct n-grams over all
    n-grams (1.0: none repeats; a text stuck in a loop tends to 0)."""

    longest_run: int
    distinct: float


def repetition(text: str, n: int = 4) -> Repetition:
    """The `Repetition` of `text`, with n-grams of `n` characters.

    Example:
        >>> repetition("aaaaaaa")  # 4 n-grams, all "aaaa"
        Repetition(longest_run=7, distinct=0.25)
        >>> repetition("def f(x):")
        Repetition(longest_run=1, distinct=1.0)
    """
    n = arguments.positive_int("repetition", "n", n)
    if not isinstance(text, str) or len(text) < n:
        raise ArgumentError(f"repetition: the text must be a str of at least n={n} characters, "
                            f"got {text!r:.40}")
    longest = run = 1
    for before, after in zip(text, text[1:]):
        run = run + 1 if after == before else 1
        longest = max(longest, run)
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return Repetition(longest, len(set(grams)) / len(grams))


def stretches(text: str, length: int, count: int) -> list[str]:
    """`count` stretches of `length` characters of `text`, evenly spaced from its start to its
    end: the reference a sample of that length is compared with."""
    length = arguments.positive_int("stretches", "length", length)
    count = arguments.positive_int("stretches", "count", count)
    if len(text) < length:
        raise ArgumentError(f"stretches: the text has {len(text)} characters, fewer than "
                            f"length={length}")
    starts = np.linspace(0, len(text) - length, count).round().astype(int)
    return [text[start:start + length] for start in starts]
