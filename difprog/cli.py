"""The `difprog` command line.

Every failure is one line on stderr and a non-zero exit status: 2 for a usage error (an unknown
option, a value out of range), 1 for a failure while running; `--debug` shows the traceback
instead. Commands that write take `--out DIR` (default `./difprog-<command>`) and own it while
they write (see `difprog.rundir`).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import platform
import sys
import time
from collections.abc import Callable

import jax

from difprog import gates
from difprog.check import Tolerances, check_gate
from difprog.errors import DifprogError
from difprog.gates import check_points

_COLUMNS = ("reverse", "forward", "finite difference", "second order")
_SEED_LIMIT = 2**32
_DISTRIBUTED_VARIABLES = "JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES " \
                         "and JAX_PROCESS_ID"


def main(argv: list[str] | None = None) -> int:
    """Runs the `difprog` command line on `argv` (default: sys.argv[1:]); the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(_expression_last(sys.argv[1:] if argv is None else list(argv)))
    except _UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    return _run(args)


_EXPLAIN_VALUED = ("--at", "--out")


def _expression_last(argv: list[str]) -> list[str]:
    """argv with explain's expression moved after a `--`, so that an expression starting with a
    minus sign (`difprog explain '-x' --at x=1`) is not read as an option."""
    command = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if command is None or argv[command] != "explain":
        return argv
    start = command + 1
    options, positionals, rest = [], [], iter(argv[start:])
    for token in rest:
        if token == "--":
            positionals += list(rest)
        elif token in _EXPLAIN_VALUED:
            options += [token, next(rest, "")]
        elif token in ("-h", "--help") or token.startswith(tuple(f"{o}=" for o in _EXPLAIN_VALUED)):
            options.append(token)
        else:
            positionals.append(token)
    return argv[:start] + options + (["--", *positionals] if positionals else [])


def _run(args: argparse.Namespace) -> int:
    """Runs the chosen command; a failure becomes one line on stderr (a traceback with --debug)."""
    name = " ".join(filter(None, (args.command, getattr(args, "benchmark", None))))
    try:
        return args.handler(args)
    except _UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"difprog {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"difprog {name}: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    """An exception as one line: difprog's own message, or its type and message otherwise."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, DifprogError | OSError):
        return text or type(error).__name__
    return (f"{type(error).__name__}: {text} (an unexpected error: run again with --debug for "
            f"the traceback, and please report it)")


class _UsageError(Exception):
    """A command line argparse cannot read: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (see --help for the usage)."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in --help, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)) \
                or "default" in text:
            return text
        return super()._get_help_string(action)


def _parser() -> _Parser:
    """The parser of every subcommand, each with its handler in `args.handler`."""
    from difprog import __version__

    parser = _Parser(prog="difprog", description=__doc__.splitlines()[0],
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version",
                        version=f"difprog {__version__} (jax {jax.__version__}, Python "
                                f"{platform.python_version()})")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure instead of one line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_train, _add_sample, _add_visualize, _add_attribute, _add_explain,
                _add_check, _add_bench):
        add(commands)
    return parser


def _command(commands, name: str, handler: Callable, help: str, description: str) -> _Parser:
    """A subcommand parser that runs `handler` and also accepts --debug after its name."""
    parser = commands.add_parser(name, help=help, description=description,
                                 formatter_class=_Formatter)
    parser.set_defaults(handler=handler)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure instead of one line")
    return parser


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (inclusive; None: no limit)."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {limit}, got {text}")
        return value

    read.__name__ = "integer"
    return read


def _number(positive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number, positive or non-negative."""

    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            kind = "positive" if positive else "non-negative"
            raise argparse.ArgumentTypeError(f"expected a finite {kind} number, got {text}")
        return value

    read.__name__ = "number"
    return read


_seed = _integer(0, _SEED_LIMIT - 1)
_positive = _integer(1, 2**31 - 1)  # counts and sizes: XLA indexes with 32-bit ints
_devices = _integer(1, 1024)  # more than a host has; XLA's CPU client aborts on absurd counts


def _out_dir(text: str) -> pathlib.Path:
    """An argparse type: an output directory, with a name, that is not an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output directory must have a name, got ''")
    path = pathlib.Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    return path


def _add_out(parser: _Parser, command: str, what: str) -> None:
    """The --out option of a command that writes, defaulting to ./difprog-<command>."""
    parser.add_argument("--out", type=_out_dir, default=pathlib.Path(f"difprog-{command}"),
                        metavar="DIR", help=f"directory for {what}")


def _add_check(commands) -> None:
    """difprog check GATE... [--seed]."""
    check = _command(
        commands, "check", _check, help="prove every gate's backward and tangent rules in float64",
        description="Checks each gate's hand-written rules against JAX's autodiff of its "
                    "forward and against central finite differences, at several shapes, and "
                    "prints the worst relative error of each check.")
    check.add_argument("names", nargs="*", metavar="GATE",
                       help=f"gates to check (default: all {len(gates.ALL)})")
    check.add_argument("--seed", type=_seed, default=0, help="seed of the check points")


def _add_train(commands) -> None:
    """difprog train: every training option, --out and --allow-changes."""
    train = _command(
        commands, "train", _train,
        help="train a model on real data, with checkpoints and metrics.json",
        description="Trains a model with jit-compiled steps through difprog gates, writing a "
                    "checkpoint after every epoch and metrics.json into --out; resumes from the "
                    "newest checkpoint there if it was trained with the same settings.")
    _training_arguments(train, "train")


def _add_sample(commands) -> None:
    """difprog sample --checkpoint PATH --prompt TEXT [--length --temperature --top-k --seed]."""
    sample = _command(
        commands, "sample", _sample, help="generate text with a trained language model",
        description="Loads a checkpoint written by difprog train --model gpt and prints the "
                    "prompt followed by generated tokens, each drawn from the model's "
                    "next-token distribution over the last --context tokens.")
    sample.add_argument("--checkpoint", type=pathlib.Path, required=True, metavar="PATH",
                        help="a checkpoint file, or a run directory (its newest checkpoint)")
    sample.add_argument("--prompt", required=True, help="the text to continue, such as 'def '")
    sample.add_argument("--length", type=_integer(1, 100_000), default=200,
                        help="tokens to generate")
    sample.add_argument("--temperature", type=_number(positive=False), default=0.8,
                        help="divides the logits: lower is more conservative; 0 always takes "
                             "the most likely token")
    sample.add_argument("--top-k", type=_positive, default=None,
                        help="draw only from the k most likely tokens (default: all)")
    sample.add_argument("--seed", type=_seed, default=0, help="seed of the draws")


def _add_demo(commands) -> None:
    """difprog demo: train's options, then visualisations and explanations of the model."""
    demo = _command(
        commands, "demo", _train, help="train the default CNN on the digits and show what it wrote",
        description="Trains the default CNN on scikit-learn's digits into --out, visualises "
                    "its classes, explains the lectures' sigmoid neuron, and lists the files "
                    "it wrote.")
    _training_arguments(demo, "demo")


def _add_bench(commands) -> None:
    """difprog bench modes."""
    bench = _command(commands, "bench", None, help="benchmarks that write tables and plots",
                     description="Benchmarks that write tables and plots.")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    modes = _command(
        benchmarks, "modes", _bench_modes, help="forward against reverse mode over f: R^n -> R^m",
        description="Times the full Jacobian by jacfwd and by jacrev for a tanh MLP built from "
                    "gates, for every (n, m), and writes modes.md, modes.json and modes.png.")
    _add_out(modes, "bench", "modes.md, modes.json and modes.png")
    modes.add_argument("--sizes", type=_positive, nargs="+", default=None, metavar="N",
                       help="values of n and m (default: 1 4 16 64 256 1024)")
    modes.add_argument("--width", type=_positive, default=64, help="hidden width of the MLP")
    modes.add_argument("--repeats", type=_positive, default=7, help="timed runs per point")
    modes.add_argument("--no-progress", action="store_true",
                       help="hide the line printed on stderr before each point compiles")


def _add_visualize(commands) -> None:
    """difprog visualize --checkpoint FILE_OR_RUN_DIR."""
    visualize = _command(
        commands, "visualize", _visualize,
        help="optimise inputs that maximise classes or channels of a trained model",
        description="Loads a checkpoint written by difprog train or demo, optimises input images "
                    "for each class (or each channel of --layer), and writes a labelled PNG "
                    "grid, visualizations.npz (images, targets) and saliency.png into --out.")
    visualize.add_argument("--checkpoint", type=pathlib.Path, required=True, metavar="PATH",
                           help="a checkpoint file, or a run directory (its newest checkpoint)")
    _add_out(visualize, "visualize", "the images and visualizations.npz")
    visualize.add_argument("--model", default=None,
                           help="the checkpoint's model (default: the one recorded in it)")
    visualize.add_argument("--classes", type=_integer(0), nargs="+", default=None,
                           help="classes to visualise (default: all)")
    visualize.add_argument("--layer", default=None,
                           help="a layer path, such as conv2d_1, to visualise channels of")
    visualize.add_argument("--channels", type=_integer(0), nargs="+", default=None,
                           help="channels of --layer (default: the first 8)")
    visualize.add_argument("--steps", type=_positive, default=512, help="optimisation steps")
    visualize.add_argument("--param", choices=["fourier", "pixel"], default="fourier",
                           help="image parameterisation")
    visualize.add_argument("--seed", type=_seed, default=0, help="seed of the optimisation")
    visualize.add_argument("--no-regularizers", action="store_true",
                           help="no total-variation and L1 penalties")
    visualize.add_argument("--no-transforms", action="store_true",
                           help="no random jitter, padded crops and zooms")
    visualize.add_argument("--no-progress", action="store_true",
                           help="hide the progress bar and the compile lines (when stderr is "
                                "not a terminal, the bar is a line every 5 s at most)")


def _add_attribute(commands) -> None:
    """difprog attribute --checkpoint FILE_OR_RUN_DIR [--methods ... --count --seed]."""
    from difprog.viz import METHODS

    attribute = _command(
        commands, "attribute", _attribute,
        help="attribution maps of test images, with their sanity checks",
        description="Loads a checkpoint written by difprog train or demo and explains each of "
                    "the first --count test images' label score by every method; writes "
                    "attributions.png (one row per image, one column per method), "
                    "attributions.npz, and the sanity checks (completeness of integrated "
                    "gradients, cascading model randomisation) as sanity.json and sanity.txt "
                    "into --out, and prints their tables.")
    attribute.add_argument("--checkpoint", type=pathlib.Path, required=True, metavar="PATH",
                           help="a checkpoint file, or a run directory (its newest checkpoint)")
    _add_out(attribute, "attribute", "attributions.png, attributions.npz and sanity.json")
    attribute.add_argument("--model", default=None,
                           help="the checkpoint's model (default: the one recorded in it)")
    attribute.add_argument("--methods", choices=METHODS, nargs="+", default=None,
                           metavar="METHOD", help=f"methods, from {', '.join(METHODS)} "
                                                  f"(default: all the model allows: grad_cam "
                                                  f"needs a layer of feature maps)")
    attribute.add_argument("--count", type=_integer(1, 64), default=8,
                           help="test images explained (the first ones)")
    attribute.add_argument("--seed", type=_seed, default=0,
                           help="seed of SmoothGrad's noise and of the re-initialised weights")
    attribute.add_argument("--steps", type=_integer(1, 4096), default=64,
                           help="path points of integrated gradients")
    attribute.add_argument("--samples", type=_integer(1, 4096), default=32,
                           help="noisy copies per image of SmoothGrad")
    attribute.add_argument("--noise", type=_number(positive=False), default=0.15,
                           help="SmoothGrad's noise std, a fraction of each image's value range")
    attribute.add_argument("--layer", default=None,
                           help="Grad-CAM's layer path, such as conv2d_1 (default: the last "
                                "layer with feature maps)")
    attribute.add_argument("--window", type=_positive, default=2,
                           help="occlusion's window, in pixels (square)")
    attribute.add_argument("--stride", type=_positive, default=1,
                           help="occlusion's stride, in pixels")
    attribute.add_argument("--no-sanity", action="store_true",
                           help="skip the sanity checks (sanity.json and sanity.txt)")


def _add_explain(commands) -> None:
    """difprog explain EXPRESSION --at POINT [--out DIR]."""
    explain = _command(
        commands, "explain", _explain,
        help="a function's graph with values and gradients at every node",
        description="Explains an expression in variables x, y, z... built from arithmetic and "
                    "difprog gates (exp, log, sqrt, sigmoid, tanh, relu, max, min, sum...): "
                    "prints the forward and backward pass node by node and, with --out, writes "
                    "graph.svg, graph.png, graph.html (a page that steps through both passes "
                    "in a browser, with no network access), table.txt and flat_code.py.")
    explain.add_argument("expression", help="such as '(x + y) * z' or '1 / (y + exp(-x))'")
    explain.add_argument("--at", required=True,
                         help="the point, such as x=-2,y=5,z=-4 (lists for vectors: w=[1,2])")
    explain.add_argument("--out", type=_out_dir, default=None, metavar="DIR",
                         help="directory for the graph (picture and interactive page), table "
                              "and flat code (default: print only)")


def _training_arguments(parser: _Parser, command: str) -> None:
    """The options of train and demo, with TrainConfig's (and, for train, LMConfig's) defaults.

    Options one kind of model has and the other lacks default to None, so that `_train` can
    refuse them by name; `_given` fills in the defaults."""
    from difprog.lm import LMConfig
    from difprog.models import MODELS
    from difprog.train import LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig

    image, text = TrainConfig(), LMConfig()
    lm = command == "train"
    parser.add_argument("--model", choices=sorted([*MODELS, *(["gpt"] if lm else [])]),
                        default="cnn", help="the model" + (
                            " (gpt: a transformer language model on --data; see the options "
                            "below)" if lm else ""))
    parser.add_argument("--dataset", choices=["digits"], default=None,
                        help="the data set of the image models (default: digits)")
    parser.add_argument("--epochs", type=_positive, default=None,
                        help=f"passes over the training set (default: {image.epochs})")
    parser.add_argument("--batch-size", type=_positive, default=None,
                        help=f"examples per step (default: {image.batch_size}"
                             + (f"; gpt: {text.batch_size} windows" if lm else "") + ")")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help=f"the optax optimiser (default: {image.optimizer}; gpt trains with "
                             f"AdamW)")
    parser.add_argument("--lr", type=_number(positive=True), default=None,
                        help=f"peak learning rate (default: {image.learning_rate}"
                             + (f"; gpt: {text.learning_rate}" if lm else "") + ")")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help=f"learning-rate schedule (default: {image.schedule}; gpt: warm-up "
                             f"then cosine)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default=None,
                        help=f"the loss (default: {image.loss})")
    parser.add_argument("--weight-decay", type=_number(positive=False), default=None,
                        help=f"L2 penalty on the weights (default: {image.weight_decay}"
                             + (f"; gpt: AdamW's decoupled decay, {text.weight_decay}" if lm
                                else "") + ")")
    parser.add_argument("--seed", type=_seed, default=image.seed,
                        help=f"seed of the params, shuffles and dropout (0 to {_SEED_LIMIT - 1})")
    parser.add_argument("--devices", type=_devices, default=None,
                        help="devices to shard each batch over (default: all local devices; "
                             "on a CPU, N > 1 makes N CPU devices; with --distributed, the CPU "
                             "devices of each process, and batches span every process's)")
    parser.add_argument("--shard", choices=["none", "params"], default="none",
                        help="params and optimiser state replicated on every device (none: "
                             "data parallelism) or split over them (params: FSDP-style, each "
                             "device holds about 1/devices of them)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first, to train on the devices "
                             "of several hosts (run the same command on every host)")
    _add_out(parser, command, "checkpoints and metrics.json")
    parser.add_argument("--allow-changes", action="store_true",
                        help="resume from --out even if its checkpoint was trained with other "
                             "settings; metrics.json records which epochs ran with which")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar and the compile lines (when stderr is "
                             "not a terminal, the bar is a line every 5 s at most)")
    if lm:
        _language_model_arguments(parser, text)


_LM_FIELDS = ("steps", "layers", "heads", "features", "context", "dropout", "warmup", "clip",
              "eval_every")  # LMConfig's fields that are options of their own
_LM_OPTIONS = ("data", "level", *_LM_FIELDS)
_IMAGE_OPTIONS = ("dataset", "epochs", "optimizer", "schedule", "loss")


def _language_model_arguments(parser: _Parser, defaults) -> None:
    """The options of `train --model gpt` (LMConfig's fields), in a group of their own."""
    group = parser.add_argument_group("language model (--model gpt)")
    group.add_argument("--data", default=None, metavar="SOURCE",
                       help="a UTF-8 text file, a directory of them, or python-stdlib (the "
                            "running Python's standard library) (default: python-stdlib)")
    group.add_argument("--level", choices=["char", "byte"], default=None,
                       help="tokens: characters or UTF-8 bytes (default: char)")
    for name, kind, what in (
            ("steps", _positive, "optimiser steps"), ("layers", _positive, "transformer blocks"),
            ("heads", _positive, "attention heads"), ("features", _positive, "model width"),
            ("context", _positive, "tokens per window"),
            ("dropout", _fraction, "dropout rate in the blocks"),
            ("warmup", _integer(0), "steps of linear learning-rate warm-up"),
            ("clip", _number(positive=True), "largest global gradient norm"),
            ("eval_every", _positive, "steps between validation losses and checkpoints")):
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                           help=f"{what} (default: {getattr(defaults, name)})")


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = _number(positive=False)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def _start_devices(args: argparse.Namespace) -> None:
    """Joins the cluster (--distributed) and makes --devices CPU devices (per process), before
    JAX starts."""
    if args.devices and args.devices > 1:
        jax.config.update("jax_num_cpu_devices", args.devices)
    if args.distributed:
        _join_cluster()


def _join_cluster() -> None:
    """jax.distributed.initialize with the coordinator, process count and id that
    JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID give, or those JAX detects
    in a cluster (SLURM, Open MPI...); CPU devices talk through gloo."""
    import os

    names = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    given = {name: os.environ[name] for name in names if os.environ.get(name)}
    if given and len(given) < len(names):
        raise DifprogError(f"--distributed: set all of {_DISTRIBUTED_VARIABLES}, or none (to let "
                           f"JAX detect the cluster); missing "
                           f"{', '.join(n for n in names if n not in given)}")
    settings = {}
    if given:
        try:
            count, index = int(given["JAX_NUM_PROCESSES"]), int(given["JAX_PROCESS_ID"])
        except ValueError:
            raise DifprogError(f"--distributed: JAX_NUM_PROCESSES and JAX_PROCESS_ID must be "
                               f"integers, got {given['JAX_NUM_PROCESSES']!r} and "
                               f"{given['JAX_PROCESS_ID']!r}") from None
        if not 0 <= index < count:
            raise DifprogError(f"--distributed: JAX_PROCESS_ID must be from 0 to "
                               f"JAX_NUM_PROCESSES - 1 = {count - 1}, got {index}")
        settings = {"coordinator_address": given["JAX_COORDINATOR_ADDRESS"],
                    "num_processes": count, "process_id": index}
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**settings)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DifprogError(
            f"--distributed: jax.distributed.initialize() failed ({first}); run under a "
            f"cluster JAX detects (such as SLURM or Open MPI) or set "
            f"{_DISTRIBUTED_VARIABLES} on every host") from error


def _train(args: argparse.Namespace) -> int:
    """difprog train and demo: trains into --out; demo also visualises and explains."""
    from difprog import data, models, rundir
    from difprog.train import TrainConfig, fit

    if args.model == "gpt":
        return _train_lm(args)
    _refuse_options(args, [name for name in _LM_OPTIONS if hasattr(args, name)], "gpt")
    demo, neuron, defaults = args.command == "demo", None, TrainConfig()
    args.dataset = args.dataset or "digits"
    config = TrainConfig(**{field: _given(args, option, defaults, field) for option, field in (
        ("epochs", "epochs"), ("batch_size", "batch_size"), ("optimizer", "optimizer"),
        ("lr", "learning_rate"), ("schedule", "schedule"), ("loss", "loss"),
        ("weight_decay", "weight_decay"))}, seed=args.seed,
        devices=None if args.distributed else args.devices, shard=args.shard)
    _start_devices(args)
    with rundir.own(args.out, exclusive=jax.process_index() == 0) as out:
        dataset = data.load(args.dataset)
        model = models.build(args.model, dataset.num_classes)
        result = fit(model, dataset, config, out=out, progress=not args.no_progress,
                     extra_metrics={"model": args.model, "dataset": args.dataset},
                     allow_changes=args.allow_changes)
        if demo and out.exclusive:
            _write_visualizations(model, result.params, dataset, args.out,
                                  progress=not args.no_progress)
            _write_attributions(model, result.params, dataset, args.out / "attribution",
                                count=6, sanity=False, **_DEMO_ATTRIBUTION)
            neuron = _write_explanations(model, result.params, dataset, args.out)
    if neuron is not None:
        print(f"Attribution of six test digits by six methods in attribution/ (32 steps, 8 "
              f"samples); the defaults (64, 32) and the sanity checks: difprog attribute "
              f"--checkpoint {args.out} --out DIR")
        _print_demo(args.out, neuron)
    right = round(result.test_accuracy * len(dataset.y_test))
    epochs = result.history[-1]["epoch"] if result.history else 0
    print(f"test accuracy {result.test_accuracy:.2%} ({right}/{len(dataset.y_test)}) on "
          f"{args.dataset} with the {args.model} model after {epochs} epochs")
    return 0


# The demo's attribution settings: fewer path points and noisy copies than difprog attribute's
# defaults (64, 32), and no sanity checks, to stay within a few seconds; its figure says so.
_DEMO_NOTE = ", demo settings (difprog attribute defaults: 64 steps, 32 samples)"
_DEMO_ATTRIBUTION = {"steps": 32, "samples": 8, "note": _DEMO_NOTE}


def _given(args: argparse.Namespace, option: str, defaults, field: str):
    """The option's value, or the config's default when the command line left it out."""
    value = getattr(args, option)
    return getattr(defaults, field) if value is None else value


def _refuse_options(args: argparse.Namespace, options, model: str) -> None:
    """A usage error (exit status 2) naming each given option that applies only to `model`."""
    given = [f"--{name.replace('_', '-')}" for name in options if getattr(args, name) is not None]
    if given:
        which = "the image models (cnn, mlp, linear)" if model == "image" else f"--model {model}"
        raise _UsageError(f"difprog {args.command}: {', '.join(given)} "
                          f"{'applies' if len(given) == 1 else 'apply'} only to {which}; "
                          f"leave {'it' if len(given) == 1 else 'them'} out or choose that model")


def _train_lm(args: argparse.Namespace) -> int:
    """difprog train --model gpt: the language model on --data, then loss.png and a sample."""
    from difprog import data, lm, rundir

    _refuse_options(args, _IMAGE_OPTIONS, "image")
    defaults = lm.LMConfig()
    fields = {f: _given(args, f, defaults, f) for f in _LM_FIELDS}
    config = lm.LMConfig(**fields, batch_size=_given(args, "batch_size", defaults, "batch_size"),
                         learning_rate=_given(args, "lr", defaults, "learning_rate"),
                         weight_decay=_given(args, "weight_decay", defaults, "weight_decay"),
                         seed=args.seed, devices=None if args.distributed else args.devices,
                         shard=args.shard)
    _start_devices(args)
    with rundir.own(args.out, exclusive=jax.process_index() == 0) as out:
        corpus = data.text(args.data or "python-stdlib", context=config.context,
                           level=args.level or "char")
        result = lm.fit_lm(corpus, config, out=out, progress=not args.no_progress,
                           allow_changes=args.allow_changes)
        last, unit = result.history[-1], "character" if corpus.level == "char" else "byte"
        summary = (f"validation loss {last['val_loss']:.4f} nats per {unit} after "
                   f"{last['step']} steps ({result.seconds:.0f} s of training)")
        if out.exclusive:
            lm.plot_losses(result.history, result.train_curve, out.path / "loss.png",
                           title=f"gpt on {corpus.name}: {summary}")
            _write_attribution(out.path, corpus)
    print(f"{summary} of gpt on {corpus.name}; next-{unit} accuracy {last['val_accuracy']:.2%}")
    if out.exclusive:
        prompt = "def " if corpus.name == "python-stdlib" else corpus.decode(corpus.validation[:8])
        print(f"wrote loss.png, attribution.png, metrics.json and checkpoints into "
              f"{args.out}/; a sample "
              f"(difprog sample --checkpoint {args.out} --prompt {prompt!r} --seed "
              f"{args.seed}):\n{lm.sample(args.out, prompt, length=160, seed=args.seed)}")
    return 0


_ATTRIBUTION_PROMPT = "import os\n\n\ndef read(path):\n    with open(path) as file:\n        return fi"


def _write_attribution(out: pathlib.Path, corpus) -> pathlib.Path:
    """attribution.png: gradient x input of the trained model's next token after a prompt (a
    fixed piece of Python for python-stdlib, else the start of the validation text)."""
    from difprog import lm, viz

    trained = lm.load_lm(out)
    ids = (trained.codec.encode(_ATTRIBUTION_PROMPT) if corpus.name == "python-stdlib"
           else corpus.validation[:64])[-trained.context:]
    result = viz.token_attribution(trained.model, trained.params, ids)
    return viz.save_token_attribution(trained.codec, ids, result, out / "attribution.png")


def _sample(args: argparse.Namespace) -> int:
    """difprog sample: text generated by a language-model checkpoint."""
    from difprog import lm

    print(lm.sample(args.checkpoint, args.prompt, length=args.length,
                    temperature=args.temperature, top_k=args.top_k, seed=args.seed))
    return 0


def _print_demo(out: pathlib.Path, neuron) -> None:
    """The demo's explained neuron and the files it wrote, with their sizes."""
    print(f"\nThe sigmoid neuron of the lectures, explained node by node (explain/):\n{neuron}")
    print(f"\ndifprog demo wrote into {out}/:")
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            name = str(path.relative_to(out))
            print(f"  {name:<32} {path.stat().st_size:>10,} bytes")


def _bench_modes(args: argparse.Namespace) -> int:
    """difprog bench modes: the jacfwd/jacrev sweep, printed and written into --out."""
    import json

    from difprog import modes, rundir
    from difprog.files import atomic, write_bytes

    sizes = tuple(args.sizes) if args.sizes else modes.SIZES
    with rundir.own(args.out) as out:
        print(f"{'n':>5} {'m':>5} {'jacfwd ms':>10} {'jacrev ms':>10} {'fwd/rev':>8}  cheaper")
        show = lambda r: print(f"{r['n']:>5} {r['m']:>5} {r['forward_seconds'] * 1e3:>10.3f} "
                               f"{r['reverse_seconds'] * 1e3:>10.3f} {r['ratio']:>8.2f}  "
                               f"{r['cheaper']}", flush=True)
        rows = modes.sweep(sizes, args.width, args.repeats, on_row=show,
                           progress=not args.no_progress)
        header = (f"Full Jacobian of a tanh MLP (width {args.width}) built from gates, f: R^n "
                  f"-> R^m; median of at least {args.repeats} runs (50 ms or more per mode) on "
                  f"{jax.devices()[0].device_kind}, jax {jax.__version__}.\n\n")
        for name, text in (("modes.md", header + modes.sweep_table(rows) + "\n"),
                           ("modes.json", json.dumps(rows, indent=2) + "\n")):
            with atomic(out.path / name) as temporary:
                write_bytes(temporary, text.encode())
        modes.plot_sweep(rows, out.path / "modes.png")
    compared = [r for r in rows if r["theory"] != "either"]
    agree = sum(r["cheaper"] == r["theory"] for r in compared)
    print(f"\nwrote modes.md, modes.json and modes.png into {args.out}/; the measured cheaper "
          f"mode agrees with n vs m at {agree} of {len(compared)} points with n != m")
    return 0


def _checkpoint_file(path: pathlib.Path) -> pathlib.Path:
    """--checkpoint as a file: itself, or the newest checkpoint of a run directory."""
    from difprog import checkpoint
    from difprog.errors import CheckpointError

    if not path.exists():
        raise CheckpointError(f"no file or directory {str(path)!r}; point --checkpoint to a run's "
                              f"directory (such as difprog-demo) or one of its checkpoint files")
    if not path.is_dir():
        return path
    found = checkpoint.latest(path)
    if found is None:
        raise CheckpointError(f"no checkpoint_<epoch>.safetensors in the directory {str(path)!r}; "
                              f"point --checkpoint to a run's directory or checkpoint file")
    return found


def _visualize(args: argparse.Namespace) -> int:
    """difprog visualize: class or channel visualisations and saliency of a checkpoint."""
    from difprog import checkpoint, data, models, rundir
    from difprog.errors import ArgumentError
    from difprog.train import restore

    path = _checkpoint_file(args.checkpoint)
    _, meta = checkpoint.load(path)
    dataset = data.load(meta.get("extra", {}).get("dataset", "digits"))
    wrong = [c for c in args.classes or [] if c >= dataset.num_classes]
    if wrong:
        raise ArgumentError(f"--classes {' '.join(map(str, wrong))}: the model has "
                            f"{dataset.num_classes} classes (0 to {dataset.num_classes - 1})")
    model = models.build(args.model or meta.get("extra", {}).get("model", "cnn"),
                         dataset.num_classes)
    params, _ = restore(path, model, dataset.x_train[:1])
    with rundir.own(args.out):
        written = _write_visualizations(
            model, params, dataset, args.out, classes=args.classes, layer=args.layer,
            channels=args.channels, steps=args.steps, param=args.param, seed=args.seed,
            regularize=not args.no_regularizers, transforms=not args.no_transforms,
            progress=not args.no_progress)
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0


def _write_visualizations(model, params, dataset, out: pathlib.Path, *, classes=None,
                          layer=None, channels=None, steps=512, param="fourier", seed=0,
                          regularize=True, transforms=True, progress=True) -> list[pathlib.Path]:
    """Class (or channel) visualisations as PNG and npz, and saliency maps of test images."""
    import numpy as np

    from difprog import viz
    from difprog.files import write_npz

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
                         title=f"{result.objective}, {steps} steps, seed {seed}")
    npz = write_npz(out / "visualizations.npz", images=result.images,
                    targets=np.asarray(targets), history=result.history)
    examples = dataset.x_test[:10]
    maps = viz.saliency(model, params, examples, dataset.y_test[:10])
    saliency = viz.save_saliency(examples, maps, out / "saliency.png",
                                 labels=[f"label {y}" for y in dataset.y_test[:10]])
    return [grid, npz, saliency]


def _attribute(args: argparse.Namespace) -> int:
    """difprog attribute: attribution maps of test images and their sanity checks."""
    from difprog import checkpoint, data, models, rundir
    from difprog.train import restore

    path = _checkpoint_file(args.checkpoint)
    _, meta = checkpoint.load(path)
    dataset = data.load(meta.get("extra", {}).get("dataset", "digits"))
    model = models.build(args.model or meta.get("extra", {}).get("model", "cnn"),
                         dataset.num_classes)
    params, _ = restore(path, model, dataset.x_train[:1])
    with rundir.own(args.out):
        written, tables = _write_attributions(
            model, params, dataset, args.out, methods=args.methods, count=args.count,
            seed=args.seed, steps=args.steps, samples=args.samples, noise=args.noise,
            layer=args.layer, window=args.window, stride=args.stride,
            sanity=not args.no_sanity)
    if tables:
        print(tables)
    print(f"wrote {', '.join(p.name for p in written)} into {args.out}/")
    return 0


def _write_attributions(model, params, dataset, out: pathlib.Path, *, methods=None, count=8,
                        seed=0, steps=64, samples=32, noise=0.15, layer=None, window=2,
                        stride=1, sanity=True, note="") -> tuple[list[pathlib.Path], str]:
    """attributions.png and .npz of the first `count` test images (each explained for its
    label), and with `sanity` the checks as sanity.json and sanity.txt; (files, the tables)."""
    import numpy as np

    from difprog import viz
    from difprog.errors import ArgumentError
    from difprog.files import atomic, write_bytes, write_json, write_npz

    x, y = dataset.x_test[:count], dataset.y_test[:count]
    if methods is None:
        spatial = _has_feature_maps(model, params, x)
        methods = [m for m in viz.METHODS if m != "grad_cam" or spatial or layer is not None]
    if layer is None and "grad_cam" in methods:
        layer = viz.last_spatial_layer(model, params, x)
    if "occlusion" in methods and window > min(x.shape[1:3]):
        raise ArgumentError(f"--window {window}: the images are {x.shape[1]}x{x.shape[2]} "
                            f"pixels; choose a window at most that")
    if "occlusion" in methods and stride > window:
        raise ArgumentError(f"--stride {stride}: larger than --window {window}, occlusion would "
                            f"leave pixels between windows unexplained; choose at most {window}")
    settings = dict(steps=steps, samples=samples, noise=noise, layer=layer,
                    window=window, stride=stride)
    key = jax.random.key(seed)
    maps = viz.attributions(model, params, x, y, methods, key=key, **settings)
    predicted = np.asarray(jax.numpy.argmax(model.apply(params, x), -1))
    described = {"integrated_gradients": f"integrated gradients {steps} steps",
                 "smoothgrad": f"SmoothGrad {samples} samples (noise {noise}, seed {seed})",
                 "grad_cam": f"Grad-CAM at {layer}",
                 "occlusion": f"occlusion {window}x{window} stride {settings['stride']}"}
    title = "; ".join(["attribution of each label's score",
                       *(described[m] for m in methods if m in described)]) + note
    out.mkdir(parents=True, exist_ok=True)
    written = [viz.save_attributions(x, maps, out / "attributions.png", title=title,
                                     labels=[f"label {a}\npredicted {b}"
                                             for a, b in zip(y, predicted)]),
               write_npz(out / "attributions.npz", images=x, labels=y, **maps)]
    if not sanity:
        return written, ""
    checks = _sanity_checks(model, params, x, y, key, methods, settings)
    tables = "\n\n".join(str(check) for check in checks.values()) + "\n"
    written.append(write_json(out / "sanity.json", {
        **{name: check.to_json() for name, check in checks.items()},
        "settings": {**settings, "seed": seed, "images": int(count), "note": note.strip(", ")}}))
    with atomic(out / "sanity.txt") as temporary:
        write_bytes(temporary, tables.encode())
    return [*written, out / "sanity.txt"], tables


def _sanity_checks(model, params, x, y, key, methods, settings) -> dict:
    """Completeness of integrated gradients and the randomisation test (all positions, and the
    foreground)."""
    from difprog import viz

    everywhere, foreground = viz.randomizations(model, params, x, y, jax.random.fold_in(key, 1),
                                                methods=methods, **settings)
    return {"completeness": viz.completeness(model, params, x, y),
            "randomization": everywhere, "randomization_foreground": foreground}


def _has_feature_maps(model, params, x) -> bool:
    from difprog import viz

    return any(len(out.shape) == 4 for out in viz.layer_outputs(model, params, x).values())


def _explain(args: argparse.Namespace) -> int:
    from difprog.errors import DifprogError
    from difprog.expression import expression_function, parse_point
    from difprog.graph import explain

    try:  # an expression or point the grammar refuses is a usage error
        point = parse_point(args.at)
        f = expression_function(args.expression, list(point))
    except DifprogError as error:
        print(f"difprog explain: {error}", file=sys.stderr)
        return 2
    try:
        with jax.enable_x64(True):
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
    """The sigmoid neuron of the lectures (with its page, graph.html), and the CNN's loss
    summarised per layer (picture and page: cnn_layers.png, cnn_layers.html)."""
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
    cnn.to_html(out / "explain" / "cnn_layers.html",
                title=f"difprog demo: the loss of the trained model on {len(y)} test digits, "
                      f"one node per layer")
    return neuron


def _check(args: argparse.Namespace) -> int:
    """difprog check: every (or each named) gate's rules proven, as a table."""
    names, seed = args.names, args.seed
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
