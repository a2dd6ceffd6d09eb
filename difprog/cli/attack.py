"""Loads a checkpoint written by difprog train or demo and attacks its first --count test images
at each --eps; writes robustness.png (accuracy against eps), adversarial.png (test images beside
their amplified perturbation and adversarial image, with both predictions) and attack.json into
--out, and prints the curve."""

from __future__ import annotations

import argparse

from difprog.cli import options, trained

__all__ = ["HELP", "arguments", "run"]

HELP = "adversarial examples and the robustness curve of a trained model"


def arguments(parser: options.Parser) -> None:
    """The options of difprog attack."""
    from difprog.attacks import ATTACKS, EPS, NORMS

    options.add_trained_model(parser, "attack", "robustness.png, adversarial.png and attack.json")
    parser.add_argument("--attack", choices=sorted(ATTACKS), default="pgd",
                        help="pgd (Madry et al.) or fgsm (one signed step of eps)")
    parser.add_argument("--eps", type=options.number(positive=False), nargs="+",
                        default=list(EPS), metavar="EPS",
                        help="the budgets, for inputs in [0, 1] (default: %(default)s)")
    parser.add_argument("--norm", choices=NORMS, default="inf", help="pgd's norm")
    parser.add_argument("--steps", type=options.integer(1, 10_000), default=None,
                        help="pgd's steps (default: 40)")
    parser.add_argument("--step-size", type=options.number(positive=True), default=None,
                        help="pgd's step (default: 2.5 eps / steps)")
    parser.add_argument("--random-start", action="store_true",
                        help="pgd starts from a random point of the ball (drawn with --seed)")
    options.add_seed(parser, "seed of the random start")
    parser.add_argument("--count", type=options.positive, default=1000,
                        help="test images on the curve (the first ones)")
    parser.add_argument("--show", type=options.integer(1, 64), default=8,
                        help="test images in adversarial.png")
    parser.add_argument("--picture-eps", type=options.number(positive=True), default=None,
                        help="the budget of adversarial.png (default: the smallest eps above 0)")


def run(args: argparse.Namespace) -> int:
    """difprog attack: writes the curve and the pictures, and prints the curve."""
    from difprog import attacks, rundir

    if args.attack == "fgsm":
        given = [flag for flag, value in (("--norm l2", args.norm != "inf"),
                                          ("--steps", args.steps is not None),
                                          ("--step-size", args.step_size is not None),
                                          ("--random-start", args.random_start)) if value]
        if given:
            raise options.UsageError(f"difprog attack: fgsm takes one L-inf step of eps; "
                                     f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} "
                                     f"pgd's (--attack pgd)")
    if args.picture_eps is None and not any(e > 0 for e in args.eps):
        raise options.UsageError("difprog attack: give an --eps above 0 (or --picture-eps) to "
                                 "picture the adversarial images")
    model, params, dataset = trained.restore(args)
    with rundir.own(args.out):
        written, table = attacks.write_attack(
            model, params, dataset, args.out, eps=args.eps, attack=args.attack, norm=args.norm,
            steps=args.steps or 40, step_size=args.step_size, random_start=args.random_start,
            seed=args.seed, count=args.count, show=args.show, picture_eps=args.picture_eps)
    print(table)
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0
