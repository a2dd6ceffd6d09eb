"""Benchmark: the memory and time of an attention gradient, against sequence length.

Three variants of causal scaled dot-product attention, (batch, seq, heads, head_dim) float32,
each differentiated by jax.grad of sum(attention(q, k, v) * r) under jax.jit:

  * plain: jax.numpy (scores, a causal mask, jax.nn.softmax, the weighted sum of v), left to
    JAX's autodiff, which keeps the (seq x seq) probabilities for the backward pass;
  * jax.nn: jax.nn.dot_product_attention(is_causal=True), also JAX's autodiff;
  * difprog: gates.attention(causal=True), whose hand-written backward recomputes the
    probabilities block by block from q and k (FlashAttention's backward).

Measured, per sequence length, in one process on the same inputs:
  * XLA's temporary memory of the compiled gradient (memory_analysis().temp_size_in_bytes);
  * the median wall time of one gradient (block_until_ready), the variants interleaved in
    rounds (the order reversed every other round) so that drifts of the machine hit all alike;
  * agreement: the largest difference of each variant's gradients from plain's, relative to
    plain's largest entry.

Target (issue 17): at seq 2048, at least 8x less temporary memory than plain, in no more time.

Usage:
    python benchmarks/attention.py                     # seq 512 to 4096, batch 4, 4 heads, d 64
    python benchmarks/attention.py --seqs 16 40 --batch 1 --heads 2 --head-dim 8 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from difprog import gates

try:
    from benchmarks.gates_vs_native import cpu_name
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from gates_vs_native import cpu_name


def plain(q, k, v):
    """Causal attention in jax.numpy, the way one writes it by hand."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    causal = jnp.tril(jnp.ones(s.shape[-2:], bool))
    p = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


VARIANTS = {
    "plain": plain,
    "jax.nn": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True),
    "difprog": lambda q, k, v: gates.attention(q, k, v, causal=True),
}


def gradient(attention):
    """jax.jit(jax.grad) of sum(attention(q, k, v) * r) with respect to q, k and v."""
    return jax.jit(jax.grad(lambda q, k, v, r: jnp.sum(attention(q, k, v) * r), (0, 1, 2)))


def measure(seq, args):
    """({variant: temp MiB}, {variant: median ms}, {variant: relative difference from plain})."""
    shape = (args.batch, seq, args.heads, args.head_dim)
    inputs = [jax.random.normal(key, shape, jnp.float32)
              for key in jax.random.split(jax.random.key(seq), 4)]
    compiled = {name: gradient(f).lower(*inputs).compile() for name, f in VARIANTS.items()}
    memory = {name: c.memory_analysis().temp_size_in_bytes / 2**20
              for name, c in compiled.items()}
    grads = {name: jax.block_until_ready(c(*inputs)) for name, c in compiled.items()}  # warm-up
    scale = max(float(jnp.max(jnp.abs(g))) for g in grads["plain"])
    differences = {name: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(g, grads["plain"]))
                   / scale for name, g in grads.items()}
    del grads
    times = {name: [] for name in compiled}
    order = list(compiled)
    for _ in range(args.rounds):
        for name in order:
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](*inputs))
            times[name].append(time.perf_counter() - start)
        order.reverse()
    return memory, {n: 1e3 * statistics.median(t) for n, t in times.items()}, differences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7, help="timed gradients per variant")
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"devices: {jax.devices()}; jax {jax.__version__}")
    print(f"causal attention, batch {args.batch}, {args.heads} heads, head_dim {args.head_dim}, "
          f"float32; jax.jit(jax.grad(sum(attention(q, k, v) * r))); median of {args.rounds} "
          f"interleaved rounds\n")
    print("| seq | plain temp MiB | jax.nn temp MiB | difprog temp MiB | plain / difprog memory "
          "| plain ms | jax.nn ms | difprog ms | difprog / plain time | difprog differs by |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    verdict = None
    for seq in args.seqs:
        memory, ms, differences = measure(seq, args)
        saving, ratio = memory["plain"] / memory["difprog"], ms["difprog"] / ms["plain"]
        print(f"| {seq} | {memory['plain']:.1f} | {memory['jax.nn']:.1f} | "
              f"{memory['difprog']:.1f} | {saving:.1f}x | {ms['plain']:.1f} | "
              f"{ms['jax.nn']:.1f} | {ms['difprog']:.1f} | {ratio:.2f} | "
              f"{differences['difprog']:.1e} |", flush=True)
        if seq == 2048:
            verdict = saving >= 8 and ratio <= 1
        if differences["difprog"] > 1e-4:
            raise SystemExit(f"MISMATCH: difprog's gradient differs from plain's by "
                             f"{differences['difprog']:.1e} (relative) at seq {seq}")
    print("\ngradients agree with plain's (relative difference at most 1e-4)")
    if verdict is not None:
        print(f"target at seq 2048 (>= 8x less temporary memory, time <= plain): "
              f"{'met' if verdict else 'MISSED'}")


if __name__ == "__main__":
    main()
