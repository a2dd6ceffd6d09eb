"""What every command of the `difprog` command line shares: the parser whose usage errors are one
line (exit status 2), the help formatter that shows defaults, the argparse types of numbers,
seeds and output directories, and the builders of options several commands take."""

from __future__ import annotations

import argparse
import math
import pathlib
from collections.abc import Callable

from difprog.errors import DifprogError

__all__ = ["DEBUG_HELP", "FLOAT32_MAX", "SEED_LIMIT", "Formatter", "Parser", "UsageError",
           "add_checkpoint", "add_no_progress", "add_out", "add_seed", "add_trained_model",
           "command", "devices",
           "fraction", "integer", "number", "one_line", "out_dir", "positive", "seed", "share"]

SEED_LIMIT = 2**32
DEBUG_HELP = "show the traceback of a failure instead of one line"


class UsageError(Exception):
    """A command line argparse cannot read: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (see --help for the usage)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in --help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)) \
                or "default" in text:
            return text
        return super()._get_help_string(action)


def one_line(error: BaseException) -> str:
    """An exception as one line: difprog's own message, or its type and message otherwise."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, DifprogError | OSError):
        return text or type(error).__name__
    if isinstance(error, RuntimeError) and text.startswith("Unable to initialize backend"):
        return f"JAX cannot start: {text}; check the JAX_PLATFORMS environment variable"
    return (f"{type(error).__name__}: {text} (an unexpected error: run again with --debug for "
            f"the traceback, and please report it)")


def command(commands, name: str, handler: Callable | None, help: str,
            description: str) -> Parser:
    """A subcommand parser that runs `handler` and also accepts --debug after its name."""
    parser = commands.add_parser(name, help=help, description=description,
                                 formatter_class=Formatter)
    parser.set_defaults(handler=handler)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help=DEBUG_HELP)
    return parser


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (inclusive; None: no limit)."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {limit}, got {text}")
        return value

    read.__name__ = "integer"
    return read


FLOAT32_MAX = 3.4028234663852886e38


def number(positive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number, positive or non-negative."""

    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            kind = "positive" if positive else "non-negative"
            raise argparse.ArgumentTypeError(f"expected a finite {kind} number, got {text}")
        if value > FLOAT32_MAX:
            raise argparse.ArgumentTypeError(f"expected a number up to {FLOAT32_MAX:.7g} (the "
                                             f"largest float32, as the model computes), got "
                                             f"{text}")
        return value

    read.__name__ = "number"
    return read


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = number(positive=False)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def share(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = number(positive=True)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


seed = integer(0, SEED_LIMIT - 1)
positive = integer(1, 2**31 - 1)  # counts and sizes: XLA indexes with 32-bit ints
devices = integer(1, 1024)  # more than a host has; XLA's CPU client aborts on absurd counts


def out_dir(text: str) -> pathlib.Path:
    """An argparse type: an output directory, with a name, that is not an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output directory must have a name, got ''")
    path = pathlib.Path(text)
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as error:  # a name too long, a parent that cannot be entered
        raise argparse.ArgumentTypeError(f"cannot use {text!r}: {error.strerror}") from None
    if is_file:
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    return path


def add_out(parser: Parser, command: str, what: str) -> None:
    """The --out option of a command that writes, defaulting to ./difprog-<command>."""
    parser.add_argument("--out", type=out_dir, default=pathlib.Path(f"difprog-{command}"),
                        metavar="DIR", help=f"directory for {what}")


def add_checkpoint(parser: Parser) -> None:
    """--checkpoint PATH (required): a checkpoint file or a run directory."""
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True, metavar="PATH",
                        help="a checkpoint file, or a run directory (its newest checkpoint)")


def add_trained_model(parser: Parser, command: str, what: str) -> None:
    """--checkpoint, --out (for `what`) and --model of a command that reads a trained model."""
    add_checkpoint(parser)
    add_out(parser, command, what)
    parser.add_argument("--model", default=None,
                        help="the checkpoint's model (default: the one recorded in it)")


def add_seed(parser: Parser, what: str, default: int = 0, *, limits: bool = False) -> None:
    """--seed N, from 0 to 2**32 - 1; `what` says what it seeds."""
    shown = f" (0 to {SEED_LIMIT - 1})" if limits else ""
    parser.add_argument("--seed", type=seed, default=default, help=f"{what}{shown}")


def add_no_progress(parser: Parser, help: str | None = None) -> None:
    """--no-progress: hide the progress bar and the compile lines (or what `help` says)."""
    parser.add_argument("--no-progress", action="store_true", help=help or (
        "hide the progress bar and the compile lines (when stderr is not a terminal, the bar "
        "is a line every 5 s at most)"))
