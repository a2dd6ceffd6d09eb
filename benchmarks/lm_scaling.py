"""Benchmark: how `difprog train --model gpt` scales: parameters, milliseconds per training step
and tokens per second, for several model sizes, on the machine it runs on.

Each size is one jitted AdamW training step (difprog.lm.make_train_step, the step `difprog train
--model gpt` runs) on random windows of python-stdlib; the median of `--repeats` steps after
the compile is reported, with the compile time and the FLOPs XLA counts for the step.

Usage:
    python -m benchmarks.lm_scaling                          # the sizes of the README's table
    python -m benchmarks.lm_scaling --sizes 1x32x4x16 --batch 4 --repeats 2   # a smoke test
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax

from difprog import data, lm

# layers x features x heads x context
SIZES = ("4x128x4x128", "4x128x4x256", "4x256x4x128", "6x384x6x256")


def measure(size: str, batch: int, repeats: int, corpus_cache: dict) -> dict:
    """One size's parameters, step time, tokens per second, compile time and FLOPs."""
    layers, features, heads, context = (int(n) for n in size.split("x"))
    config = lm.LMConfig(layers=layers, features=features, heads=heads, context=context,
                         batch_size=batch)
    if context not in corpus_cache:
        corpus_cache[context] = data.text("python-stdlib", context=context)
    corpus = corpus_cache[context]
    model = lm.build_model(config.model_settings(), corpus.vocab_size)
    optimizer = lm.make_optimizer(config)
    step = lm.make_train_step(model, optimizer)
    x, y = data.text_batch(jax.random.key(0), corpus, batch)
    params = model.init(jax.random.key(0), x)
    state, key = optimizer.init(params), jax.random.key(1)
    began = time.perf_counter()
    compiled = step.lower(params, state, x, y, key).compile()
    compile_seconds = time.perf_counter() - began
    params, state, loss = compiled(params, state, x, y, key)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        params, state, loss = compiled(params, state, x, y, key)
        loss.block_until_ready()
        times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"size": size, "parameters": sum(a.size for a in jax.tree.leaves(params)),
            "ms_per_step": 1e3 * seconds, "tokens_per_second": batch * context / seconds,
            "compile_seconds": compile_seconds,
            "gflops_per_step": (cost or {}).get("flops", float("nan")) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES),
                        help="layers x features x heads x context, such as 4x128x4x128")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per size")
    args = parser.parse_args()
    print(f"gpt training steps (AdamW) on {jax.devices()[0].device_kind} "
          f"({platform.machine()}), jax {jax.__version__}, batch {args.batch}, median of "
          f"{args.repeats} steps\n")
    print("| layers x features x heads x context | parameters | ms per step | tokens/s | "
          "GFLOP per step | GFLOP/s | compile s |")
    print("|---|---|---|---|---|---|---|")
    cache: dict = {}
    for size in args.sizes:
        r = measure(size, args.batch, args.repeats, cache)
        print(f"| {size} | {r['parameters']:,} | {r['ms_per_step']:.0f} | "
              f"{r['tokens_per_second']:,.0f} | {r['gflops_per_step']:.1f} | "
              f"{r['gflops_per_step'] / r['ms_per_step'] * 1e3:.0f} | "
              f"{r['compile_seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
