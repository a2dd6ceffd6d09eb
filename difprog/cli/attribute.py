"""Loads a checkpoint written by difprog train or demo and explains each of the first --count test
images' label score by every method; writes attributions.png (one row per image, one column per
method), attributions.npz, and the sanity checks (completeness of integrated gradients, cascading
model randomisation, faithfulness: deletion, insertion and infidelity) as sanity.json,
sanity.txt and faithfulness.png into --out, and prints their tables."""

from __future__ import annotations

import argparse

from difprog.cli import options, trained

__all__ = ["HELP", "arguments", "run"]

HELP = "attribution maps of test images, with their sanity checks"


def arguments(parser: options.Parser) -> None:
    """The options of difprog attribute."""
    from difprog.viz import METHODS

    options.add_trained_model(parser, "attribute",
                              "attributions.png, attributions.npz and sanity.json")
    parser.add_argument("--methods", choices=METHODS, nargs="+", default=None,
                        metavar="METHOD", help=f"methods, from {', '.join(METHODS)} "
                                               f"(default: all the model allows: grad_cam "
                                               f"needs a layer of feature maps)")
    parser.add_argument("--count", type=options.integer(1, 64), default=8,
                        help="test images explained (the first ones)")
    options.add_seed(parser, "seed of SmoothGrad's noise and of the re-initialised weights")
    parser.add_argument("--steps", type=options.integer(1, 4096), default=64,
                        help="path points of integrated gradients")
    parser.add_argument("--samples", type=options.integer(1, 4096), default=32,
                        help="noisy copies per image of SmoothGrad")
    parser.add_argument("--noise", type=options.number(positive=False), default=0.15,
                        help="SmoothGrad's noise std, a fraction of each image's value range")
    parser.add_argument("--layer", default=None,
                        help="Grad-CAM's layer path, such as conv2d_1 (default: the last "
                             "layer with feature maps)")
    parser.add_argument("--window", type=options.positive, default=2,
                        help="occlusion's window, in pixels (square)")
    parser.add_argument("--stride", type=options.positive, default=1,
                        help="occlusion's stride, in pixels")
    parser.add_argument("--no-sanity", action="store_true",
                        help="skip the sanity checks (sanity.json, sanity.txt and "
                             "faithfulness.png)")


def run(args: argparse.Namespace) -> int:
    """difprog attribute: writes the maps (and the sanity checks) and prints the checks."""
    from difprog import rundir, viz

    if args.layer is not None and not args.layer.strip():
        raise options.UsageError("difprog attribute: --layer needs a layer path, such as "
                                 "conv2d_1 (leave it out for the last layer with feature maps)")
    model, params, dataset = trained.restore(args)
    with rundir.own(args.out):
        written, tables = viz.write_attributions(
            model, params, dataset, args.out, methods=args.methods, count=args.count,
            seed=args.seed, steps=args.steps, samples=args.samples, noise=args.noise,
            layer=args.layer, window=args.window, stride=args.stride,
            sanity=not args.no_sanity)
    if tables:
        print(tables)
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0
