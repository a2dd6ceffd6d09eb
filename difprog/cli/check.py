"""Checks each gate's hand-written rules against JAX's autodiff of its forward and against central
finite differences, at several shapes, and prints the worst relative error of each check."""

from __future__ import annotations

import argparse
import sys
import time

from difprog import gates
from difprog.check import Tolerances, check_gate
from difprog.cli import options
from difprog.gates import check_points

__all__ = ["HELP", "arguments", "run"]

_COLUMNS = ("reverse", "forward", "finite difference", "second order")

HELP = "prove every gate's backward and tangent rules in float64"


def arguments(parser: options.Parser) -> None:
    """The options of difprog check."""
    parser.add_argument("names", nargs="*", metavar="GATE",
                        help=f"gates to check (default: all {len(gates.ALL)})")
    options.add_seed(parser, "seed of the check points")


def run(args: argparse.Namespace) -> int:
    """difprog check: prints a row per gate; 1 if any gate fails, 2 for an unknown gate."""
    names, seed = args.names, args.seed
    unknown = [n for n in names if n not in gates.ALL]
    if unknown:
        print(f"difprog check: unknown gate(s) {', '.join(unknown)}; choose from "
              f"{', '.join(gates.ALL)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    header = f"{'gate':<22} {'points':>6} " + " ".join(f"{c:>17}" for c in _COLUMNS) + "  ok"
    print(header)
    print("-" * len(header))
    failed = []
    for name in names or gates.ALL:
        reports = [check_gate(gates.ALL[name], *args, seed=seed, **kwargs)
                   for args, kwargs in check_points(name, seed)]
        ok = all(r.ok for r in reports)
        worst = [max(r.errors[c] for r in reports) for c in _COLUMNS]
        print(f"{name:<22} {len(reports):>6} " + " ".join(f"{e:>17.1e}" for e in worst)
              + f"  {'yes' if ok else 'NO'}", flush=True)
        if not ok:
            failed.append(reports)
    _summary(len(names or gates.ALL), failed, time.perf_counter() - start)
    return 1 if failed else 0


def _summary(checked: int, failed: list, seconds: float) -> None:
    """How many gates passed, the tolerances, and every failing report in full."""
    tol = Tolerances()
    print(f"\n{checked - len(failed)} of {checked} gates ok "
          f"(worst relative errors in float64; tolerances: reverse {tol.reverse:.0e}, forward "
          f"{tol.forward:.0e}, finite difference {tol.finite_difference:.0e}, second order "
          f"{tol.second_order:.0e}) in {seconds:.0f} s")
    for reports in failed:
        for report in reports:
            if not report.ok:
                print(f"\n{report}")
