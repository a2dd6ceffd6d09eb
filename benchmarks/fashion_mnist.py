"""Benchmark: test accuracy and training time on Fashion-MNIST beside its public benchmark table.

Trains each model with `difprog.train.fit` (every gradient through the gates' hand-written
rules) on the 60,000 training images and measures the 10,000 test images after every epoch,
printing a markdown table: epochs, seconds of training (the first epoch includes compilation),
test accuracy, and the rows of the dataset's public table (its README) for comparison.

Usage:
    python -m benchmarks.fashion_mnist --models cnn --epochs 6
    python -m benchmarks.fashion_mnist --models resnet --epochs 30 --batch-size 128
    python -m benchmarks.fashion_mnist --tiny      # 2,000 training images, 1 epoch (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from difprog import data, models
from difprog.train import TrainConfig, fit

PUBLIC = [  # Fashion-MNIST's README: classifier, test accuracy
    ("best scikit-learn classifier (SVC)", 0.897),
    ("2 Conv + pooling (TensorFlow's documentation)", 0.916),
    ("2 Conv, < 100K parameters", 0.925),
    ("5 Conv + BN + pooling", 0.931),
    ("2 Conv + pooling + BN", 0.934),
    ("WRN40-4, 8.9 M parameters, augmentation", 0.967),
]


def run(name: str, fashion: data.Dataset, config: TrainConfig,
        runs: pathlib.Path | None = None) -> dict:
    """Trains model `name`; with `runs`, its checkpoints and metrics.json go to runs/name."""
    began = time.perf_counter()
    result = fit(models.build(name, fashion.num_classes), fashion, config, progress=False,
                 out=None if runs is None else runs / name, extra_metrics={"model": name})
    seconds = time.perf_counter() - began
    return {"model": name, "epochs": config.epochs, "batch_size": config.batch_size,
            "seconds": seconds, "test_accuracy": result.test_accuracy,
            "per_epoch": [e["test_accuracy"] for e in result.history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn"], choices=sorted(models.MODELS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="2,000 training images, 1 epoch")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write results.json here")
    parser.add_argument("--runs", type=pathlib.Path, default=None,
                        help="keep each model's checkpoints and metrics.json (written after "
                             "every epoch) in RUNS/<model>")
    args = parser.parse_args()
    fashion = data.fashion_mnist()
    if args.tiny:
        fashion = fashion._replace(x_train=fashion.x_train[:2000], y_train=fashion.y_train[:2000])
        args.epochs = 1
    rows = [run(name, fashion, TrainConfig(epochs=args.epochs, batch_size=args.batch_size),
                args.runs) for name in args.models]
    print("| model | epochs | training seconds | test accuracy |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| difprog {row['model']} | {row['epochs']} | {row['seconds']:.0f} | "
              f"{row['test_accuracy']:.4f} |")
    for name, accuracy in PUBLIC:
        print(f"| {name} (public table) | | | {accuracy:.3f} |")
    if args.out is not None:
        record(args.out / "results.json", rows)


def record(path: pathlib.Path, rows: list[dict]) -> None:
    """Writes `rows` into results.json, replacing the earlier rows of the same models only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(path.read_text()) if path.exists() else []
    ran = {row["model"] for row in rows}
    path.write_text(json.dumps([r for r in kept if r["model"] not in ran] + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
