"""Benchmark: per-device memory of params and Adam state with data parallelism (replicated) and
with `shard='params'` (FSDP-style, split over the devices), for 1, 2 and 4 devices, and in 1, 2
and 4 processes.

The first table runs in one process with 4 CPU devices. For each model, device count and
layout: the bytes of params and Adam state that the busiest device holds (its addressable
shards), and XLA's memory analysis of the jitted training step per device (arguments, which hold
the params, state and batch, and temporaries), plus the largest difference of the params after 3
Adam steps from the replicated run on as many devices.

The second table splits the same 4 devices over 1, 2 and 4 local processes joined by
jax.distributed (this script started again in each, with the JAX_* variables), params sharded
over all 4: the bytes of params and Adam state each process and its busiest device hold, and the
median time of a training step against the 1-process run (on one host the processes share its
cores and exchange the gathered params through gloo, so this measures the cost of the
collectives, not a speed-up).

Usage:
    python -m benchmarks.sharding                       # gpt 4x256 and an MLP 784-4096-4096-10
    python -m benchmarks.sharding --tiny                # small shapes, 1 and 2 processes: a smoke
                                                        # run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
import optax

from difprog import cluster, gates, layers, models
from difprog.placement import Placement

DEVICES = 4  # in all, however many processes share them
_WORKER = "DIFPROG_BENCH_SHARDING_WORKER"  # set in the processes of the second table


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


def _process_bytes(tree) -> int:
    """The bytes of `tree`'s arrays on this process's devices, all together."""
    return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree)
               for shard in leaf.addressable_shards)


def _train_step(model, optimizer):
    def step(params, state, x, y):
        loss = lambda p: gates.softmax_cross_entropy(model.apply(p, x), y)
        grads = jax.grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step)


def measure(model, x, y, devices: int | None, shard: str, steps: int = 3) -> dict:
    placement = Placement(devices, shard)
    optimizer = optax.adam(1e-3)
    params = placement.place(model.init(jax.random.key(0), x))
    state = placement.place(optimizer.init(params))
    stored, held = _device_bytes((params, state)), _process_bytes((params, state))
    jitted = _train_step(model, optimizer)
    xb, yb = placement.batch(x), placement.batch(y)
    memory = jitted.lower(params, state, xb, yb).compile().memory_analysis()
    seconds = []
    for _ in range(steps):
        began = time.perf_counter()
        params, state = jax.block_until_ready(jitted(params, state, xb, yb))
        seconds.append(time.perf_counter() - began)
    return {"stored": stored, "held": held, "arguments": memory.argument_size_in_bytes,
            "temporaries": memory.temp_size_in_bytes, "params": params,
            "kept": _device_bytes((params, state)),
            "step_ms": 1e3 * statistics.median(seconds[1:] or seconds)}


def _devices_table(tiny: bool) -> None:
    print("| model | devices | layout | params + Adam state on the busiest device | after 3 "
          "steps | XLA arguments | XLA temporaries | params vs replicated, same devices |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (model, x, y) in _models(tiny).items():
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


def _worker(tiny: bool) -> None:
    """One process of the second table: params sharded over every device of every process;
    process 0 prints one JSON line per model."""
    for name, (model, x, y) in _models(tiny).items():
        r = measure(model, x, y, None, "params", steps=3 if tiny else 8)
        if jax.process_index() == 0:
            print(json.dumps({"model": name, "held": r["held"], "stored": r["stored"],
                              "step_ms": r["step_ms"]}), flush=True)


def _run_processes(count: int, tiny: bool) -> list[dict]:
    """This script's worker in `count` local processes of DEVICES // count devices each."""
    port = _free_port()
    started = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sharding", *(["--tiny"] if tiny else [])],
        env={**os.environ, _WORKER: str(count), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
             "JAX_NUM_PROCESSES": str(count), "JAX_PROCESS_ID": str(index)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(count)]
    outputs = [process.communicate(timeout=1800) for process in started]
    for process, (_, err) in zip(started, outputs):
        if process.returncode != 0:
            raise SystemExit(f"a worker of {count} processes failed:\n{err[-2000:]}")
    return [json.loads(line) for line in outputs[0][0].splitlines() if line.startswith("{")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_table(tiny: bool) -> None:
    print(f"\n{DEVICES} CPU devices split over local processes (jax.distributed, gloo), params "
          f"sharded over all of them; MiB, ms\n")
    print("| model | processes | devices per process | params + Adam state per process | on "
          "the busiest device | step (median) | step vs 1 process |")
    print("|---|---|---|---|---|---|---|")
    runs = {count: _run_processes(count, tiny) for count in ((1, 2) if tiny else (1, 2, 4))}
    for row, result in enumerate(runs[1]):
        for count, results in runs.items():
            r = results[row]
            print(f"| {r['model']} | {count} | {DEVICES // count} | {r['held'] / 2**20:.2f} | "
                  f"{r['stored'] / 2**20:.2f} | {r['step_ms']:.1f} | "
                  f"{r['step_ms'] / result['step_ms']:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes, for a smoke run")
    args = parser.parse_args()
    if os.environ.get(_WORKER):
        count = int(os.environ[_WORKER])
        cluster.start_devices(DEVICES // count, distributed=count > 1)
        return _worker(args.tiny)
    jax.config.update("jax_num_cpu_devices", DEVICES)  # before anything starts JAX's CPU client
    print(f"per-device memory on {jax.device_count()} {jax.devices()[0].platform} devices, jax "
          f"{jax.__version__}; MiB\n")
    _devices_table(args.tiny)
    _processes_table(args.tiny)


if __name__ == "__main__":
    main()
