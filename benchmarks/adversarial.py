"""Benchmark: robustness of a model trained on clean images and of the same model trained on PGD
adversarial examples (Madry et al.), with their training times.

Trains (or loads, --clean-checkpoint) the clean model and trains the adversarial one with
`difprog.train.fit` (`TrainConfig(adversarial="pgd")`), then measures on the first --count test
images: accuracy under L-inf PGD (--attack-steps steps of 2.5 eps / steps, no random start) and
FGSM at each --eps, and how many CS231n fooling images reach their target (the next class)
within 100 steps. Prints a markdown table; with --out, writes adversarial.json and
robustness.png (accuracy against eps, both models, both attacks) there.

Usage:
    python -m benchmarks.adversarial --data fashion-mnist --epochs 3 --out docs/attacks \
        --clean-checkpoint runs/fashion-cnn
    python -m benchmarks.adversarial --tiny        # the digits, 1 epoch: a smoke run
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from difprog import attacks, checkpoint, data, models, viz
from difprog.cli import trained
from difprog.train import TrainConfig, fit


def train(model_name, dataset, config, runs):
    """(model, params, seconds of training: None when loaded) for one config."""
    model = models.build(model_name, dataset.num_classes)
    began = time.perf_counter()
    result = fit(model, dataset, config, progress=False,
                 out=None if runs is None else runs / f"{model_name}-{config.adversarial}",
                 extra_metrics={"model": model_name, "dataset": dataset.name})
    return model, result.params, time.perf_counter() - began


def measure(model, params, dataset, eps, count, attack_steps) -> dict:
    """Accuracy under PGD and FGSM at each eps, and the fooling images' success rate."""
    x, y = dataset.x_test[:count], dataset.y_test[:count]
    pgd = attacks.robustness(model, params, x, y, eps, steps=attack_steps)
    fgsm = attacks.robustness(model, params, x, y, eps, attack="fgsm")
    targets = (np.asarray(y) + 1) % dataset.num_classes
    fooled = attacks.fooling_image(model, params, x, targets)
    reached = float((np.asarray(model.apply(params, fooled)).argmax(-1) == targets).mean())
    return {"pgd": pgd, "fgsm": fgsm, "fooling_reached": reached}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--model", default="cnn", choices=sorted(models.MODELS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-eps", type=float, default=0.1)
    parser.add_argument("--adversarial-steps", type=int, default=7)
    parser.add_argument("--eps", type=float, nargs="+", default=list(attacks.EPS))
    parser.add_argument("--attack-steps", type=int, default=40)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clean-checkpoint", type=pathlib.Path, default=None,
                        help="a difprog train run of the clean model, instead of training one "
                             "(its model and data set replace --model and --data)")
    parser.add_argument("--runs", type=pathlib.Path, default=None,
                        help="keep each trained model's run directory here")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="the digits, 1 epoch, 60 images")
    args = parser.parse_args()
    if args.tiny:
        args.data, args.epochs, args.count, args.attack_steps = "digits", 1, 60, 5
    return args


def trained_models(args) -> tuple[dict, object]:
    """{'clean': (model, params, seconds or None), 'pgd': ...} and the data set."""
    rows = {}
    if args.clean_checkpoint is not None:
        path = trained.checkpoint_file(args.clean_checkpoint)
        extra = checkpoint.load(path)[1].get("extra", {})
        args.model, args.data = extra.get("model", "cnn"), extra.get("dataset", "digits")
        model, params, dataset = trained.restore(argparse.Namespace(
            checkpoint=path, model=None, command="attack"))
        rows["clean"] = (model, params, None)
    else:
        dataset = data.load(args.data)
        clean = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
        rows["clean"] = train(args.model, dataset, clean, args.runs)
    adversarial = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, adversarial="pgd",
                              adversarial_eps=args.train_eps,
                              adversarial_steps=args.adversarial_steps)
    rows["pgd"] = train(args.model, dataset, adversarial, args.runs)
    return rows, dataset


def report(args, results: dict) -> None:
    """The markdown table, and with --out adversarial.json and robustness.png."""
    print(f"| training | seconds | {' | '.join(f'eps {e:g}' for e in args.eps)} | "
          f"fooling images reached |")
    print(f"|---|---:|{'---:|' * len(args.eps)}---:|")
    for name, result in results.items():
        shown = "clean" if name == "clean" else (
            f"PGD eps {args.train_eps:g}, {args.adversarial_steps} steps")
        seconds = "(loaded)" if result["seconds"] is None else f"{result['seconds']:.0f}"
        cells = " | ".join(f"{a:.3f} / {f:.3f}" for a, f in zip(result["pgd"], result["fgsm"]))
        print(f"| {shown} | {seconds} | {cells} | {result['fooling_reached']:.3f} |")
    print(f"(each cell: accuracy under PGD {args.attack_steps} steps / under FGSM, on "
          f"{args.count} test images of {args.data})")
    if args.out is None:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adversarial.json").write_text(json.dumps({
        "data": args.data, "model": args.model, "epochs": args.epochs,
        "train_eps": args.train_eps, "adversarial_steps": args.adversarial_steps,
        "attack_steps": args.attack_steps, "count": args.count, "eps": args.eps,
        "results": results}, indent=1) + "\n")
    curves = {f"{'clean' if n == 'clean' else 'PGD-trained'}, {attack.upper()}": r[attack]
              for n, r in results.items() for attack in ("pgd", "fgsm")}
    viz.save_curves(args.eps, curves, args.out / "robustness.png", ylim=(0, 1),
                    xlabel="eps (L-inf, inputs in [0, 1])",
                    ylabel=f"accuracy on {args.count} test images",
                    title=f"{args.model} on {args.data}: trained on clean images and on PGD "
                          f"examples (eps {args.train_eps:g})")


def main() -> None:
    args = arguments()
    rows, dataset = trained_models(args)
    results = {name: {"seconds": seconds, **measure(model, params, dataset, args.eps,
                                                    args.count, args.attack_steps)}
               for name, (model, params, seconds) in rows.items()}
    report(args, results)


if __name__ == "__main__":
    main()
