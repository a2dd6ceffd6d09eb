"""Trains a model with jit-compiled steps through difprog gates, writing a checkpoint after every
epoch and metrics.json into --out; resumes from the newest checkpoint there if it was trained with
the same settings."""

from __future__ import annotations

import argparse
import pathlib

import jax

from difprog.cli import options

__all__ = ["HELP", "IMAGE_OPTIONS", "LM_OPTIONS", "add_training_arguments",
           "arguments", "print_accuracy", "run", "train_images"]

_LM_FIELDS = ("steps", "layers", "heads", "features", "context", "dropout", "warmup", "clip",
              "eval_every")  # LMConfig's fields that are options of their own
LM_OPTIONS = ("level", *_LM_FIELDS)
IMAGE_OPTIONS = ("dataset", "epochs", "optimizer", "schedule", "loss", "adversarial", "eps",
                 "adversarial_steps")
# Epochs when --epochs is left out, where a data set's differ from TrainConfig's 30: 60,000
# Fashion-MNIST images take the default CNN to 93% test accuracy in 6 (9 minutes on 2 cores).
DATASET_EPOCHS = {"fashion-mnist": 6}

HELP = "train a model on real data, with checkpoints and metrics.json"


def arguments(parser: options.Parser) -> None:
    """The options of difprog train: every training option, --out and --allow-changes."""
    add_training_arguments(parser, "train")


def add_training_arguments(parser: options.Parser, command: str) -> None:
    """The options of train and demo, with TrainConfig's (and, for train, LMConfig's) defaults.

    Options one kind of model has and the other lacks default to None, so that `run` can
    refuse them by name; `_given` fills in the defaults."""
    from difprog.data import DATASETS
    from difprog.lm import LMConfig
    from difprog.models import MODELS
    from difprog.train import LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig

    image, text = TrainConfig(), LMConfig()
    lm = command == "train"
    parser.add_argument("--model", choices=sorted([*MODELS, *(["gpt"] if lm else [])]),
                        default="cnn", help="the model" + (
                            " (gpt: a transformer language model on --data; see the options "
                            "below)" if lm else ""))
    parser.add_argument("--data", default=None, metavar="DATA",
                        help="the image models' data set: digits (8x8, in scikit-learn), "
                             "fashion-mnist (found on this machine or downloaded once) or a "
                             "directory of idx files such as MNIST's (default: digits)"
                             + ("; gpt's text: a UTF-8 file, a directory of them, or "
                                "python-stdlib (the running Python's standard library; the "
                                "default)" if lm else ""))
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                        help="the same as --data for the image models' named data sets")
    parser.add_argument("--epochs", type=options.positive, default=None,
                        help=f"passes over the training set (default: {image.epochs}; "
                             f"{', '.join(f'{k}: {v}' for k, v in DATASET_EPOCHS.items())})")
    parser.add_argument("--batch-size", type=options.positive, default=None,
                        help=f"examples per step (default: {image.batch_size}"
                             + (f"; gpt: {text.batch_size} windows" if lm else "") + ")")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help=f"the optax optimiser (default: {image.optimizer}; gpt trains with "
                             f"AdamW)")
    parser.add_argument("--lr", type=options.number(positive=True), default=None,
                        help=f"peak learning rate (default: {image.learning_rate}"
                             + (f"; gpt: {text.learning_rate}" if lm else "") + ")")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help=f"learning-rate schedule (default: {image.schedule}; gpt: warm-up "
                             f"then cosine)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default=None,
                        help=f"the loss (default: {image.loss})")
    parser.add_argument("--weight-decay", type=options.number(positive=False), default=None,
                        help=f"L2 penalty on the weights (default: {image.weight_decay}"
                             + (f"; gpt: AdamW's decoupled decay, {text.weight_decay}" if lm
                                else "") + ")")
    _adversarial_arguments(parser, image)
    options.add_seed(parser, "seed of the params, shuffles and dropout", image.seed, limits=True)
    _placement_arguments(parser, launcher=lm)
    options.add_out(parser, command, "checkpoints and metrics.json")
    parser.add_argument("--allow-changes", action="store_true",
                        help="resume from --out even if its checkpoint was trained with other "
                             "settings; metrics.json records which epochs ran with which")
    options.add_no_progress(parser)
    if lm:
        _monitor_arguments(parser)
        _language_model_arguments(parser, text)


def _monitor_arguments(parser: options.Parser) -> None:
    """--monitor and --monitor-every: the training's health (difprog.monitor)."""
    parser.add_argument("--monitor", action="store_true",
                        help="watch the training's health: gradient flow, update/weight "
                             "ratios, dead and saturated units; diagnoses in the log, and "
                             "health.json, health.png and health.html in --out")
    parser.add_argument("--monitor-every", type=options.integer(1, 10**9), default=None,
                        metavar="N", help="--monitor's records: every N steps (default: 10)")


def _monitor_every(args: argparse.Namespace) -> int | None:
    """Every how many steps --monitor records (None: no monitor)."""
    if not getattr(args, "monitor", False):
        if getattr(args, "monitor_every", None) is not None:
            raise options.UsageError(f"difprog {args.command}: --monitor-every sets how often "
                                     f"--monitor records; add --monitor")
        return None
    return args.monitor_every or 10


def _adversarial_arguments(parser: options.Parser, image) -> None:
    """--adversarial, --eps and --adversarial-steps: Madry et al.'s adversarial training."""
    from difprog.train import ADVERSARIAL

    parser.add_argument("--adversarial", choices=ADVERSARIAL, default=None,
                        help="pgd: train on each batch's L-inf PGD adversarial examples "
                             "(Madry et al.; random start, steps of 2.5 eps / steps) "
                             f"(default: {image.adversarial})")
    parser.add_argument("--eps", type=options.number(positive=False), default=None,
                        help=f"--adversarial's L-inf budget, for inputs in [0, 1] (default: "
                             f"{image.adversarial_eps})")
    parser.add_argument("--adversarial-steps", type=options.integer(1, 1000), default=None,
                        help=f"--adversarial's PGD steps (default: {image.adversarial_steps})")


def _placement_arguments(parser: options.Parser, launcher: bool = False) -> None:
    """--devices, --shard, --distributed, --join-timeout and, with `launcher`, --processes."""
    parser.add_argument("--devices", type=options.devices, default=None,
                        help="devices to shard each batch over (default: all local devices; "
                             "on a CPU, N > 1 makes N CPU devices; with --distributed, the CPU "
                             "devices of each process, and batches span every process's)")
    parser.add_argument("--shard", choices=["none", "params"], default="none",
                        help="params and optimiser state replicated on every device (none: "
                             "data parallelism) or split over them (params: FSDP-style, each "
                             "device holds about 1/devices of them)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first, to train on the devices "
                             "of several hosts (run the same command on every host); the "
                             "processes compare their options first, and one that ends early "
                             "stops the others")
    parser.add_argument("--join-timeout", type=options.integer(1, 86400), default=120,
                        metavar="SECONDS",
                        help="with --distributed, how long each process waits for the others "
                             "before it gives up in one line")
    if launcher:
        from difprog.launch import MAX_PROCESSES

        parser.add_argument("--processes", type=options.integer(2, MAX_PROCESSES), default=None,
                            metavar="N",
                            help="start N processes of this command on this machine, joined "
                                 "as by --distributed: each gets --distributed, --no-progress "
                                 "and JAX_COORDINATOR_ADDRESS (127.0.0.1 and a free port), "
                                 "JAX_NUM_PROCESSES and JAX_PROCESS_ID, and makes --devices CPU "
                                 "devices; their lines are shown prefixed '[process K] ', and "
                                 "one that fails stops the others")


def _start_devices(args: argparse.Namespace) -> None:
    """This process's devices; with --distributed, the cluster joined with this run's options
    (all but where it writes and how it reports) compared across processes."""
    from difprog import cluster

    private = {"handler", "out", "debug", "no_progress", "join_timeout"}
    shared = {name: value if isinstance(value, (bool, int, float, type(None))) else str(value)
              for name, value in sorted(vars(args).items()) if name not in private}
    cluster.start_devices(args.devices, args.distributed, owner="--distributed",
                          timeout=args.join_timeout, settings=shared)


def _language_model_arguments(parser: options.Parser, defaults) -> None:
    """The options of `train --model gpt` (LMConfig's fields), in a group of their own."""
    group = parser.add_argument_group("language model (--model gpt)")
    group.add_argument("--level", choices=["char", "byte"], default=None,
                       help="tokens: characters or UTF-8 bytes (default: char)")
    positive = options.positive
    for name, kind, what in (
            ("steps", positive, "optimiser steps"), ("layers", positive, "transformer blocks"),
            ("heads", positive, "attention heads"), ("features", positive, "model width"),
            ("context", positive, "tokens per window"),
            ("dropout", options.fraction, "dropout rate in the blocks"),
            ("warmup", options.integer(0), "steps of linear learning-rate warm-up"),
            ("clip", options.number(positive=True), "largest global gradient norm"),
            ("eval_every", positive, "steps between validation losses and checkpoints")):
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                           help=f"{what} (default: {getattr(defaults, name)})")


def run(args: argparse.Namespace) -> int:
    """difprog train: trains into --out and prints the test accuracy (or, for gpt, the
    validation loss and a sample)."""
    if getattr(args, "processes", None) is not None:
        return _launch(args)
    if args.model == "gpt":
        return _run_lm(args)
    result, dataset, _ = train_images(args)
    print_accuracy(args, result, dataset)
    _print_health(args, result.health)
    return 0


def _launch(args: argparse.Namespace) -> int:
    """--processes N: this command line in N local processes (difprog.launch), less
    --processes, with --distributed and --no-progress; no JAX device starts here."""
    from difprog import launch

    if args.distributed:
        raise options.UsageError("difprog train: --processes N starts N processes with "
                                 "--distributed itself; leave --distributed out")
    parser = options.Parser(prog="difprog train")
    arguments(parser)
    given = launch.command_line(parser, args, leave={"processes", "distributed", "no_progress"})
    debug = ["--debug"] if getattr(args, "debug", False) else []
    return launch.run(["train", *given, "--no-progress", *debug], args.processes)


def _print_health(args: argparse.Namespace, health: dict | None) -> None:
    """The monitored run's last line: how many diagnoses, and where the files are."""
    from difprog import monitor

    if health is not None and jax.process_index() == 0:
        print(f"training health: {monitor.summary(health)}; wrote health.json, health.png and "
              f"health.html into {args.out}/")


def train_images(args: argparse.Namespace, then=None) -> tuple:
    """Trains an image model as the options say; `then(model, params, dataset)` runs in the
    owned --out (on process 0) after training. (the result, the data set, what `then` gave)."""
    from difprog import data, models, rundir
    from difprog.train import TrainConfig, fit

    _refuse_options(args, [name for name in LM_OPTIONS if hasattr(args, name)], "gpt")
    if args.adversarial in (None, "none") and (args.eps, args.adversarial_steps) != (None, None):
        raise options.UsageError(f"difprog {args.command}: --eps and --adversarial-steps set "
                                 f"adversarial training; add --adversarial pgd")
    args.dataset = _image_data(args)
    every = _monitor_every(args)
    defaults, done = TrainConfig(epochs=DATASET_EPOCHS.get(args.dataset, TrainConfig.epochs)), None
    config = TrainConfig(**{field: _given(args, option, defaults, field) for option, field in (
        ("epochs", "epochs"), ("batch_size", "batch_size"), ("optimizer", "optimizer"),
        ("lr", "learning_rate"), ("schedule", "schedule"), ("loss", "loss"),
        ("weight_decay", "weight_decay"), ("adversarial", "adversarial"),
        ("eps", "adversarial_eps"), ("adversarial_steps", "adversarial_steps"))}, seed=args.seed,
        devices=None if args.distributed else args.devices, shard=args.shard)
    _start_devices(args)
    with rundir.own(args.out, exclusive=jax.process_index() == 0) as out:
        dataset = data.load(args.dataset)
        model = models.build(args.model, dataset.num_classes)
        result = fit(model, dataset, config, out=out, progress=not args.no_progress,
                     extra_metrics={"model": args.model, "dataset": args.dataset},
                     allow_changes=args.allow_changes, monitor_every=every)
        if then is not None and out.exclusive:
            done = then(model, result.params, dataset)
    return result, dataset, done


def _image_data(args: argparse.Namespace) -> str:
    """The image data set --data (or --dataset) names: a name, or an idx directory's full path."""
    _refuse_empty_data(args)
    if args.data and args.dataset and args.data != args.dataset:
        raise options.UsageError(f"difprog {args.command}: --data {args.data} and --dataset "
                                 f"{args.dataset} name two data sets; give one")
    from difprog.data import DATASETS

    chosen = args.data or args.dataset or "digits"
    return chosen if chosen in DATASETS else str(pathlib.Path(chosen).absolute())


def _refuse_empty_data(args: argparse.Namespace) -> None:
    if args.data is not None and not args.data.strip():
        raise options.UsageError(f"difprog {args.command}: --data needs a data set's name or a "
                                 f"path, got {args.data!r}")


def print_accuracy(args: argparse.Namespace, result, dataset) -> None:
    """The last line of train and demo: the test accuracy after the epochs run."""
    right = round(result.test_accuracy * len(dataset.y_test))
    epochs = result.history[-1]["epoch"] if result.history else 0
    print(f"test accuracy {result.test_accuracy:.2%} ({right}/{len(dataset.y_test)}) on "
          f"{args.dataset} with the {args.model} model after {epochs} epochs")


def _given(args: argparse.Namespace, option: str, defaults, field: str):
    """The option's value, or the config's default when the command line left it out."""
    value = getattr(args, option)
    return getattr(defaults, field) if value is None else value


def _refuse_options(args: argparse.Namespace, names, model: str) -> None:
    """A usage error (exit status 2) naming each given option that applies only to `model`."""
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
    if given:
        from difprog.models import MODELS

        which = (f"the image models ({', '.join(MODELS)})" if model == "image" else
                 f"--model {model}")
        raise options.UsageError(
            f"difprog {args.command}: {', '.join(given)} "
            f"{'applies' if len(given) == 1 else 'apply'} only to {which}; "
            f"leave {'it' if len(given) == 1 else 'them'} out or choose that model")


def _run_lm(args: argparse.Namespace) -> int:
    """difprog train --model gpt: the language model on --data, then loss.png and a sample."""
    from difprog import data, lm, rundir, viz

    _refuse_options(args, IMAGE_OPTIONS, "image")
    _refuse_empty_data(args)
    every = _monitor_every(args)
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
                           allow_changes=args.allow_changes, monitor_every=every)
        last, unit = result.history[-1], "character" if corpus.level == "char" else "byte"
        summary = (f"validation loss {last['val_loss']:.4f} nats per {unit} after "
                   f"{last['step']} steps ({result.seconds:.0f} s of training)")
        if out.exclusive:
            lm.plot_losses(result.history, result.train_curve, out.path / "loss.png",
                           title=f"gpt on {corpus.name}: {summary}")
            viz.write_token_attribution(out.path, corpus)
    print(f"{summary} of gpt on {corpus.name}; next-{unit} accuracy {last['val_accuracy']:.2%}")
    _print_health(args, result.health)
    if out.exclusive:
        prompt = "def " if corpus.name == "python-stdlib" else corpus.decode(corpus.validation[:8])
        print(f"wrote loss.png, attribution.png, metrics.json and checkpoints into "
              f"{args.out}/; a sample "
              f"(difprog sample --checkpoint {args.out} --prompt {prompt!r} --seed "
              f"{args.seed}):\n{lm.sample(args.out, prompt, length=160, seed=args.seed)}")
    return 0
