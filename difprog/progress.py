"""Progress on stderr: a tqdm bar on a terminal, plain log lines when stderr is not a terminal.

A log (a pipe, a file, a CI job) gets one line every `INTERVAL` seconds at most, ending in "\\n"
and never "\\r", such as ``epoch 1/30: 12/45 steps, loss 0.5300, acc 81.25% (5.0 s)``. Every
function here does nothing when `enabled` is false (the command line's --no-progress).

Example:
    >>> with Progress(45, "epoch 1/30", unit="steps") as bar:
    ...     for step in range(45):
    ...         bar.update(1)
    ...         bar.set_postfix(loss="0.5300")
"""

from __future__ import annotations

import sys
import time
from typing import Any, Self

__all__ = ["INTERVAL", "Progress", "compiling", "note"]

INTERVAL = 5.0
"""Seconds between two progress lines when stderr is not a terminal."""


def note(message: str, enabled: bool = True) -> None:
    """Prints `message` as one line on stderr, flushed at once (nothing when not `enabled`)."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def compiling(what: str, enabled: bool = True) -> None:
    """The line printed before the first call of a jitted function: 'compiling `what`...'."""
    note(f"compiling {what}...", enabled)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of a loop of `total` units: a tqdm bar on a terminal, else a line per INTERVAL."""

    def __init__(self, total: int, description: str, *, enabled: bool = True,
                 unit: str = "steps") -> None:
        self.total, self.description, self.unit = total, description, unit
        self.enabled, self.count, self.postfix = enabled, 0, {}
        self.stream = sys.stderr
        self.began = self.last = time.perf_counter()
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=description[:40], leave=False, file=self.stream,
                            dynamic_ncols=True, mininterval=0.25, unit=f" {unit}")

    def update(self, n: int = 1) -> None:
        """Counts `n` more units done; in a log, prints a line when INTERVAL has passed."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last >= INTERVAL:
            self.print_line()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the count, such as loss='0.5300' (shown on the next line)."""
        self.postfix = {k: str(v) for k, v in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(self.postfix, refresh=False)

    def write(self, line: str) -> None:
        """Prints one line of the log on stderr (above the bar, when there is one), enabled or
        not: for what must be seen, such as a diagnosis."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            note(line)

    def print_line(self) -> None:
        """Prints the progress line now (in a log only)."""
        if self.enabled and self.bar is None:
            self.last = time.perf_counter()
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            print(f"{self.description}: {self.count}/{self.total} {self.unit}{extra} "
                  f"({self.last - self.began:.1f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
