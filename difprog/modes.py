"""Forward mode against reverse mode on the same gates, and second order.

For f: R^n -> R^m the full Jacobian costs n forward passes (one JVP per input, left to right:
jacfwd) or m reverse passes (one VJP per output, right to left: jacrev). `compare_modes` computes
it both ways, checks they agree, and measures each; `hvp` and `hessian` go to second order
through the gates' own rules.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difprog import arguments, figures, inline
from difprog.errors import ArgumentError
from difprog.progress import note

__all__ = [
    "ModeCost",
    "ModesReport",
    "SIZES",
    "compare_modes",
    "hessian",
    "hvp",
    "plot_sweep",
    "sweep",
    "sweep_table",
]


class ModeCost(NamedTuple):
    """What one mode spent on the full Jacobian.

    Attributes:
        mode: 'forward' (jacfwd) or 'reverse' (jacrev).
        passes: JVPs (forward: one per input) or VJPs (reverse: one per output).
        seconds: median run time of the compiled Jacobian program.
        compile_seconds: time to lower and compile it.
        flops: XLA's cost analysis of the compiled program (None where unavailable).
        bytes_accessed: bytes read and written, from the same analysis.
        temp_bytes: temporary memory from XLA's memory analysis.
    """

    mode: str
    passes: int
    seconds: float
    compile_seconds: float
    flops: float | None
    bytes_accessed: float | None
    temp_bytes: int | None


@dataclasses.dataclass(frozen=True)
class ModesReport:
    """The Jacobian of f by both modes, what each cost, and which is cheaper and why."""

    n_inputs: int
    n_outputs: int
    forward: ModeCost
    reverse: ModeCost
    jacobian: Any
    max_difference: float
    agree: bool
    cheaper: str
    reason: str

    _repr_html_ = inline.text  # in a notebook: the table above

    def __str__(self) -> str:
        rows = [("", "forward (jacfwd)", "reverse (jacrev)")]
        for label, field, show in [
            ("passes", "passes", str),
            ("time", "seconds", lambda s: f"{s * 1e3:.3f} ms"),
            ("compile", "compile_seconds", lambda s: f"{s * 1e3:.0f} ms"),
            ("flops", "flops", _number),
            ("bytes accessed", "bytes_accessed", _number),
            ("temp memory", "temp_bytes", _number),
        ]:
            rows.append((label, show(getattr(self.forward, field)),
                         show(getattr(self.reverse, field))))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"Jacobian of f: R^{self.n_inputs} -> R^{self.n_outputs}"]
        lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                            enumerate(zip(row, widths))) for row in rows]
        agreement = "agree" if self.agree else "DISAGREE"
        lines.append(f"the two Jacobians {agreement} (max relative difference "
                     f"{self.max_difference:.1e})")
        lines.append(f"cheaper: {self.cheaper}. {self.reason}")
        return "\n".join(lines)


def compare_modes(f: Callable, *args: Any, repeats: int = 15, min_seconds: float = 0.05
                  ) -> ModesReport:
    """Computes the Jacobian of `f` at `args` by forward and by reverse mode, and compares them.

    Args:
        f: a function of arrays (or pytrees of arrays) built from difprog gates or jax.numpy.
        *args: where to differentiate; the Jacobian is taken with respect to all of them.
        repeats: the fewest timed runs of each compiled Jacobian (the median is reported).
        min_seconds: time each mode for at least this long, so microsecond programs get enough
            runs for a stable median on a busy machine.

    Returns:
        A `ModesReport`: print it for a table; `report.cheaper` is 'forward' or 'reverse'.

    Example:
        >>> report = compare_modes(lambda x: gates.tanh(gates.matmul(w, x)), jnp.ones(1000))
        >>> report.cheaper, report.reverse.passes
        ('reverse', 1)    # for w of shape (1, 1000): 1 output, 1000 inputs
    """
    if not args:
        raise ArgumentError("compare_modes needs at least one argument to differentiate at")
    repeats = arguments.positive_int("compare_modes", "repeats", repeats)
    min_seconds = arguments.real("compare_modes", "min_seconds", min_seconds, minimum=0)
    argnums = tuple(range(len(args)))
    n = sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(args))
    m = sum(math.prod(s.shape) for s in jax.tree.leaves(jax.eval_shape(f, *args)))
    programs = {"forward": jax.jit(jax.jacfwd(f, argnums=argnums)),
                "reverse": jax.jit(jax.jacrev(f, argnums=argnums))}
    compiled, compile_seconds, jacobians = {}, {}, {}
    for mode, program in programs.items():
        began = time.perf_counter()
        compiled[mode] = program.lower(*args).compile()
        compile_seconds[mode] = time.perf_counter() - began
        jacobians[mode] = jax.block_until_ready(compiled[mode](*args))
    seconds = _interleaved_medians(compiled, args, repeats, min_seconds)
    costs = {mode: ModeCost(mode, n if mode == "forward" else m, seconds[mode],
                            compile_seconds[mode], *_analysis(compiled[mode]))
             for mode in programs}
    difference = _relative_difference(jacobians["forward"], jacobians["reverse"])
    tolerance = 1e-4 if _lowest_precision(args) <= 4 else 1e-10
    cheaper, reason = _verdict(n, m, seconds)
    return ModesReport(n, m, costs["forward"], costs["reverse"], jacobians["reverse"], difference,
                       difference <= tolerance, cheaper, reason)


def hvp(f: Callable, x: Any, v: Any) -> Any:
    """The Hessian-vector product H(x) v of a scalar f, forward over reverse; no Hessian is formed.

    It costs about one gradient: the tangent rules of the gates differentiate their backward
    rules along v.

    Example:
        >>> hvp(lambda x: gates.sum(gates.power(x, 3)), jnp.array([1.0, 2.0]), jnp.ones(2))
        Array([ 6., 12.], dtype=float32)
    """
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def hessian(f: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """The function computing f's full Hessian: forward mode over reverse mode (jacfwd of jacrev).

    Example:
        >>> hessian(lambda x: gates.sum(gates.square(x)))(jnp.ones(3))  # 2 I
    """
    return jax.jacfwd(jax.jacrev(f, argnums=argnums), argnums=argnums)


def _interleaved_medians(compiled: dict, args: tuple, repeats: int, min_seconds: float
                         ) -> dict[str, float]:
    """Median run time of each program, timed in alternating blocks of runs.

    Blocks rather than single runs, because a small program timed right after a large one pays
    for the large one's cache and thread-pool wake-ups; alternation spreads machine drift evenly.
    """
    times: dict[str, list[float]] = {mode: [] for mode in compiled}
    began = time.perf_counter()
    for program in compiled.values():
        jax.block_until_ready(program(*args))
    once = max((time.perf_counter() - began) / len(compiled), 1e-6)
    runs = max(repeats, min(1000, int(min_seconds / once)))
    rounds = 3 if runs >= 9 else 1
    for _ in range(rounds):
        for mode, program in compiled.items():
            for _ in range(-(-runs // rounds)):
                start = time.perf_counter()
                jax.block_until_ready(program(*args))
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(t) for mode, t in times.items()}


def _analysis(compiled: Any) -> tuple[float | None, float | None, int | None]:
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
    except Exception:  # noqa: BLE001 - some backends have no cost model
        cost = {}
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # noqa: BLE001 - some backends have no memory analysis
        temp = None
    return (cost or {}).get("flops"), (cost or {}).get("bytes accessed"), temp


def _relative_difference(a: Any, b: Any) -> float:
    worst = 0.0
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
        if p.size:
            worst = max(worst, float(np.max(np.abs(p - q)) / max(1.0, np.max(np.abs(q)))))
    return worst


def _lowest_precision(args: tuple) -> int:
    sizes = [jnp.asarray(leaf).dtype.itemsize for leaf in jax.tree.leaves(args)]
    return min(sizes) if sizes else 4


def _verdict(n: int, m: int, seconds: dict[str, float]) -> tuple[str, str]:
    """The measured cheaper mode, and why, from the median seconds of each mode."""
    cheaper = "forward" if seconds["forward"] < seconds["reverse"] else "reverse"
    return cheaper, _reason(n, m, cheaper, seconds)


def _reason(n: int, m: int, cheaper: str, seconds: dict[str, float]) -> str:
    ratio = max(seconds.values()) / min(seconds.values())
    theory = ("forward" if n < m else "reverse") if n != m else None
    why = (f"f has n = {n} inputs and m = {m} outputs: forward mode pushes one tangent per "
           f"input ({_count(n, 'JVP')}), reverse mode pulls one cotangent per output "
           f"({_count(m, 'VJP')}), each costing a small multiple of evaluating f")
    if theory == cheaper:
        return f"{why}; {cheaper} mode needs fewer passes and measured {ratio:.1f}x faster."
    if theory is None:
        return f"{why}; with n = m both need the same number of passes, and {cheaper} mode " \
               f"measured {ratio:.2f}x faster."
    return (f"{why}; theory favours {theory} mode, but {cheaper} mode measured {ratio:.2f}x "
            f"faster: at this size fixed costs outweigh the {max(n, m) // max(1, min(n, m))}x "
            f"difference in passes.")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


SIZES = (1, 4, 16, 64, 256, 1024)


def sweep(sizes: tuple[int, ...] = SIZES, width: int = 64, repeats: int = 7,
          on_row: Callable[[dict], Any] | None = None, progress: bool = False) -> list[dict]:
    """compare_modes on f: R^n -> R^m (a tanh MLP of `width` built from gates) for every (n, m).

    `on_row` is called with each point's dict as soon as it is measured; `progress` prints a
    line on stderr before each point compiles its two Jacobians.

    Returns one dict per point: n, m, forward and reverse seconds, flops and temp bytes, the
    ratio time(jacfwd) / time(jacrev), the cheaper mode, and the mode theory predicts.
    """
    from difprog import layers

    rows = []
    for n in sizes:
        for m in sizes:
            model = layers.serial(layers.Dense(width), layers.Tanh(), layers.Dense(width),
                                  layers.Tanh(), layers.Dense(m))
            params = model.init(jax.random.key(0), jnp.zeros(n))
            x = jax.random.normal(jax.random.key(1), (n,))
            f = functools.partial(model.apply, params)
            note(f"point {len(rows) + 1}/{len(sizes) ** 2}: compiling and timing jacfwd and "
                 f"jacrev at n={n}, m={m}...", progress)
            report = compare_modes(f, x, repeats=repeats)
            row = {"n": n, "m": m, "forward_seconds": report.forward.seconds,
                   "reverse_seconds": report.reverse.seconds,
                   "forward_flops": report.forward.flops, "reverse_flops": report.reverse.flops,
                   "forward_temp_bytes": report.forward.temp_bytes,
                   "reverse_temp_bytes": report.reverse.temp_bytes,
                   "ratio": report.forward.seconds / report.reverse.seconds,
                   "cheaper": report.cheaper, "agree": report.agree,
                   "theory": "forward" if n < m else "reverse" if n > m else "either"}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def sweep_table(rows: list[dict]) -> str:
    """The sweep as a markdown table, one line per (n, m)."""
    lines = ["| n | m | jacfwd ms | jacrev ms | jacfwd / jacrev | cheaper | theory |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['m']} | {r['forward_seconds'] * 1e3:.3f} | "
                     f"{r['reverse_seconds'] * 1e3:.3f} | {r['ratio']:.2f} | {r['cheaper']} | "
                     f"{r['theory']} |")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], path: str | os.PathLike) -> pathlib.Path:
    """A heat map of log10(time(jacfwd) / time(jacrev)) over (n, m), written as PNG."""
    if pathlib.Path(path).suffix.lower() != ".png":
        raise ArgumentError(f"plot_sweep writes a .png file, got {str(path)!r}")
    ns, ms = sorted({r["n"] for r in rows}), sorted({r["m"] for r in rows})
    grid = np.full((len(ns), len(ms)), np.nan)
    for r in rows:
        grid[ns.index(r["n"]), ms.index(r["m"])] = np.log10(r["ratio"])
    limit = max(1.0, float(np.nanmax(np.abs(grid))))
    figure, axes = figures.subplots(figsize=(6.4, 5.2))
    image = axes.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
    axes.set_xticks(range(len(ms)), [str(m) for m in ms])
    axes.set_yticks(range(len(ns)), [str(n) for n in ns])
    axes.set_xlabel("m outputs")
    axes.set_ylabel("n inputs")
    for i in range(len(ns)):
        for j in range(len(ms)):
            axes.text(j, i, f"{10 ** grid[i, j]:.2g}", ha="center", va="center", fontsize=7)
    axes.plot([-0.5, len(ms) - 0.5], [-0.5, len(ns) - 0.5], color="black", linewidth=0.8,
              linestyle="--")
    figure.colorbar(image, label="log10 time(jacfwd) / time(jacrev)")
    axes.set_title("Full Jacobian: forward over reverse time\n"
                   "blue: forward mode cheaper (n < m); red: reverse mode cheaper (n > m)")
    figure.tight_layout()
    return figures.save(figure, path, dpi=120)
