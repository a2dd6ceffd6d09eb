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

from difprog import interrupts

__all__ = ["COMMANDS", "main", "parser"]


def main(argv: list[str] | None = None) -> int:
    """Runs the `difprog` command line on `argv` (default: sys.argv[1:]); the exit status.

    Ctrl-C and SIGTERM end it in one line from its first moment (`difprog.interrupts`), before
    JAX is imported."""
    with interrupts.handled():
        from difprog.cli import _main
        return _main.main(argv)


def __getattr__(name: str):
    """`COMMANDS` and `parser`, from the module that imports every command."""
    if name in ("COMMANDS", "parser"):
        from difprog.cli import _main
        return getattr(_main, name)
    raise AttributeError(f"module 'difprog.cli' has no attribute {name!r}")
