"""The `difprog` command line.

Every failure is one line on stderr and a non-zero exit status: 2 for a usage error (an unknown
option, a value out of range), 1 for a failure while running; `--debug` shows the traceback
instead. Commands that write take `--out DIR` (default `./difprog-<command>`) and own it while
they write (see `difprog.rundir`).

Each command is a module of this package: its docstring (the first paragraph of its --help),
`HELP` (its line in `difprog --help`), `arguments(parser)` (adds its options) and
`run(args) -> exit status`. `COMMANDS` names them in the order --help shows them.
"""

from __future__ import annotations

import sys
import warnings

from difprog import interrupts

__all__ = ["COMMANDS", "main", "parser"]


def main(argv: list[str] | None = None) -> int:
    """Runs the `difprog` command line on `argv` (default: sys.argv[1:]); the exit status.

    Ctrl-C and SIGTERM end it in one line from its first moment (`difprog.interrupts`), before
    JAX is imported; a JAX that refuses to start (a bad JAX_* variable) is one line too, and so
    is each warning; text the terminal's encoding lacks is escaped, not an error."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return _run(argv)
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were in place, its first moments
        print("difprog: interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    with interrupts.handled(), warnings.catch_warnings():
        warnings.showwarning = _warning_line
        try:
            from difprog.cli import _main
        except Exception as error:  # noqa: BLE001 - JAX's own checks of its environment
            first = next((line for line in str(error).splitlines() if line.strip()), "")
            print(f"difprog: JAX cannot start ({type(error).__name__}: {first.strip()}); check "
                  f"the JAX_* and XLA_FLAGS environment variables", file=sys.stderr)
            return 1
        return _main.main(argv)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr."""
    text = " ".join(str(message).split())
    print(f"difprog: warning: {text} ({category.__name__})", file=sys.stderr)


def __getattr__(name: str):
    """`COMMANDS` and `parser`, from the module that imports every command."""
    if name in ("COMMANDS", "parser"):
        from difprog.cli import _main
        return getattr(_main, name)
    raise AttributeError(f"module 'difprog.cli' has no attribute {name!r}")
