"""Benchmarks that write tables and plots."""

from __future__ import annotations

import argparse
import json

import jax

from difprog.cli import options

__all__ = ["HELP", "arguments", "run", "run_modes"]

HELP = "benchmarks that write tables and plots"
run = None  # a benchmark runs: `difprog bench` alone is a usage error

_MODES_HELP = "forward against reverse mode over f: R^n -> R^m"
_MODES_DESCRIPTION = ("Times the full Jacobian by jacfwd and by jacrev for a tanh MLP built "
                      "from gates, for every (n, m), and writes modes.md, modes.json and "
                      "modes.png.")


def arguments(parser: options.Parser) -> None:
    """The benchmarks of difprog bench, each a command of its own, and their options."""
    benchmarks = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    modes = options.command(benchmarks, "modes", run_modes, _MODES_HELP, _MODES_DESCRIPTION)
    options.add_out(modes, "bench", "modes.md, modes.json and modes.png")
    modes.add_argument("--sizes", type=options.positive, nargs="+", default=None, metavar="N",
                       help="values of n and m (default: 1 4 16 64 256 1024)")
    modes.add_argument("--width", type=options.positive, default=64,
                       help="hidden width of the MLP")
    modes.add_argument("--repeats", type=options.positive, default=7,
                       help="timed runs per point")
    options.add_no_progress(
        modes, "hide the line printed on stderr before each point compiles")


def run_modes(args: argparse.Namespace) -> int:
    """difprog bench modes: the jacfwd/jacrev sweep, printed and written into --out."""
    from difprog import modes, rundir
    from difprog.files import atomic, write_bytes

    sizes = tuple(args.sizes) if args.sizes else modes.SIZES
    with rundir.own(args.out) as out:
        print(f"{'n':>5} {'m':>5} {'jacfwd ms':>10} {'jacrev ms':>10} {'fwd/rev':>8}  cheaper")
        rows = modes.sweep(sizes, args.width, args.repeats, on_row=_print_row,
                           progress=not args.no_progress)
        header = (f"Full Jacobian of a tanh MLP (width {args.width}) built from gates, f: R^n "
                  f"-> R^m; median of at least {args.repeats} runs (50 ms or more per mode) on "
                  f"{jax.devices()[0].device_kind}, jax {jax.__version__}.\n\n")
        for name, text in (("modes.md", header + modes.sweep_table(rows) + "\n"),
                           ("modes.json", json.dumps(rows, indent=2) + "\n")):
            with atomic(out.path / name) as temporary:
                write_bytes(temporary, text.encode())
        modes.plot_sweep(rows, out.path / "modes.png")
    compared = [r for r in rows if r["theory"] != "either"]
    agree = sum(r["cheaper"] == r["theory"] for r in compared)
    print(f"\nwrote modes.md, modes.json and modes.png into {args.out}/; the measured cheaper "
          f"mode agrees with n vs m at {agree} of {len(compared)} points with n != m")
    return 0


def _print_row(r: dict) -> None:
    """One point of the sweep, as it is measured."""
    print(f"{r['n']:>5} {r['m']:>5} {r['forward_seconds'] * 1e3:>10.3f} "
          f"{r['reverse_seconds'] * 1e3:>10.3f} {r['ratio']:>8.2f}  {r['cheaper']}", flush=True)
