"""Benchmark: conv2d's three CPU paths per shape, the table conv2d's CPU rule is derived from.

For each convolution shape (ResNet-18's at 64x64 batch 16 and 224x224 batch 8, the digits CNN's,
and grouped and depthwise ones) and each computation (forward, input gradient, weight gradient),
times XLA's convolution ("xla"), shifted matmuls ("shifted") and patches + one matmul
("patches") from difprog/gates/conv_paths.py, each jitted alone, float32, interleaved in one
process: every round runs every path of every shape once, and the table keeps each one's best
time over the rounds (the machine is shared; the best time is the least disturbed one). It marks
the rule's choice (`conv_paths.choose`) and checks it is never slower than XLA's convolution
beyond the noise (`--slack`).

Usage:
    python -m benchmarks.conv_paths                 # the full table (a few minutes on 2 cores)
    python -m benchmarks.conv_paths --rounds 1 --only digits   # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.gates_vs_native import cpu_name
from difprog.gates import conv
from difprog.gates import conv_paths as paths

# name, x shape (N, H, W, C), w shape (KH, KW, C / groups, O), stride, padding, groups
SHAPES = [
    ("r18-64 conv1", (16, 64, 64, 3), (7, 7, 3, 64), 2, 3, 1),
    ("r18-64 layer1", (16, 16, 16, 64), (3, 3, 64, 64), 1, 1, 1),
    ("r18-64 layer2.0 s2", (16, 16, 16, 64), (3, 3, 64, 128), 2, 1, 1),
    ("r18-64 layer2 down 1x1", (16, 16, 16, 64), (1, 1, 64, 128), 2, 0, 1),
    ("r18-64 layer2", (16, 8, 8, 128), (3, 3, 128, 128), 1, 1, 1),
    ("r18-64 layer3.0 s2", (16, 8, 8, 128), (3, 3, 128, 256), 2, 1, 1),
    ("r18-64 layer3 down 1x1", (16, 8, 8, 128), (1, 1, 128, 256), 2, 0, 1),
    ("r18-64 layer3", (16, 4, 4, 256), (3, 3, 256, 256), 1, 1, 1),
    ("r18-64 layer4.0 s2", (16, 4, 4, 256), (3, 3, 256, 512), 2, 1, 1),
    ("r18-64 layer4 down 1x1", (16, 4, 4, 256), (1, 1, 256, 512), 2, 0, 1),
    ("r18-64 layer4", (16, 2, 2, 512), (3, 3, 512, 512), 1, 1, 1),
    ("r18-224 conv1", (8, 224, 224, 3), (7, 7, 3, 64), 2, 3, 1),
    ("r18-224 layer1", (8, 56, 56, 64), (3, 3, 64, 64), 1, 1, 1),
    ("r18-224 layer2.0 s2", (8, 56, 56, 64), (3, 3, 64, 128), 2, 1, 1),
    ("r18-224 layer2 down 1x1", (8, 56, 56, 64), (1, 1, 64, 128), 2, 0, 1),
    ("r18-224 layer2", (8, 28, 28, 128), (3, 3, 128, 128), 1, 1, 1),
    ("r18-224 layer3.0 s2", (8, 28, 28, 128), (3, 3, 128, 256), 2, 1, 1),
    ("r18-224 layer3", (8, 14, 14, 256), (3, 3, 256, 256), 1, 1, 1),
    ("r18-224 layer4.0 s2", (8, 14, 14, 256), (3, 3, 256, 512), 2, 1, 1),
    ("r18-224 layer4 down 1x1", (8, 14, 14, 256), (1, 1, 256, 512), 2, 0, 1),
    ("r18-224 layer4", (8, 7, 7, 512), (3, 3, 512, 512), 1, 1, 1),
    ("digits conv1", (128, 28, 28, 1), (3, 3, 1, 32), 1, "SAME", 1),
    ("digits conv2", (128, 28, 28, 32), (3, 3, 32, 64), 1, "SAME", 1),
    ("3x3 on 2x2, batch 64", (64, 2, 2, 512), (3, 3, 512, 512), 1, 1, 1),
    ("3x3 on 3x3", (16, 3, 3, 512), (3, 3, 512, 512), 1, 1, 1),
    ("3x3 on 5x5", (16, 5, 5, 512), (3, 3, 512, 512), 1, 1, 1),
    ("3x3 on 4x4, 64 ch", (16, 4, 4, 64), (3, 3, 64, 64), 1, 1, 1),
    ("grouped 4, 4x4", (16, 4, 4, 256), (3, 3, 64, 256), 1, 1, 4),
    ("depthwise, 2x2", (16, 2, 2, 512), (3, 3, 1, 512), 1, 1, 512),
    ("depthwise, 16x16", (16, 16, 16, 64), (3, 3, 1, 64), 1, 1, 64),
]
COMPUTATIONS = ("forward", "input_grad", "weight_grad")


def _function(computation, x_shape, w_shape, geo, path):
    """A jitted computation of one path and its float32 arguments."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
    g = jnp.asarray(rng.standard_normal((x_shape[0], *geo.out, w_shape[3])), jnp.float32)
    if computation == "forward":
        return jax.jit(lambda x, w: paths.forward(x, w, geo, path)), (x, w)
    if computation == "input_grad":
        return jax.jit(lambda g, w: paths.input_grad(g, w, x_shape, geo, path)), (g, w)
    return jax.jit(lambda x, g: paths.weight_grad(x, g, w_shape, geo, path)), (x, g)


def _time(f, args):
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - start


def measure(shapes, rounds: int) -> dict:
    """{(shape name, computation, path): best ms} over `rounds` interleaved rounds."""
    cases = {}
    for name, x_shape, w_shape, stride, padding, groups in shapes:
        geo = conv.geometry(x_shape, w_shape, stride, padding, 1, groups)
        for computation in COMPUTATIONS:
            for path in paths.PATHS:
                f, args = _function(computation, x_shape, w_shape, geo, path)
                _time(f, args)  # compile
                cases[name, computation, path] = (f, args)
    best = {key: float("inf") for key in cases}
    for _ in range(rounds):
        for key, (f, args) in cases.items():
            best[key] = min(best[key], 1e3 * min(_time(f, args) for _ in range(2)))
    return best


def table(shapes, best: dict, slack: float) -> tuple[str, list[str]]:
    """The markdown table (ms per path, the rule's choice, its time / XLA's) and the shapes where
    the rule's choice is slower than XLA's convolution by more than `slack`."""
    lines = ["| shape | x | w | stride | computation | xla ms | shifted ms | patches ms | "
             "rule | rule / xla |", "|---|---|---|---|---|---|---|---|---|---|"]
    slower = []
    for name, x_shape, w_shape, stride, padding, groups in shapes:
        geo = conv.geometry(x_shape, w_shape, stride, padding, 1, groups)
        for computation in COMPUTATIONS:
            ms = {p: best[name, computation, p] for p in paths.PATHS}
            pick = paths.choose(computation, geo, w_shape)
            ratio = ms[pick] / ms["xla"]
            if ratio > 1 + slack:
                slower.append(f"{name} {computation}: {pick} {ms[pick]:.2f} ms, xla "
                              f"{ms['xla']:.2f} ms")
            cells = " | ".join(f"**{ms[p]:.2f}**" if p == min(ms, key=ms.get) else f"{ms[p]:.2f}"
                               for p in paths.PATHS)
            lines.append(f"| {name} | {list(x_shape)} | {list(w_shape)} | {stride} | "
                         f"{computation} | {cells} | {pick} | {ratio:.2f} |")
    return "\n".join(lines), slower


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="only shapes whose name contains this")
    parser.add_argument("--slack", type=float, default=0.1,
                        help="the noise allowed before the rule counts as slower than XLA")
    args = parser.parse_args(argv)
    shapes = [s for s in SHAPES if args.only in s[0]]
    load = os.getloadavg()
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"float32, best of {args.rounds} interleaved rounds (bold: the fastest path)\n")
    text, slower = table(shapes, measure(shapes, args.rounds), args.slack)
    print(text)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("rule slower than xla beyond the slack at: " + ("; ".join(slower) or "none"))


if __name__ == "__main__":
    main()
