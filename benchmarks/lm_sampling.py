"""Benchmark: how repetitive a trained language model's samples are, beside its validation text.

For each sampling setting, `--seeds` samples of `--length` characters after `--prompt` (seeds
0, 1, ...), each measured by `difprog.lm.repetition`: its longest run of one character and its
share of distinct 4-grams; the validation text's row measures as many stretches of the same
length, evenly spaced. A sampler degenerates where its runs are longer, or its distinct share
lower, than the text it learned from (Holtzman et al. 2020).

Usage:
    difprog train --model gpt --out runs/gpt
    python -m benchmarks.lm_sampling runs/gpt                      # the settings below
    python -m benchmarks.lm_sampling runs/gpt --settings t=0.5 t=0.8,p=0.95 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics

import jax

from difprog import checkpoint, data, lm

SETTINGS = ("t=0", "t=0.5", "t=0.8", "t=1", "t=0.8,p=0.95", "t=1,p=0.9", "t=0.8,k=10")
_NAMES = {"t": "temperature", "k": "top_k", "p": "top_p"}


def parse(setting: str) -> dict:
    """'t=0.8,p=0.95' as {'temperature': 0.8, 'top_p': 0.95} (k: top_k)."""
    parsed = {}
    for part in setting.split(","):
        name, _, value = part.partition("=")
        try:
            parsed[_NAMES[name]] = int(value) if name == "k" else float(value)
        except (KeyError, ValueError):
            raise SystemExit(f"lm_sampling: {setting!r}: each part is t=, k= or p= and a "
                             f"number") from None
    return parsed


def cpu() -> str:
    """The processor's model name (the figures depend on it), as Linux reports it."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def figures(texts: list[str]) -> dict:
    """The median and worst of each figure over `texts`, and each text's own."""
    measured = [lm.repetition(text) for text in texts]
    runs, distinct = [m.longest_run for m in measured], [m.distinct for m in measured]
    return {"longest_run_median": statistics.median(runs), "longest_run_worst": max(runs),
            "distinct_median": statistics.median(distinct), "distinct_worst": min(distinct),
            "runs": runs, "distinct": distinct}


def measure(path: str, prompt: str, length: int, seeds: int, settings: list[str]) -> dict:
    """The validation text's figures and each setting's, for the checkpoint at `path`."""
    model = lm.load_lm(path)
    recorded = checkpoint.metadata(checkpoint.latest(path) if pathlib.Path(path).is_dir()
                                   else path)
    corpus = data.text(model.codec.name, context=model.context, level=model.codec.level)
    reference = lm.stretches(corpus.decode(corpus.validation), length, seeds)
    rows = {"validation text": figures(reference)}
    ids = model.codec.encode(prompt)
    for setting in settings:
        samples = [model.codec.decode(lm.generate(
            model.model, model.params, ids, length, model.context, **parse(setting),
            key=jax.random.key(seed))) for seed in range(seeds)]
        rows[setting] = figures(samples)
    return {"checkpoint": path, "step": model.step, "config": recorded["config"],
            "prompt": prompt, "length": length, "seeds": seeds, "jax": jax.__version__,
            "cpu": cpu(), "cores": os.cpu_count(), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a run directory of difprog train --model gpt, or "
                                           "one of its checkpoints")
    parser.add_argument("--prompt", default="def ")
    parser.add_argument("--length", type=int, default=300, help="characters per sample")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS),
                        help="t=TEMPERATURE[,k=TOP_K][,p=TOP_P] each")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.checkpoint, args.prompt, args.length, args.seeds, args.settings)
    print(f"{args.seeds} samples of {args.length} characters after {args.prompt!r} from "
          f"{args.checkpoint} (step {result['step']}), jax {jax.__version__}, {result['cpu']}\n")
    print("| setting | longest run: median | worst | distinct 4-grams: median | worst |")
    print("|---|---|---|---|---|")
    for name, row in result["rows"].items():
        print(f"| {name} | {row['longest_run_median']:g} | {row['longest_run_worst']} | "
              f"{row['distinct_median']:.3f} | {row['distinct_worst']:.3f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
