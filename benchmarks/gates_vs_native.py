"""Benchmark: an MLP built from difprog gates against the same MLP in plain jax.numpy.

Both variants are a 784-H-H-10 multilayer perceptron (relu hidden layers, softmax
cross-entropy loss with integer labels, float32) trained by plain SGD, one jitted step
`params - lr * grad(loss)(params)` with the params donated. The difprog variant is built from
the gates `matmul`, `add`, `relu` and `softmax_cross_entropy`, whose hand-written backward
rules run under jax.grad; the native variant uses jnp.dot, +, jax.nn.relu and a
logsumexp-based cross-entropy, differentiated by JAX's own autodiff.

Measured, in one process, from the same init (same key) on the same synthetic batch:
  * median wall time of one step (block_until_ready), the variants interleaved in rounds
    so that drifts of the machine hit both alike;
  * XLA's memory analysis of the compiled step: temporaries, arguments and outputs;
  * agreement: the max abs difference of the params after one step from the same start.

Target: difprog / native <= 1.05 for step time (and temporaries); hand-written rules should
cost nothing over JAX's autodiff once XLA has compiled them.

Usage:
    python benchmarks/gates_vs_native.py                      # 784-1024-1024-10, batch 256
    python benchmarks/gates_vs_native.py --steps 4 --batch 8 --hidden 32   # smoke run
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

LR = 0.01


def init_params(key, sizes):
    """He-initialised [(w, b), ...] for layer sizes like (784, 1024, 1024, 10)."""
    params = []
    for k, (m, n) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (m, n), jnp.float32) * jnp.sqrt(2.0 / m)
        params.append((w, jnp.zeros((n,), jnp.float32)))
    return params


def loss_difprog(params, x, y):
    """The MLP's mean cross-entropy, built from difprog gates."""
    for w, b in params[:-1]:
        x = gates.relu(gates.add(gates.matmul(x, w), b))
    w, b = params[-1]
    return gates.softmax_cross_entropy(gates.add(gates.matmul(x, w), b), y)


def loss_native(params, x, y):
    """The same MLP in plain jax.numpy, left to JAX's autodiff."""
    for w, b in params[:-1]:
        x = jax.nn.relu(jnp.dot(x, w) + b)
    w, b = params[-1]
    logits = jnp.dot(x, w) + b
    picked = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def make_step(loss):
    """One jitted SGD step for `loss`, donating the params; returns (new params, loss)."""
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), value
    return jax.jit(step, donate_argnums=0)


def fresh(params):
    """A copy of params, since a step donates (deletes) the buffers it gets."""
    return jax.tree.map(jnp.copy, params)


def cpu_name():
    """platform.processor(), or the model name from /proc/cpuinfo where that is empty (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    except OSError:
        names = []
    return platform.processor() or (names[0] if names else "?")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--round", type=int, default=10, help="steps per interleaved round")
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"devices: {jax.devices()}; jax {jax.__version__}")
    sizes = (784, args.hidden, args.hidden, 10)
    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    params0 = init_params(kp, sizes)
    x = jax.random.normal(kx, (args.batch, sizes[0]), jnp.float32)
    y = jax.random.randint(ky, (args.batch,), 0, sizes[-1], jnp.int32)
    print(f"MLP {'-'.join(map(str, sizes))}, batch {args.batch}, float32, SGD lr {LR}\n")

    steps = {"difprog": make_step(loss_difprog), "native": make_step(loss_native)}
    memory = {name: step.lower(params0, x, y).compile().memory_analysis()
              for name, step in steps.items()}

    # Agreement after one step from the same start.
    after, losses = {}, {}
    for name, step in steps.items():
        after[name], losses[name] = step(fresh(params0), x, y)
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(after["difprog"]), jax.tree.leaves(after["native"])))
    print(f"loss difprog {float(losses['difprog']):.7f}  native {float(losses['native']):.7f}  "
          f"max |params difprog - params native| after one step: {diff:.3g} "
          f"({'OK' if diff <= 1e-5 else 'MISMATCH'} at 1e-5)\n")

    # Interleaved timing: a round of each variant in turn (the order reversed every other round),
    # until each has args.steps steps, so that drifts of a shared machine hit all variants alike.
    state = dict(after)
    for name, step in steps.items():  # warm-up
        for _ in range(3):
            state[name], _ = step(state[name], x, y)
        jax.block_until_ready(state[name])
    times = {name: [] for name in steps}
    order = list(steps)
    while len(times["native"]) < args.steps:
        for name in order:
            step = steps[name]
            for _ in range(min(args.round, args.steps - len(times[name]))):
                start = time.perf_counter()
                state[name], value = step(state[name], x, y)
                jax.block_until_ready((state[name], value))
                times[name].append(time.perf_counter() - start)
        order.reverse()

    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    print(f"median over {args.steps} steps each, interleaved in rounds of {args.round}:\n")
    print("| variant | median ms/step | temp MiB | argument MiB | output MiB |")
    print("|---|---|---|---|---|")
    for name in steps:
        sizes_mib = [f"{getattr(memory[name], f) / 2**20:.2f}" for f in fields]
        print(f"| {name} | {ms[name]:.3f} | " + " | ".join(sizes_mib) + " |")
    ratios = [getattr(memory["difprog"], f) / max(getattr(memory["native"], f), 1) for f in fields]
    print(f"| difprog / native | {ms['difprog'] / ms['native']:.3f} | "
          + " | ".join(f"{r:.3f}" for r in ratios) + " |")
    ratio = ms["difprog"] / ms["native"]
    print(f"\nstep-time ratio difprog/native {ratio:.3f} "
          f"{'meets' if ratio <= 1.05 else 'MISSES'} the target <= 1.05")


if __name__ == "__main__":
    main()
