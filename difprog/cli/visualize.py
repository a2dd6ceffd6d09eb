"""Loads a checkpoint written by difprog train or demo, optimises input images for each class (or
each channel of --layer), and writes a labelled PNG grid, visualizations.npz (images, targets) and
saliency.png into --out."""

from __future__ import annotations

import argparse

from difprog.cli import options, trained

__all__ = ["HELP", "arguments", "run"]

HELP = "optimise inputs that maximise classes or channels of a trained model"


def arguments(parser: options.Parser) -> None:
    """The options of difprog visualize."""
    options.add_trained_model(parser, "visualize", "the images and visualizations.npz")
    parser.add_argument("--classes", type=options.integer(0), nargs="+", default=None,
                        help="classes to visualise (default: all)")
    parser.add_argument("--layer", default=None,
                        help="a layer path, such as conv2d_1, to visualise channels of")
    parser.add_argument("--channels", type=options.integer(0), nargs="+", default=None,
                        help="channels of --layer (default: the first 8)")
    parser.add_argument("--steps", type=options.positive, default=512,
                        help="optimisation steps")
    parser.add_argument("--param", choices=["fourier", "pixel"], default="fourier",
                        help="image parameterisation")
    options.add_seed(parser, "seed of the optimisation")
    parser.add_argument("--no-regularizers", action="store_true",
                        help="no total-variation and L1 penalties")
    parser.add_argument("--no-transforms", action="store_true",
                        help="no random jitter, padded crops and zooms")
    options.add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    """difprog visualize: writes the grid, visualizations.npz and saliency.png into --out."""
    from difprog import rundir, viz

    if args.layer is not None and not args.layer.strip() or args.channels and not args.layer:
        raise options.UsageError("difprog visualize: --channels needs --layer (a layer path "
                                 "such as conv2d_1), and --layer a name")
    if args.layer and args.classes:
        raise options.UsageError("difprog visualize: --classes and --layer choose what to "
                                 "visualise two ways; give one")
    model, params, dataset = trained.restore(args, check=lambda dataset: _check_classes(
        args.classes, dataset.num_classes))
    with rundir.own(args.out):
        written = viz.write_visualizations(
            model, params, dataset, args.out, classes=args.classes, layer=args.layer,
            channels=args.channels, steps=args.steps, param=args.param, seed=args.seed,
            regularize=not args.no_regularizers, transforms=not args.no_transforms,
            progress=not args.no_progress)
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0


def _check_classes(classes, count: int) -> None:
    """--classes within the model's classes."""
    from difprog.errors import ArgumentError

    wrong = [c for c in classes or [] if c >= count]
    if wrong:
        raise ArgumentError(f"--classes {' '.join(map(str, wrong))}: the model has "
                            f"{count} classes (0 to {count - 1})")
