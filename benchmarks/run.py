"""Benchmark: one SGD training step of an MLP, a CNN and a transformer language model in
difprog, plain JAX, Flax NNX, Equinox and PyTorch eager, in one process, on the same data and
shapes.

For each model and framework: median milliseconds per step (interleaved rounds, so machine drift
hits all alike), the ratio to plain JAX, GFLOP/s (XLA's FLOP count of the plain JAX step over the
step time) against the machine's measured matmul rate, the first-call (compile) time, the
forward-only time, and XLA's temporary memory of the compiled step where the framework compiles
one (memory_analysis().temp_size_in_bytes). Frameworks that are not installed are skipped.
Writes results.md, results.json and results.png into --out.

Usage:
    python -m benchmarks.run --out bench-out
    python -m benchmarks.run --out bench-out --models gpt     # the transformer row only
    python -m benchmarks.run --out /tmp/smoke --tiny          # tiny shapes, two repeats
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.frameworks import FRAMEWORKS, Spec, available
from benchmarks.gates_vs_native import cpu_name

BASELINE = "plain JAX"
MODELS = ("mlp", "cnn", "gpt")


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a jitted n x n float32 matmul: what this machine's XLA can reach."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    matmul = jax.jit(jnp.dot)
    matmul(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def measure(spec: Spec, batch: int, frameworks: list[str], repeats: int, rounds: int) -> dict:
    """Times every framework on one model; returns {framework: measurements}."""
    x, y = _data(spec, batch)
    variants, results = {}, {}
    for name in frameworks:
        variant = FRAMEWORKS[name](spec, x, y)
        start = time.perf_counter()
        variant.block(variant.step())
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        variant.block(variant.forward())
        results[name] = {"compile_seconds": compile_seconds,
                         "forward_compile_seconds": time.perf_counter() - start,
                         "loss": float(variant.forward()), "step": [], "forward": [],
                         "temp_bytes": variant.temp_bytes()}
        variants[name] = variant
    order = list(variants)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            variant = variants[name]
            for kind, run in (("step", variant.step), ("forward", variant.forward)):
                for _ in range(-(-repeats // rounds)):
                    start = time.perf_counter()
                    variant.block(run())
                    results[name][kind].append(time.perf_counter() - start)
    flops = variants[BASELINE].flops() if BASELINE in variants else None
    for result in results.values():
        result["ms_per_step"] = 1e3 * statistics.median(result.pop("step"))
        result["forward_ms"] = 1e3 * statistics.median(result.pop("forward"))
        result["flops_per_step"] = flops
        result["gflops"] = flops / result["ms_per_step"] / 1e6 if flops else None
    if BASELINE in results:
        base = results[BASELINE]
        for result in results.values():
            result["ratio_to_jax"] = result["ms_per_step"] / base["ms_per_step"]
            result["compile_ratio_to_jax"] = result["compile_seconds"] / base["compile_seconds"]
    return results


def _data(spec: Spec, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch every framework trains on: images or pixels and labels, or token ids and the
    next tokens."""
    rng = np.random.default_rng(0)
    if spec.model == "gpt":
        context, vocab = spec.gpt[3], spec.gpt[4]
        ids = rng.integers(0, vocab, (batch, context + 1)).astype(np.int32)
        return ids[:, :-1], ids[:, 1:]
    shape = (batch, 784) if spec.model == "mlp" else (batch, spec.image, spec.image, 1)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.integers(0, 10, batch).astype(np.int32))


def table(all_results: dict, rate: float) -> str:
    lines = [("| model | framework | ms/step | / plain JAX | GFLOP/s | % of matmul peak | "
              "compile s | compile / JAX | forward ms | step / forward | temp MiB |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, results in all_results.items():
        for name, r in results.items():
            gflops = f"{r['gflops']:.1f}" if r["gflops"] else "n/a"
            peak = f"{100 * r['gflops'] / rate:.0f}%" if r["gflops"] else "n/a"
            temp = f"{r['temp_bytes'] / 2**20:.1f}" if r.get("temp_bytes") else "n/a"
            lines.append(
                f"| {model} | {name} | {r['ms_per_step']:.3f} | {r.get('ratio_to_jax', 0):.3f} | "
                f"{gflops} | {peak} | {r['compile_seconds']:.2f} | "
                f"{r.get('compile_ratio_to_jax', 0):.2f} | {r['forward_ms']:.3f} | "
                f"{r['ms_per_step'] / r['forward_ms']:.2f} | {temp} |")
    return "\n".join(lines)


def plot(all_results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(all_results)
    names = list(dict.fromkeys(n for r in all_results.values() for n in r))
    figure, axes = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ratios = [all_results[m].get(name, {}).get("ratio_to_jax", np.nan) for m in models]
        bars = axes.bar(np.arange(len(models)) + i * width, ratios, width, label=name)
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    axes.set_xticks(np.arange(len(models)) + width * (len(names) - 1) / 2, models)
    axes.set_ylabel("time per SGD step / plain JAX")
    axes.set_title("One training step, same shapes and data (lower is faster)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--repeats", type=int, default=60, help="timed steps per framework")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--mlp-batch", type=int, default=256)
    parser.add_argument("--cnn-batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--image", type=int, default=28)
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS),
                        choices=list(FRAMEWORKS))
    parser.add_argument("--gpt-batch", type=int, default=16)
    parser.add_argument("--gpt-repeats", type=int, default=12,
                        help="timed steps per framework for the transformer")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, for a smoke run")
    args = parser.parse_args(argv)
    channels, gpt = (32, 64), (4, 256, 4, 256, 128)
    if args.tiny:
        args.hidden, args.image, args.mlp_batch, args.cnn_batch = 16, 8, 4, 4
        args.repeats, args.rounds, channels = 2, 2, (2, 4)
        args.gpt_batch, args.gpt_repeats, gpt = 2, 2, (1, 16, 2, 8, 11)
    frameworks = [f for f in args.frameworks if available(f)]
    skipped = sorted(set(args.frameworks) - set(frameworks))
    machine = (f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cores; device "
               f"{jax.devices()[0].device_kind}; jax {jax.__version__}")
    print(f"machine: {machine}" + (f"; skipped (not installed): {skipped}" if skipped else ""))
    rate = matmul_rate(256 if args.tiny else 2048)
    print(f"measured matmul rate: {rate:.1f} GFLOP/s (float32)")
    all_results = {}
    for model in args.models:
        batch = {"mlp": args.mlp_batch, "cnn": args.cnn_batch, "gpt": args.gpt_batch}[model]
        spec = Spec(model, args.hidden, args.image, channels, gpt)
        label = {"mlp": f"MLP 784-{args.hidden}-{args.hidden}-10, batch {batch}",
                 "cnn": f"CNN {args.image}x{args.image}x1 conv{channels[0]}-conv{channels[1]}-"
                        f"pool-dense10, batch {batch}",
                 "gpt": f"GPT {gpt[0]} layers, {gpt[1]} features, {gpt[2]} heads, context "
                        f"{gpt[3]}, vocab {gpt[4]}, batch {batch}"}[model]
        print(f"timing {label} ...", flush=True)
        repeats = args.gpt_repeats if model == "gpt" else args.repeats
        all_results[label] = measure(spec, batch, frameworks, repeats, args.rounds)
    text = table(all_results, rate)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    header = (f"Machine: {machine}. Matmul rate {rate:.1f} GFLOP/s. Median of {args.repeats} "
              f"steps per framework ({args.gpt_repeats} for the transformer) in {args.rounds} "
              f"interleaved rounds.\n\n")
    (args.out / "results.md").write_text(header + text + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"machine": machine, "matmul_gflops": rate, "skipped": skipped,
         "results": all_results}, indent=2) + "\n")
    plot(all_results, args.out / "results.png")
    print(f"\nwrote results.md, results.json and results.png into {args.out}/")


if __name__ == "__main__":
    main()
