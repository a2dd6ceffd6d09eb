"""Benchmark: what watching a network's health costs (difprog.monitor, `difprog train --monitor`).

For each model, the training step of `difprog train` (jitted, Adam, the default batch) is timed
in a loop of steps as the driver runs it (each step's loss fetched): without the monitor, with
the monitor recording every 10 steps, and recording every step (the records fetched and
diagnosed on the host as `Monitor.add` does). Targets (issue 32): every 10 steps costs at most
10% of the step time, every step at most 40%.

Every timing is a median over rounds taken in alternating blocks, in one process.

Usage:
    python benchmarks/monitor.py                          # cnn, mlp, resnet on 28x28 images
    python benchmarks/monitor.py --models gpt --steps 10 --rounds 5    # gpt, 4 layers x 128
    python benchmarks/monitor.py --models mlp --steps 2 --rounds 1 --batch 4   # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gates_vs_native import cpu_name

from difprog import lm, models, monitor
from difprog.train import TrainConfig, make_optimizer, make_train_step

TARGETS = {10: 0.10, 1: 0.40}


def _image_steps(name: str, batch: int):
    """(plain step, monitored step, watch, params, opt_state, batch args) of an image model."""
    model, config = models.build(name, 10), TrainConfig(batch_size=batch)
    optimizer = make_optimizer(config, 100)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    params = model.init(jax.random.key(0), x[:1])
    watch = monitor.watch(model, x[:1])
    return (make_train_step(model, config, optimizer),
            make_train_step(model, config, optimizer, watch), watch, params,
            optimizer.init(params), (x, y))


def _gpt_steps(batch: int):
    """The same for gpt, 4 layers x 128 features x 4 heads, context 128, on random tokens."""
    config = lm.LMConfig(batch_size=batch, features=128)
    model = lm.build_model(config.model_settings(), 96)
    optimizer = lm.make_optimizer(config)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 96, (batch, config.context)).astype(np.int32)
    params = model.init(jax.random.key(0), x[:1])
    watch = monitor.watch(model, x[:1])
    plain, watched = lm.make_train_step(model, optimizer), lm.make_train_step(
        model, optimizer, watch)
    return plain, watched, watch, params, optimizer.init(params), (x, np.roll(x, -1, 1))


def _loop(step, watch, every, params, opt_state, batch, steps: int) -> float:
    """Seconds for `steps` steps as the driver runs them."""
    mon = monitor.Monitor(watch) if every else None
    key = jax.random.key(1)
    start = time.perf_counter()
    for t in range(steps):
        if every is None:
            out = step(params, opt_state, *batch, key)
        else:
            out = step(params, opt_state, *batch, key, t % every == 0)
            if t % every == 0:
                mon.add(t, out[-1])
        float(out[2])
    return time.perf_counter() - start


def measure(steps_of, steps: int, rounds: int) -> dict[str, float]:
    """Median ms per step: no monitor, every 10, every step."""
    plain, watched, watch, params, opt_state, batch = steps_of()
    variants = {"no monitor": (plain, None), "every 10 steps": (watched, 10),
                "every step": (watched, 1)}
    times = {name: [] for name in variants}
    for step, every in variants.values():  # compile
        _loop(step, watch, every, params, opt_state, batch, 1)
    for _ in range(rounds):
        for name, (step, every) in variants.items():
            times[name].append(_loop(step, watch, every, params, opt_state, batch, steps) / steps)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp", "resnet"],
                        choices=["cnn", "mlp", "resnet", "gpt"])
    parser.add_argument("--batch", type=int, default=32, help="examples (windows) per step")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed loop")
    parser.add_argument("--rounds", type=int, default=15, help="timed loops per variant")
    args = parser.parse_args()
    print(f"# Monitor overhead: {cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, JAX {jax.__version__}, batch {args.batch}\n")
    print("| model | no monitor ms/step | every 10 steps | every step | every 10 / none | "
          "every step / none |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for name in args.models:
        steps_of = (lambda: _gpt_steps(args.batch)) if name == "gpt" else (
            lambda name=name: _image_steps(name, args.batch))
        ms = measure(steps_of, args.steps, args.rounds)
        ten, one = ms["every 10 steps"] / ms["no monitor"], ms["every step"] / ms["no monitor"]
        print(f"| {name} | {ms['no monitor']:.2f} | {ms['every 10 steps']:.2f} | "
              f"{ms['every step']:.2f} | {ten:.3f} | {one:.3f} |")
        verdicts += [f"{name}: every 10 steps {ten - 1:+.1%} "
                     f"({'meets' if ten - 1 <= TARGETS[10] else 'MISSES'} <= +10%), every step "
                     f"{one - 1:+.1%} ({'meets' if one - 1 <= TARGETS[1] else 'MISSES'} <= +40%)"]
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
