"""Benchmark: per-device memory of params and Adam state with data parallelism (replicated) and
with `shard='params'` (FSDP-style, split over the devices), for 1, 2 and 4 devices.

In one process with 4 CPU devices. For each model, device count and layout: the bytes of params
and Adam state that the busiest device holds (its addressable shards), and XLA's memory analysis
of the jitted training step per device (arguments, which hold the params, state and batch, and
temporaries), plus the largest difference of the params after 3 Adam steps from the replicated
run on as many devices.

Usage:
    python -m benchmarks.sharding                       # gpt 4x256 and an MLP 784-4096-4096-10
    python -m benchmarks.sharding --tiny                # small shapes, a smoke run
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_num_cpu_devices", 4)  # before anything else starts JAX's CPU client

import numpy as np  # noqa: E402
import optax  # noqa: E402

from difprog import gates, layers, models  # noqa: E402
from difprog.placement import Placement  # noqa: E402


def _models(tiny: bool) -> dict:
    """name -> (model, inputs, targets)."""
    rng = np.random.default_rng(0)
    width, (n_layers, features, context, vocab, batch) = ((64, (1, 32, 16, 16, 4)) if tiny
                                                          else (4096, (4, 256, 256, 128, 16)))
    ids = rng.integers(0, vocab, (batch, context + 1)).astype(np.int32)
    mlp = layers.serial(layers.Flatten(), layers.Dense(width), layers.Relu(),
                        layers.Dense(width), layers.Relu(), layers.Dense(10))
    return {
        f"gpt {n_layers} layers x {features} features, context {context}": (
            models.gpt(vocab, n_layers, 4, features, context), ids[:, :-1], ids[:, 1:]),
        f"MLP 784-{width}-{width}-10": (
            mlp, rng.standard_normal((64, 784)).astype(np.float32),
            rng.integers(0, 10, 64).astype(np.int32)),
    }


def _device_bytes(tree) -> int:
    """The bytes of `tree`'s arrays on its busiest device."""
    per_device: dict = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.nbytes
    return max(per_device.values())


def measure(model, x, y, devices: int, shard: str, steps: int = 3) -> dict:
    placement = Placement(devices, shard)
    optimizer = optax.adam(1e-3)
    params = placement.place(model.init(jax.random.key(0), x))
    state = placement.place(optimizer.init(params))
    stored = _device_bytes((params, state))

    def step(params, state, x, y):
        loss = lambda p: gates.softmax_cross_entropy(model.apply(p, x), y)
        grads = jax.grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step)
    xb, yb = placement.batch(x), placement.batch(y)
    memory = jitted.lower(params, state, xb, yb).compile().memory_analysis()
    for _ in range(steps):
        params, state = jitted(params, state, xb, yb)
    return {"stored": stored, "arguments": memory.argument_size_in_bytes,
            "temporaries": memory.temp_size_in_bytes, "params": params,
            "kept": _device_bytes((params, state))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes, for a smoke run")
    args = parser.parse_args()
    print(f"per-device memory on {jax.device_count()} {jax.devices()[0].platform} devices, jax "
          f"{jax.__version__}; MiB\n")
    print("| model | devices | layout | params + Adam state on the busiest device | after 3 "
          "steps | XLA arguments | XLA temporaries | params vs replicated, same devices |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (model, x, y) in _models(args.tiny).items():
        for devices in (1, 2, 4):
            base = None
            for shard in ("none", "params"):
                r = measure(model, x, y, devices, shard)
                base = r["params"] if base is None else base
                gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                          for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(r["params"])))
                layout = "replicated" if shard == "none" else "sharded"
                print(f"| {name} | {devices} | {layout} | {r['stored'] / 2**20:.2f} | "
                      f"{r['kept'] / 2**20:.2f} | {r['arguments'] / 2**20:.2f} | "
                      f"{r['temporaries'] / 2**20:.2f} | {gap:.1e} |", flush=True)


if __name__ == "__main__":
    main()
