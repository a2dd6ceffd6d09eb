"""Explains an expression in variables x, y, z... built from arithmetic and difprog gates (exp,
log, sqrt, sigmoid, tanh, relu, max, min, sum...): prints the forward and backward pass node by
node and, with --out, writes graph.svg, graph.png, graph.html (a page that steps through both
passes in a browser, with no network access), table.txt and flat_code.py."""

from __future__ import annotations

import argparse
import sys

import jax

from difprog.cli import options

__all__ = ["HELP", "arguments", "expression_last", "run"]

_VALUED = ("--at", "--out")  # explain's options that take a value
_FLAGS = ("-h", "--help", "--debug")  # and those that take none

HELP = "a function's graph with values and gradients at every node"


def arguments(parser: options.Parser) -> None:
    """The options of difprog explain."""
    parser.add_argument("expression", help="such as '(x + y) * z' or '1 / (y + exp(-x))'")
    parser.add_argument("--at", required=True,
                        help="the point, such as x=-2,y=5,z=-4 (lists for vectors: w=[1,2])")
    parser.add_argument("--out", type=options.out_dir, default=None, metavar="DIR",
                        help="directory for the graph (picture and interactive page), table "
                             "and flat code (default: print only)")


def expression_last(argv: list[str]) -> list[str]:
    """argv with explain's expression moved after a `--`, so that an expression starting with a
    minus sign (`difprog explain '-x' --at x=1`) is not read as an option."""
    command = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if command is None or argv[command] != "explain":
        return argv
    start = command + 1
    given, positionals, rest = [], [], iter(argv[start:])
    for token in rest:
        if token == "--":
            positionals += list(rest)
        elif token in _VALUED:
            given += [token, next(rest, "")]
        elif token in _FLAGS or token.startswith(tuple(f"{o}=" for o in _VALUED)):
            given.append(token)
        else:
            positionals.append(token)
    return argv[:start] + given + (["--", *positionals] if positionals else [])


def run(args: argparse.Namespace) -> int:
    """difprog explain: prints the explanation (and writes it with --out); 1 if the gates'
    rules and JAX's autodiff disagree, 2 for an expression or point the grammar refuses."""
    from difprog import rundir
    from difprog.errors import DifprogError
    from difprog.expression import expression_function, parse_point
    from difprog.graph import MAX_DRAWN, explain

    try:  # an expression or point the grammar refuses is a usage error
        point = parse_point(args.at)
        f = expression_function(args.expression, list(point))
    except DifprogError as error:
        print(f"difprog explain: {error}", file=sys.stderr)
        return 2
    try:
        out = rundir.checked(args.out) if args.out else None
        with jax.enable_x64(True):
            explanation = explain(f, *point.values(),  # --out draws: refuse before computing
                                  max_nodes=MAX_DRAWN if out else None)
            print(explanation)
            if out:
                rundir.create(out)
            written = explanation.save(out) if out else []
    except (DifprogError, OSError) as error:
        print(f"difprog explain: {error}", file=sys.stderr)
        return 1
    if written:
        print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0 if explanation.agrees else 1
