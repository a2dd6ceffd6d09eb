"""The `difprog` command line."""

from __future__ import annotations

import argparse
import sys
import time

from difprog import gates
from difprog.check import Tolerances, check_gate
from difprog.gates._points import check_points

_COLUMNS = ("reverse", "forward", "finite difference", "second order")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="difprog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="prove every gate's backward and tangent rules in float64",
        description="Checks each gate's hand-written rules against JAX's autodiff of its "
                    "forward and against central finite differences, at several shapes, and "
                    "prints the worst relative error of each check.")
    check.add_argument("names", nargs="*", metavar="GATE",
                       help=f"gates to check (default: all {len(gates.ALL)})")
    check.add_argument("--seed", type=int, default=0, help="seed of the check points")
    args = parser.parse_args(argv)
    return _check(args.names, args.seed)


def _check(names: list[str], seed: int) -> int:
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
    tol = Tolerances()
    print(f"\n{len(names or gates.ALL) - len(failed)} of {len(names or gates.ALL)} gates ok "
          f"(worst relative errors in float64; tolerances: reverse {tol.reverse:.0e}, forward "
          f"{tol.forward:.0e}, finite difference {tol.finite_difference:.0e}, second order "
          f"{tol.second_order:.0e}) in {time.perf_counter() - start:.0f} s")
    for reports in failed:
        for report in reports:
            if not report.ok:
                print(f"\n{report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
