"""The command line's parser and runner, imported once `difprog.cli.main` handles interrupts."""

from __future__ import annotations

import argparse
import platform
import sys
import traceback

import jax

from difprog import interrupts, rendezvous
from difprog.cli import attack, attribute, bench, check, demo, explain, sample, train, visualize
from difprog.cli.options import DEBUG_HELP, Formatter, Parser, UsageError, command, one_line
from difprog.errors import PeerError

__all__ = ["COMMANDS", "main", "parser"]

COMMANDS = {"demo": demo, "train": train, "sample": sample, "visualize": visualize,
            "attribute": attribute, "attack": attack, "explain": explain, "check": check,
            "bench": bench}


def main(argv: list[str] | None = None) -> int:
    """Runs the `difprog` command line on `argv` (default: sys.argv[1:]); the exit status."""
    try:
        args = parser().parse_args(
            explain.expression_last(sys.argv[1:] if argv is None else list(argv)))
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    return _run(args)


def parser() -> Parser:
    """The parser of every command, each with its handler in `args.handler`."""
    from difprog import __version__, cli

    top = Parser(prog="difprog", description=cli.__doc__.splitlines()[0],
                 formatter_class=Formatter)
    top.add_argument("--version", action="version",
                     version=f"difprog {__version__} (jax {jax.__version__}, Python "
                             f"{platform.python_version()})")
    top.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.arguments(command(commands, name, module.run, module.HELP, module.__doc__))
    return top


def _run(args: argparse.Namespace) -> int:
    """Runs the chosen command; a failure becomes one line on stderr (a traceback with --debug).

    The other processes of a --distributed run are told when this one ended well; otherwise
    they stop too."""
    name = " ".join(filter(None, (args.command, getattr(args, "benchmark", None))))
    interrupts.rename(name)
    joined, said = False, None
    try:
        status = args.handler(args)
    except UsageError as error:
        joined, said, status = _leave_failed(), str(error), 2
    except KeyboardInterrupt:
        joined, said, status = _leave_failed(), f"difprog {name}: interrupted", 130
    except Exception as error:
        cause = None if isinstance(error, PeerError) else rendezvous.departed()
        joined = _leave_failed(peer=isinstance(error, PeerError))
        if args.debug and not joined:
            raise
        if args.debug:
            traceback.print_exc()
        said, status = f"difprog {name}: {cause or one_line(error)}", 1
    if joined:  # JAX's own exit would wait for the others in a barrier they never reach
        interrupts.end(status, said)
    if said is not None:
        print(said, file=sys.stderr)
    rendezvous.leave(done=status == 0)
    return status


def _leave_failed(peer: bool = False) -> bool:
    """Stops the other processes of a cluster this one joined, before it says why it failed
    (so that it does not also report them stopping); whether it had joined one. A `peer`
    failure (another process's, which that process reports) leaves quietly instead, so that the
    process at fault is not stopped before it says why."""
    joined = rendezvous.joined()
    rendezvous.leave(done=peer)
    return joined
