"""Benchmark: are a trained classifier's class visualisations recognisable to other classifiers?

Runs `difprog visualize`'s recipe (`viz.write_visualizations`: one image per class, its
default regularisers, parameterisation and transforms) on a checkpoint of `difprog train` for
several seeds, and asks two classifiers trained independently of the visualised model which
class each image shows: a logistic regression on the raw pixels of the first 20,000 training
images (scikit-learn) and difprog's `mlp` trained on all of them (3 epochs, seed 1; another
architecture than the visualised model's unless that is an mlp too). Prints a table: per seed,
how many of the classes each judge recognises, and the visualised model's own probability.

Usage:
    difprog train --model cnn --data fashion-mnist --epochs 6 --out runs/fashion-cnn
    python -m benchmarks.class_visualization --checkpoint runs/fashion-cnn --seeds 0 1 2 3 4 \
        --out benchmarks/results-fashion-mnist      # writes class_visualization.json there
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import jax
import numpy as np

from difprog import models, viz
from difprog.cli import trained
from difprog.train import TrainConfig, fit


def judges(dataset, train_images: int = 20000) -> dict:
    """name -> predict(images) of the two independent classifiers, and their test accuracy."""
    from sklearn.linear_model import LogisticRegression

    flat = lambda x: np.asarray(x).reshape(len(x), -1)
    began = time.perf_counter()
    logistic = LogisticRegression(max_iter=300, C=0.1).fit(flat(dataset.x_train[:train_images]),
                                                            dataset.y_train[:train_images])
    mlp = models.mlp(dataset.num_classes)
    result = fit(mlp, dataset, TrainConfig(epochs=3, batch_size=128, seed=1), progress=False)
    print(f"judges trained in {time.perf_counter() - began:.0f} s: logistic regression "
          f"{logistic.score(flat(dataset.x_test), dataset.y_test):.4f}, mlp "
          f"{result.test_accuracy:.4f} test accuracy")
    return {"logistic regression": lambda x: logistic.predict(flat(x)),
            "mlp": lambda x: np.asarray(mlp.apply(result.params, x)).argmax(-1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True,
                        help="a difprog train output directory or checkpoint file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="write class_visualization.json into this directory")
    args = parser.parse_args()
    model, params, dataset = trained.restore(
        argparse.Namespace(checkpoint=args.checkpoint, model=None, command="visualize"))
    judged = judges(dataset)
    classes = np.arange(dataset.num_classes)
    rows = []
    print(f"| seed | {' | '.join(judged)} | the visualised model's lowest probability |")
    print(f"|---:|{'---:|' * len(judged)}---:|")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as scratch:
            viz.write_visualizations(model, params, dataset, scratch, steps=args.steps,
                                     seed=seed, progress=False)
            images = np.load(pathlib.Path(scratch) / "visualizations.npz")["images"]
        own = np.asarray(jax.nn.softmax(model.apply(params, images)))[classes, classes]
        row = {"seed": seed, "own_lowest": float(own.min()),
               **{name: int((predict(images) == classes).sum()) for name, predict in
                  judged.items()}}
        rows.append(row)
        print(f"| {seed} | {' | '.join(f'{row[n]}/{len(classes)}' for n in judged)} | "
              f"{row['own_lowest']:.2f} |", flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "class_visualization.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
