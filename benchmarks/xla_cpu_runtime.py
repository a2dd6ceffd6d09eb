"""Benchmark: where XLA:CPU spends the CNN step that PyTorch eager runs faster.

Two measurements of XLA:CPU's runtime (not of difprog's rules), on the benchmark CNN's second
convolution (3x3, 32 -> 64 channels, SAME, 28x28, NHWC):

1. Threads. The same convolution three ways, each one jitted program: its output written out
   (as a training step must keep it for the backward pass), summed, and followed by relu and a
   2x2 max pool. Process CPU time over wall time says how many cores the program kept busy.
   With jax 0.10, XLA:CPU hands each convolution to YNNPACK, which runs the first case on one
   core and the other two on all of them. PyTorch's oneDNN convolution is the comparison row,
   where torch is installed.
2. Page faults. XLA:CPU allocates a step's temporaries as one fresh buffer per call; above
   glibc's mmap threshold (32 MiB at most) that buffer is a new mapping each call, and every
   page is faulted in again. The table gives minor page faults per training step (getrusage)
   next to XLA's temp size (memory_analysis) for the difprog and plain JAX CNN steps.
   Running with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (2 MiB pages for those mappings) shows
   what the faults cost.

Usage:
    python -m benchmarks.xla_cpu_runtime                       # batch 128, as benchmarks.run
    python -m benchmarks.xla_cpu_runtime --batch 4 --repeats 2   # smoke run
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import frameworks
from benchmarks.gates_vs_native import cpu_name

try:
    import resource
except ImportError:  # Unix only: on Windows the page-fault columns read n/a
    resource = None

SIDE, C_IN, C_OUT = 28, 32, 64


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


CONV_VARIANTS = {
    "conv, output written": _conv,
    "conv, summed": lambda x, w: _conv(x, w).sum(),
    "conv -> relu -> 2x2 max pool": lambda x, w: _pool(jnp.maximum(_conv(x, w), 0)),
}


def timed(run, block, repeats: int) -> tuple[float, float]:
    """Median wall seconds of run() and the process CPU seconds per wall second over all calls."""
    block(run())
    walls, cpu = [], time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        block(run())
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), (time.process_time() - cpu) / sum(walls)


def conv_rows(batch: int, repeats: int) -> list[dict]:
    """The three convolution programs (and PyTorch's conv2d where installed), timed."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, SIDE, SIDE, C_IN)).astype(np.float32)
    w = rng.standard_normal((3, 3, C_IN, C_OUT)).astype(np.float32)
    flops = 2 * batch * SIDE * SIDE * C_OUT * 9 * C_IN
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    rows = []
    for name, program in CONV_VARIANTS.items():
        wall, busy = timed(functools.partial(jax.jit(program), xj, wj), jax.block_until_ready,
                           repeats)
        rows.append({"program": f"XLA:CPU {name}", "ms": wall * 1e3, "cores_busy": busy,
                     "gflops": flops / wall / 1e9})
    if frameworks.available("PyTorch eager"):
        import torch

        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
        with torch.no_grad():
            wall, busy = timed(lambda: torch.nn.functional.conv2d(xt, wt, padding=1),
                               lambda out: out, repeats)
        rows.append({"program": "PyTorch conv2d (oneDNN), output written", "ms": wall * 1e3,
                     "cores_busy": busy, "gflops": flops / wall / 1e9})
    return rows


def minor_faults() -> int | None:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else None


def step_rows(batch: int, repeats: int) -> list[dict]:
    """The benchmark CNN's SGD step in difprog and plain JAX: time, page faults, XLA temp size."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, SIDE, SIDE, 1)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    spec = frameworks.Spec("cnn", hidden=0, image=SIDE)
    rows = []
    for name, build in (("difprog", frameworks.difprog), ("plain JAX", frameworks.plain_jax)):
        variant = build(spec, x, y)
        variant.block(variant.step())  # compiles; its page faults are not counted
        before = minor_faults()
        wall, busy = timed(variant.step, variant.block, repeats)
        faults = None if before is None else (minor_faults() - before) / (repeats + 1)
        rows.append({"program": f"{name} CNN step", "ms": wall * 1e3, "cores_busy": busy,
                     "faults": faults, "temp_mb": variant.temp_bytes() / 2**20})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"devices: {jax.devices()}; jax {jax.__version__}; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}\n")
    print(f"Convolution 3x3 {C_IN} -> {C_OUT}, {SIDE}x{SIDE}, batch {args.batch}, float32\n")
    print("| program | ms | cores busy (CPU / wall) | GFLOP/s |\n|---|---|---|---|")
    for row in conv_rows(args.batch, args.repeats):
        print(f"| {row['program']} | {row['ms']:.2f} | {row['cores_busy']:.2f} "
              f"| {row['gflops']:.1f} |")
    print(f"\nCNN training step, batch {args.batch}\n")
    print("| program | ms | cores busy (CPU / wall) | minor page faults per step "
          "| MiB faulted in per step | XLA temp MiB |\n|---|---|---|---|---|---|")
    for row in step_rows(args.batch, args.repeats):
        faults = "n/a" if row["faults"] is None else f"{row['faults']:.0f}"
        faulted = "n/a" if row["faults"] is None else f"{row['faults'] * 4096 / 2**20:.1f}"
        print(f"| {row['program']} | {row['ms']:.1f} | {row['cores_busy']:.2f} | {faults} "
              f"| {faulted} | {row['temp_mb']:.1f} |")


if __name__ == "__main__":
    main()
