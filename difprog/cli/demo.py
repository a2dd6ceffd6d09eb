"""Trains the default CNN on scikit-learn's digits (or the images --data names) into --out,
visualises its classes, attributes its decisions, explains the lectures' sigmoid neuron, and
lists the files it wrote."""

from __future__ import annotations

import argparse
import pathlib

from difprog.cli import options, train

__all__ = ["HELP", "arguments", "run"]

# The demo's attribution settings: fewer path points and noisy copies than difprog attribute's
# defaults (64, 32), and no sanity checks, to stay within a few seconds; its figure says so.
_NOTE = ", demo settings (difprog attribute defaults: 64 steps, 32 samples)"
_ATTRIBUTION = {"steps": 32, "samples": 8, "note": _NOTE}

HELP = "train the default CNN on the digits (or --data) and show what it wrote"


def arguments(parser: options.Parser) -> None:
    """The options of difprog demo: train's options for the image models."""
    train.add_training_arguments(parser, "demo")


def run(args: argparse.Namespace) -> int:
    """difprog demo: trains, writes the pictures and explanations, and prints what it wrote."""
    result, dataset, neuron = train.train_images(
        args, then=lambda model, params, dataset: _write(args, model, params, dataset))
    if neuron is not None:
        print(f"Attribution of six test images of {dataset.name} by six methods in attribution/ "
              f"(32 steps, 8 samples); the defaults (64, 32) and the sanity checks: difprog "
              f"attribute --checkpoint {args.out} --out DIR")
        _print_written(args.out, neuron)
    train.print_accuracy(args, result, dataset)
    return 0


def _write(args: argparse.Namespace, model, params, dataset):
    """The demo's visualisations, attributions and explanations; the explained neuron."""
    from difprog import graph, viz

    viz.write_visualizations(model, params, dataset, args.out, progress=not args.no_progress)
    viz.write_attributions(model, params, dataset, args.out / "attribution", count=6,
                           sanity=False, **_ATTRIBUTION)
    return graph.write_explanations(model, params, dataset, args.out)


def _print_written(out: pathlib.Path, neuron) -> None:
    """The demo's explained neuron and the files it wrote, with their sizes."""
    print(f"\nThe sigmoid neuron of the lectures, explained node by node (explain/):\n{neuron}")
    print(f"\ndifprog demo wrote into {out}/:")
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            name = str(path.relative_to(out))
            print(f"  {name:<32} {path.stat().st_size:>10,} bytes")
