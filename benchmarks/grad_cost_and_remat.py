"""Benchmark: what a gradient costs over a forward pass, and what rematerialisation saves.

1. Gradient cost: time(grad of the loss) / time(loss) for the 784-1024-1024-10 MLP of
   gates_vs_native.py (batch 256), built from difprog gates and in plain jax.numpy. Reverse
   mode costs a small multiple of the forward pass (the backward pass does about twice the
   forward's matrix work); target <= 3.
2. Rematerialisation: temporary memory (XLA's memory analysis) and time of the gradient of a
   64-layer, width-512 tanh MLP, as `layers.repeat` (one lax.scan) with remat None, 'each' and
   'sqrt', and as an unrolled `layers.serial` with remat None and 'sqrt'. Target: >= 4x less
   temporary memory at <= 1.5x the time.

Every timing is a median of runs taken in alternating blocks, in one process.

Usage:
    python benchmarks/grad_cost_and_remat.py
    python benchmarks/grad_cost_and_remat.py --hidden 16 --batch 4 --layers 4 --width 8 \\
        --remat-batch 4 --repeats 2                                          # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gates_vs_native import cpu_name, init_params, loss_difprog, loss_native

from difprog import gates, layers


def medians(programs: dict, args: dict, repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds of each compiled program over `repeats` runs, in alternating blocks."""
    times = {name: [] for name in programs}
    for name, program in programs.items():
        jax.block_until_ready(program(*args[name]))
    for _ in range(rounds):
        for name, program in programs.items():
            for _ in range(-(-repeats // rounds)):
                start = time.perf_counter()
                jax.block_until_ready(program(*args[name]))
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def gradient_cost(batch: int, hidden: int, repeats: int) -> None:
    sizes = (784, hidden, hidden, 10)
    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    params = init_params(kp, sizes)
    x = jax.random.normal(kx, (batch, sizes[0]), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, sizes[-1], jnp.int32)
    programs, args = {}, {}
    for name, loss in (("difprog", loss_difprog), ("native", loss_native)):
        programs[f"{name} forward"] = jax.jit(loss)
        programs[f"{name} grad"] = jax.jit(jax.grad(loss))
        args[f"{name} forward"] = args[f"{name} grad"] = (params, x, y)
    seconds = medians(programs, args, repeats)
    print(f"## Gradient cost: MLP {'-'.join(map(str, sizes))}, batch {batch}, float32\n")
    print("| variant | forward ms | grad ms | grad / forward |")
    print("|---|---|---|---|")
    for name in ("difprog", "native"):
        forward, grad = seconds[f"{name} forward"], seconds[f"{name} grad"]
        print(f"| {name} | {forward * 1e3:.3f} | {grad * 1e3:.3f} | {grad / forward:.2f} |")
    ratio = seconds["difprog grad"] / seconds["difprog forward"]
    print(f"\ndifprog grad / forward {ratio:.2f} {'meets' if ratio <= 3 else 'MISSES'} the target "
          f"<= 3\n")


def remat(depth: int, width: int, batch: int, repeats: int) -> None:
    x = jax.random.normal(jax.random.key(1), (batch, width), jnp.float32)
    block = lambda: layers.serial(layers.Dense(width), layers.Tanh())
    stacked = layers.repeat(block(), depth)
    unrolled = layers.serial(*[block() for _ in range(depth)])
    variants = {
        "repeat (scan), no remat": (layers.repeat(block(), depth), stacked),
        "repeat, remat='each'": (layers.repeat(block(), depth, remat="each"), stacked),
        "repeat, remat='sqrt'": (layers.repeat(block(), depth, remat="sqrt"), stacked),
        "serial (unrolled), no remat": (unrolled, unrolled),
        "serial, remat='sqrt'": (layers.serial(*unrolled.layers, remat="sqrt"), unrolled),
    }
    programs, args, temp = {}, {}, {}
    for name, (model, owner) in variants.items():
        params = owner.init(jax.random.key(0), x)
        loss = lambda p, model=model: gates.mean(gates.square(model.apply(p, x)))
        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        programs[name], args[name] = compiled, (params,)
        temp[name] = compiled.memory_analysis().temp_size_in_bytes
    seconds = medians(programs, args, repeats)
    print(f"## Rematerialisation: gradient of a {depth}-layer, width-{width} tanh MLP, batch "
          f"{batch}, float32\n")
    print("| variant | temp MiB | ms | memory saved | time cost |")
    print("|---|---|---|---|---|")
    for name in variants:
        base = "repeat (scan), no remat" if name.startswith("repeat") else \
            "serial (unrolled), no remat"
        print(f"| {name} | {temp[name] / 2**20:.1f} | {seconds[name] * 1e3:.1f} | "
              f"{temp[base] / temp[name]:.2f}x | {seconds[name] / seconds[base]:.2f}x |")
    saved = temp["repeat (scan), no remat"] / temp["repeat, remat='sqrt'"]
    cost = seconds["repeat, remat='sqrt'"] / seconds["repeat (scan), no remat"]
    verdict = "meets" if saved >= 4 and cost <= 1.5 else "MISSES"
    print(f"\nrepeat remat='sqrt': {saved:.2f}x less temporary memory at {cost:.2f}x the time "
          f"{verdict} the target (>= 4x at <= 1.5x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="batch of the gradient-cost MLP")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=64, help="depth of the remat MLP")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--remat-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=100,
                        help="timed runs per gradient-cost variant (a twentieth for remat)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"devices: {jax.devices()}; jax {jax.__version__}\n")
    gradient_cost(args.batch, args.hidden, args.repeats)
    remat(args.layers, args.width, args.remat_batch, max(3, args.repeats // 20))


if __name__ == "__main__":
    main()
