"""Benchmark: does Lucid's diversity objective make several images of one channel differ?

For each channel, optimises 4 images of `channel(layer, c)` twice from the same starts (the
recipe of `difprog visualize --layer`: total variation and L1 0.05, noise starts, the standard
transforms): alone, and with `weight * diversity(layer)` added. Prints, per channel, the mean
pairwise cosine similarity of the 4 images' Gram matrices at the layer (what diversity lowers;
1 means the same texture statistics) and of their pixels, and the channel's mean activation
(what the images are for), then draws both sets side by side, one row per channel.

Usage:
    difprog train --model cnn --data fashion-mnist --epochs 6 --out runs/fashion-cnn
    python -m benchmarks.diversity --checkpoint runs/fashion-cnn --layer max_pool2d_0 \
        --channels 1 4 9 --out docs/viz/diversity.png
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from difprog import viz
from difprog.cli import trained

COPIES = 4


def similarities(images: np.ndarray, acts: np.ndarray) -> tuple[float, float]:
    """Mean pairwise cosine similarity of the Gram matrices of `acts` (N, H, W, C) and of the
    centred pixels of `images`."""

    def mean_cosine(rows: np.ndarray) -> float:
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        n = len(rows)
        return float(((rows @ rows.T).sum() - n) / (n * (n - 1)))

    flat = acts.reshape(len(acts), -1, acts.shape[-1])
    grams = np.einsum("npc,npd->ncd", flat, flat).reshape(len(acts), -1)
    pixels = images.reshape(len(images), -1)
    return mean_cosine(grams), mean_cosine(pixels - pixels.mean(1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True)
    parser.add_argument("--layer", default="max_pool2d_0")
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 4, 9])
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="the picture (PNG)")
    args = parser.parse_args()
    model, params, dataset = trained.restore(
        argparse.Namespace(checkpoint=args.checkpoint, model=None, command="visualize"))
    shape = (COPIES, *dataset.x_train.shape[1:])
    print("| channel | diversity weight | Gram similarity | pixel similarity | mean activation |")
    print("|---|---:|---:|---:|---:|")
    rows, labels = [], []
    for c in args.channels:
        for weight in (0.0, args.weight):
            objective = (viz.per_image(*[viz.channel(args.layer, c)] * COPIES)
                         - 0.05 * viz.total_variation() - 0.05 * viz.l1())
            if weight:
                objective = objective + weight * viz.diversity(args.layer)
            images = np.asarray(viz.visualize(
                model, params, objective, shape, steps=args.steps, seed=0, progress=False,
                parameterization=viz.fourier(scale=viz.CHANNEL_NOISE["fourier"])).images)
            acts = np.asarray(model.run(params, images, capture=[args.layer])
                              .captured[args.layer])
            gram, pixel = similarities(images, acts)
            print(f"| {args.layer}:{c} | {weight:g} | {gram:.3f} | {pixel:.3f} | "
                  f"{acts[..., c].mean():.3f} |", flush=True)
            rows.append(images)
            labels += [f"{c}, diversity {weight:g}" if i == 0 else "" for i in range(COPIES)]
    if args.out is not None:
        viz.save_grid(np.concatenate(rows), args.out, labels=labels, columns=2 * COPIES,
                      title=f"{COPIES} images per channel of {args.layer}, without and with "
                            f"{args.weight:g} * diversity")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
