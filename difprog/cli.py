"""The `difprog` command line."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax

from difprog import gates
from difprog.check import Tolerances, check_gate
from difprog.gates._points import check_points

_COLUMNS = ("reverse", "forward", "finite difference", "second order")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="difprog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="prove every gate's backward and tangent rules in float64",
        description="Checks each gate's hand-written rules against JAX's autodiff of its "
                    "forward and against central finite differences, at several shapes, and "
                    "prints the worst relative error of each check.")
    check.add_argument("names", nargs="*", metavar="GATE",
                       help=f"gates to check (default: all {len(gates.ALL)})")
    check.add_argument("--seed", type=int, default=0, help="seed of the check points")
    train = commands.add_parser(
        "train", help="train a model on real data, with checkpoints and metrics.json",
        description="Trains a model with jit-compiled steps through difprog gates, writing a "
                    "checkpoint after every epoch and metrics.json into --out; resumes from the "
                    "newest checkpoint there.")
    _training_arguments(train, out=None)
    demo = commands.add_parser(
        "demo", help="train the default CNN on the digits and show what it wrote",
        description="Trains the default CNN on scikit-learn's digits into --out "
                    "(./difprog-demo) and lists the files it wrote.")
    _training_arguments(demo, out="difprog-demo")
    bench = commands.add_parser("bench", help="benchmarks that write tables and plots")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    modes = benchmarks.add_parser(
        "modes", help="forward against reverse mode over f: R^n -> R^m",
        description="Times the full Jacobian by jacfwd and by jacrev for a tanh MLP built from "
                    "gates, for every (n, m), and writes modes.md, modes.json and modes.png.")
    modes.add_argument("--out", type=pathlib.Path, required=True)
    modes.add_argument("--sizes", type=int, nargs="+", default=None,
                       help="values of n and m (default: 1 4 16 64 256 1024)")
    modes.add_argument("--width", type=int, default=64, help="hidden width of the MLP")
    modes.add_argument("--repeats", type=int, default=7, help="timed runs per point")
    visualize = commands.add_parser(
        "visualize", help="optimise inputs that maximise classes or channels of a trained model",
        description="Loads a checkpoint written by difprog train or demo, optimises input images "
                    "for each class (or each channel of --layer), and writes a labelled PNG "
                    "grid, visualizations.npz (images, targets) and saliency.png into --out.")
    visualize.add_argument("--checkpoint", type=pathlib.Path, required=True)
    visualize.add_argument("--out", type=pathlib.Path, required=True)
    visualize.add_argument("--model", default=None,
                           help="the checkpoint's model (default: the one recorded in it)")
    visualize.add_argument("--classes", type=int, nargs="+", default=None,
                           help="classes to visualise (default: all)")
    visualize.add_argument("--layer", default=None,
                           help="a layer path, such as conv2d_1, to visualise channels of")
    visualize.add_argument("--channels", type=int, nargs="+", default=None,
                           help="channels of --layer (default: the first 8)")
    visualize.add_argument("--steps", type=int, default=512)
    visualize.add_argument("--param", choices=["fourier", "pixel"], default="fourier")
    visualize.add_argument("--seed", type=int, default=0)
    visualize.add_argument("--no-regularizers", action="store_true",
                           help="no total-variation and L1 penalties")
    visualize.add_argument("--no-transforms", action="store_true",
                           help="no random jitter, padded crops and zooms")
    visualize.add_argument("--no-progress", action="store_true")
    explain = commands.add_parser(
        "explain", help="a function's graph with values and gradients at every node",
        description="Explains an expression in variables x, y, z... built from arithmetic and "
                    "difprog gates (exp, log, sqrt, sigmoid, tanh, relu, max, min, sum...): "
                    "prints the forward and backward pass node by node and, with --out, writes "
                    "graph.svg, graph.png, table.txt and flat_code.py.")
    explain.add_argument("expression", help="such as '(x + y) * z' or '1 / (y + exp(-x))'")
    explain.add_argument("--at", required=True,
                         help="the point, such as x=-2,y=5,z=-4 (lists for vectors: w=[1,2])")
    explain.add_argument("--out", type=pathlib.Path, default=None,
                         help="directory for the graph, table and flat code")
    args = parser.parse_args(argv)
    if args.command == "explain":
        return _explain(args)
    if args.command == "visualize":
        return _visualize(args)
    if args.command == "check":
        return _check(args.names, args.seed)
    if args.command == "bench":
        return _bench_modes(args)
    return _train(args, demo=args.command == "demo")


def _bench_modes(args: argparse.Namespace) -> int:
    import json

    from difprog import modes

    sizes = tuple(args.sizes) if args.sizes else modes.SIZES
    print(f"{'n':>5} {'m':>5} {'jacfwd ms':>10} {'jacrev ms':>10} {'fwd/rev':>8}  cheaper")
    show = lambda r: print(f"{r['n']:>5} {r['m']:>5} {r['forward_seconds'] * 1e3:>10.3f} "
                           f"{r['reverse_seconds'] * 1e3:>10.3f} {r['ratio']:>8.2f}  "
                           f"{r['cheaper']}", flush=True)
    rows = modes.sweep(sizes, args.width, args.repeats, on_row=show)
    args.out.mkdir(parents=True, exist_ok=True)
    header = (f"Full Jacobian of a tanh MLP (width {args.width}) built from gates, f: R^n -> "
              f"R^m; median of at least {args.repeats} runs (50 ms or more per mode) on "
              f"{jax.devices()[0].device_kind}, jax "
              f"{jax.__version__}.\n\n")
    (args.out / "modes.md").write_text(header + modes.sweep_table(rows) + "\n")
    (args.out / "modes.json").write_text(json.dumps(rows, indent=2) + "\n")
    modes.plot_sweep(rows, args.out / "modes.png")
    wrong = [r for r in rows if r["theory"] != "either" and r["cheaper"] != r["theory"]]
    print(f"\nwrote modes.md, modes.json and modes.png into {args.out}/; the measured cheaper "
          f"mode agrees with n vs m at {len(rows) - len(wrong) - sum(r['theory'] == 'either' for r in rows)} "
          f"of {len(rows) - sum(r['theory'] == 'either' for r in rows)} points with n != m")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from difprog import checkpoint, data, models
    from difprog.errors import DifprogError
    from difprog.train import restore

    try:
        _, meta = checkpoint.load(args.checkpoint)
        name = args.model or meta.get("extra", {}).get("model", "cnn")
        dataset = data.load(meta.get("extra", {}).get("dataset", "digits"))
        model = models.build(name, dataset.num_classes)
        params, _ = restore(args.checkpoint, model, dataset.x_train[:1])
        written = _write_visualizations(
            model, params, dataset, args.out, classes=args.classes, layer=args.layer,
            channels=args.channels, steps=args.steps, param=args.param, seed=args.seed,
            regularize=not args.no_regularizers, transforms=not args.no_transforms,
            progress=not args.no_progress)
    except DifprogError as error:
        print(f"difprog visualize: {error}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0


def _write_visualizations(model, params, dataset, out: pathlib.Path, *, classes=None,
                          layer=None, channels=None, steps=512, param="fourier", seed=0,
                          regularize=True, transforms=True, progress=True) -> list[pathlib.Path]:
    """Class (or channel) visualisations as PNG and npz, and saliency maps of test images."""
    import numpy as np

    from difprog import viz
    from difprog._files import write_npz

    if layer is None:
        targets = list(range(dataset.num_classes)) if classes is None else list(classes)
        objective, labels, stem = viz.class_logit(targets), [f"class {c}" for c in targets], \
            "classes"
    else:
        targets = list(range(8)) if channels is None else list(channels)
        objective = viz.per_image(*(viz.channel(layer, c) for c in targets))
        labels, stem = [f"{layer}:{c}" for c in targets], f"channels_{layer.replace('/', '_')}"
    if regularize:
        objective = objective - 0.05 * viz.total_variation() - 0.05 * viz.l1()
    shape = (len(targets), *dataset.x_train.shape[1:])
    result = viz.visualize(model, params, objective, shape, steps=steps, seed=seed,
                           parameterization=viz.fourier() if param == "fourier" else viz.pixel(),
                           transforms=None if transforms else False, progress=progress)
    probabilities = np.asarray(jax.nn.softmax(model.apply(params, result.images)))
    if layer is None:
        labels = [f"{label}\np={probabilities[i, c]:.2f}" for i, (label, c)
                  in enumerate(zip(labels, targets))]
    out.mkdir(parents=True, exist_ok=True)
    grid = viz.save_grid(result.images, out / f"{stem}.png", labels=labels,
                         title=f"{result.objective[:90]}, {steps} steps, seed {seed}")
    npz = write_npz(out / "visualizations.npz", images=result.images,
                    targets=np.asarray(targets), history=result.history)
    examples = dataset.x_test[:10]
    maps = viz.saliency(model, params, examples, dataset.y_test[:10])
    saliency = viz.save_saliency(examples, maps, out / "saliency.png",
                                 labels=[f"label {y}" for y in dataset.y_test[:10]])
    return [grid, npz, saliency]


def _training_arguments(parser: argparse.ArgumentParser, out: str | None) -> None:
    from difprog.models import MODELS
    from difprog.train import LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig

    defaults = TrainConfig()
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--dataset", choices=["digits"], default="digits")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate,
                        help="peak learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    parser.add_argument("--loss", choices=sorted(LOSSES), default=defaults.loss)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="L2 penalty on the weights")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--devices", type=int, default=None,
                        help="devices to shard each batch over (default: all local devices; "
                             "on a CPU, N > 1 makes N CPU devices)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first, to train on the devices "
                             "of several hosts (run the same command on every host)")
    parser.add_argument("--out", type=pathlib.Path, default=out, required=out is None,
                        help="directory for checkpoints and metrics.json"
                             + (f" (default: ./{out})" if out else ""))
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _train(args: argparse.Namespace, demo: bool) -> int:
    if args.distributed:
        jax.distributed.initialize()
    elif args.devices and args.devices > 1:
        jax.config.update("jax_num_cpu_devices", args.devices)
    from difprog import data, models
    from difprog.errors import DifprogError
    from difprog.train import TrainConfig, fit

    try:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             optimizer=args.optimizer, learning_rate=args.lr,
                             schedule=args.schedule, loss=args.loss,
                             weight_decay=args.weight_decay, seed=args.seed, devices=args.devices)
        dataset = data.load(args.dataset)
        model = models.build(args.model, dataset.num_classes)
        result = fit(model, dataset, config, out=args.out, progress=not args.no_progress,
                     extra_metrics={"model": args.model, "dataset": args.dataset})
    except DifprogError as error:
        print(f"difprog {args.command}: {error}", file=sys.stderr)
        return 1
    if demo:
        _write_visualizations(model, result.params, dataset, args.out, progress=not args.no_progress)
        neuron = _write_explanations(model, result.params, dataset, args.out)
    right = round(result.test_accuracy * len(dataset.y_test))
    epochs = result.history[-1]["epoch"] if result.history else 0
    if demo:
        print(f"\nThe sigmoid neuron of the lectures, explained node by node (explain/):\n"
              f"{neuron}")
        print(f"\ndifprog demo wrote into {args.out}/:")
        for path in sorted(args.out.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                name = str(path.relative_to(args.out))
                print(f"  {name:<32} {path.stat().st_size:>10,} bytes")
    print(f"test accuracy {result.test_accuracy:.2%} ({right}/{len(dataset.y_test)}) on "
          f"{args.dataset} with the {args.model} model after {epochs} epochs")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from difprog.errors import DifprogError
    from difprog.graph import explain
    from difprog.graph._expression import expression_function, parse_point

    try:
        with jax.enable_x64(True):
            point = parse_point(args.at)
            f = expression_function(args.expression, list(point))
            explanation = explain(f, *point.values())
            print(explanation)
            written = explanation.save(args.out) if args.out else []
    except (DifprogError, OSError) as error:
        print(f"difprog explain: {error}", file=sys.stderr)
        return 1
    if written:
        print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0 if explanation.agrees else 1


def _write_explanations(model, params, dataset, out: pathlib.Path):
    """The sigmoid neuron of the lectures, and the CNN's loss summarised per layer."""
    import jax.numpy as jnp

    from difprog.graph import explain

    with jax.enable_x64(True):
        neuron = explain(lambda w0, x0, w1, x1, w2: 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2))),
                         2.0, -1.0, -3.0, -2.0, -3.0)
        neuron.save(out / "explain")
    x, y = dataset.x_test[:4], dataset.y_test[:4]
    cnn = explain(lambda params, x: gates.softmax_cross_entropy(model.apply(params, x), y),
                  params, x, group="layer")
    cnn.render(out / "explain" / "cnn_layers.png")
    return neuron


def _check(names: list[str], seed: int) -> int:
    unknown = [n for n in names if n not in gates.ALL]
    if unknown:
        print(f"difprog check: unknown gate(s) {', '.join(unknown)}; choose from "
              f"{', '.join(gates.ALL)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    header = f"{'gate':<22} {'points':>6} " + " ".join(f"{c:>17}" for c in _COLUMNS) + "  ok"
    print(header)
    print("-" * len(header))
    failed = []
    for name in names or gates.ALL:
        reports = [check_gate(gates.ALL[name], *args, seed=seed, **kwargs)
                   for args, kwargs in check_points(name, seed)]
        ok = all(r.ok for r in reports)
        worst = [max(r.errors[c] for r in reports) for c in _COLUMNS]
        print(f"{name:<22} {len(reports):>6} " + " ".join(f"{e:>17.1e}" for e in worst)
              + f"  {'yes' if ok else 'NO'}", flush=True)
        if not ok:
            failed.append(reports)
    tol = Tolerances()
    print(f"\n{len(names or gates.ALL) - len(failed)} of {len(names or gates.ALL)} gates ok "
          f"(worst relative errors in float64; tolerances: reverse {tol.reverse:.0e}, forward "
          f"{tol.forward:.0e}, finite difference {tol.finite_difference:.0e}, second order "
          f"{tol.second_order:.0e}) in {time.perf_counter() - start:.0f} s")
    for reports in failed:
        for report in reports:
            if not report.ok:
                print(f"\n{report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
