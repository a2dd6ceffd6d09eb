"""Jit-compiled training of image classifiers with optax: the train step, evaluation, and `fit`.

`fit` describes the image task (init, loss, the shuffled batches of each epoch, the test-set
evaluation, what checkpoints and metrics.json record) and `difprog.driver.drive` runs it with
checkpoints, resume, the run lock, provenance and device placement. Each epoch is shuffled with a
key derived from the seed and the epoch, and each step's dropout key is drawn from the seed and
the step number, so a run resumed from a checkpoint ends with the same params as one that was
never interrupted. Batches are sharded over the devices of a one-axis `jax.sharding.Mesh`
('data'); params and optimiser state are replicated (or split, shard='params'; see
`difprog.placement`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from difprog import arguments, checkpoint, gates, monitor, provenance
from difprog.data import Dataset, batches, num_batches, validate
from difprog.driver import Tally, drive
from difprog.errors import ArgumentError, CheckpointError
from difprog.layers import Layer, merge_stats, stat_paths
from difprog.placement import SHARDS, Placement

__all__ = ["ADVERSARIAL", "LOSSES", "OPTIMIZERS", "RESULT_FIELDS", "SCHEDULES", "FitResult",
           "TrainConfig", "adversarial_batch", "evaluate", "fit", "make_eval_step", "make_loss",
           "make_optimizer", "make_schedule", "make_train_step", "restore"]

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "step", "cosine", "linear", "rsqrt")
LOSSES = {"cross_entropy": gates.softmax_cross_entropy, "hinge": gates.multiclass_hinge_loss}
ADVERSARIAL = ("none", "pgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step; the last batch of an epoch may be smaller.
        optimizer: 'sgd', 'momentum' (SGD with Nesterov-free momentum 0.9) or 'adam'.
        learning_rate: the peak learning rate.
        schedule: 'constant'; 'step' (x0.1 at 50% and 75% of training); 'cosine' (to 0);
            'linear' (to 0); 'rsqrt' (inverse square root of the step after one epoch of
            linear warm-up).
        loss: 'cross_entropy' (softmax cross-entropy) or 'hinge' (multiclass SVM loss).
        weight_decay: lambda of the L2 penalty lambda * sum(w^2) over every weight `w` (biases,
            scales and offsets are not penalised), through the l2_penalty gate.
        seed: initialises params and draws shuffles and dropout masks; 0 <= seed < 2**32
            (JAX keeps 32 bits of a seed without x64, so 2**32 would repeat seed 0).
        devices: how many local devices to shard batches over (None: all).
        shard: 'none' (params and optimiser state replicated on every device: data
            parallelism) or 'params' (each of their arrays split over the devices, so each
            device holds about 1/devices of them; see `difprog.placement.Placement`).
        keep_checkpoints: how many of the newest checkpoints to keep.
        adversarial: 'none', or 'pgd': Madry et al.'s adversarial training, each batch replaced
            by its L-inf PGD adversarial examples (`difprog.attacks.perturb`: a random start,
            `adversarial_steps` steps of 2.5 * adversarial_eps / steps, inputs in [0, 1]),
            attacking the model in evaluation mode with the step's params.
        adversarial_eps: the L-inf budget of those examples.
        adversarial_steps: their PGD steps.

    The fields in `RESULT_FIELDS` decide what a run computes: a resume refuses a checkpoint
    trained with other values of them (see `fit`'s allow_changes; adversarial_eps and
    adversarial_steps only count in adversarial training). `devices`, `shard` and
    `keep_checkpoints` do not: several devices compute the same steps as one (to float rounding)
    however the params are laid out, and pruning keeps what is computed, so they may change
    between a run and its resume.
    """

    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    loss: str = "cross_entropy"
    weight_decay: float = 0.0
    seed: int = 0
    devices: int | None = None
    shard: str = "none"
    keep_checkpoints: int = 3
    adversarial: str = "none"
    adversarial_eps: float = 0.1
    adversarial_steps: int = 7

    def __post_init__(self):
        """Refuses any setting out of range, naming it."""
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("loss", tuple(LOSSES)), ("shard", SHARDS),
                              ("adversarial", ADVERSARIAL)):
            arguments.one_of("TrainConfig", name, getattr(self, name), allowed)
        checked = {name: arguments.positive_int("TrainConfig", name, getattr(self, name))
                   for name in ("epochs", "batch_size", "keep_checkpoints",
                                "adversarial_steps")}
        checked["seed"] = arguments.integer("TrainConfig", "seed", self.seed, minimum=0,
                                            maximum=2**32 - 1)
        checked["devices"] = arguments.optional_int("TrainConfig", "devices", self.devices,
                                                    minimum=1)
        for name, bounds in (("learning_rate", {"positive": True}),
                             ("weight_decay", {"minimum": 0}),
                             ("adversarial_eps", {"minimum": 0})):
            number = arguments.real("TrainConfig", name, getattr(self, name), **bounds)
            if not isinstance(getattr(self, name), int | float):  # a NumPy number: as a float
                checked[name] = number
        for name, value in checked.items():  # NumPy ints as ints: the config is recorded as JSON
            object.__setattr__(self, name, value)


RESULT_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule", "loss",
                 "weight_decay", "seed", "adversarial", "adversarial_eps", "adversarial_steps")
_ADVERSARIAL_ONLY = ("adversarial_eps", "adversarial_steps")  # compared when adversarial


class FitResult(NamedTuple):
    """What `fit` returns: the trained params and optimiser state, and the metrics per epoch."""

    params: Any
    opt_state: Any
    history: list[dict]
    test_accuracy: float
    resumed_from: int | None
    health: dict | None = None


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate as a function of the step number."""
    peak, total = config.learning_rate, config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return optax.constant_schedule(peak)
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(
            peak, {int(total * 0.5): 0.1, int(total * 0.75): 0.1})
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, total)
    if config.schedule == "linear":
        return optax.linear_schedule(peak, 0.0, total)
    warmup = steps_per_epoch
    return lambda step: peak * jnp.minimum((step + 1) / warmup,
                                           jnp.sqrt(warmup / jnp.maximum(step + 1, warmup)))


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimiser the config names, driven by its learning-rate schedule."""
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "sgd":
        return optax.sgd(schedule)
    if config.optimizer == "momentum":
        return optax.sgd(schedule, momentum=0.9)
    return optax.adam(schedule)


def make_loss(model: Layer, config: TrainConfig, capture: tuple[str, ...] = ()) -> Callable:
    """`loss(params, x, y, key) -> (loss, (logits, captured))`: the data loss plus the L2
    penalty, and the outputs of the layers at the `capture` paths (`Layer.run`'s)."""
    data_loss = LOSSES[config.loss]

    def loss(params, x, y, key):
        applied = model.run(params, x, key=key, train=True, capture=capture)
        value = data_loss(applied.output, y)
        if config.weight_decay:
            value = gates.add(value, gates.multiply(gates.l2_penalty(weights(params)),
                                                    config.weight_decay))
        return value, (applied.output, applied.captured)

    return loss


def weights(params: Any) -> list:
    """Every leaf named `w` (the weights of Dense and Conv2D layers), for the L2 penalty."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return [leaf for path, leaf in paths if getattr(path[-1], "key", None) == "w"]


def make_train_step(model: Layer, config: TrainConfig, optimizer: optax.GradientTransformation,
                    watch: monitor.Watch | None = None) -> Callable:
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss, correct)`, jitted.

    A model with BatchNorm layers also gets their running statistics updated from the batch
    (`update_stats`); they get no gradient, so the optimiser leaves them alone. With a `watch`
    (`difprog.monitor`), `step(..., key, record)` also returns, for record=True, the monitor's
    record (`monitor.pack`ed), and None for False; `record` is a static Python bool, so a step
    that records nothing runs the same program as a step without a watch.
    """
    loss = make_loss(model, config, watch.capture if watch else ())
    tracks_stats = bool(stat_paths(model))

    def step(params, opt_state, x, y, key, record=None):
        if config.adversarial == "pgd":
            x = adversarial_batch(model, config, params, x, y, key)
        (value, (logits, acts)), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y,
                                                                                  key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        new = optax.apply_updates(params, updates)
        if tracks_stats:  # the same forward pass as the loss's, which XLA computes once
            new = merge_stats(new, model.run(params, x, key=key, train=True,
                                             update_stats=True).stats)
        if watch is None:
            return new, opt_state, value, correct
        health = monitor.measured(record, watch, params, grads, updates, acts, value)
        return new, opt_state, value, correct, health

    return jax.jit(step, static_argnames="record")


def adversarial_batch(model: Layer, config: TrainConfig, params: Any, x: jax.Array,
                      y: jax.Array, key: jax.Array) -> jax.Array:
    """The batch replaced by its PGD adversarial examples (Madry et al.'s adversarial training),
    the random start drawn from the step's key; no gradient flows back through the attack."""
    from difprog.attacks import perturb

    adversarial = perturb(model.apply, params, x, y, config.adversarial_eps,
                          steps=config.adversarial_steps, key=jax.random.fold_in(key, 1))
    return jax.lax.stop_gradient(adversarial)


def make_eval_step(model: Layer, config: TrainConfig) -> Callable:
    """`evaluate(params, x, y) -> (summed loss, correct)` in evaluation mode, jitted."""

    def evaluate(params, x, y):
        logits = model.apply(params, x)
        return LOSSES[config.loss](logits, y) * len(y), jnp.sum(jnp.argmax(logits, -1) == y)

    return jax.jit(evaluate)



def fit(model: Layer, data: Dataset, config: TrainConfig = TrainConfig(), *,
        out: str | os.PathLike | None = None, progress: bool = True,
        extra_metrics: Mapping[str, Any] | None = None,
        allow_changes: bool = False, monitor_every: int | None = None,
        thresholds: monitor.Thresholds | None = None) -> FitResult:
    """Trains `model` on `data`, checkpointing into `out` after every epoch.

    `out` is checked and locked before anything is computed (see `difprog.rundir`): a second run
    on the same directory is refused with the pid of the first. When `out` holds checkpoints,
    training resumes from the newest one, provided it was trained with the same result-relevant
    settings (`RESULT_FIELDS`), model layout and data. After each epoch it writes
    `checkpoint_<epoch>.safetensors` (params and optimiser state, written atomically) and
    `metrics.json` (test accuracy, epochs, seed, per-epoch history, config, segments).

    Args:
        model: the model, a layer whose outputs are class scores.
        data: train and test images and labels.
        config: the hyperparameters.
        out: the output directory, or a `difprog.rundir.RunDirectory` already owned (None: keep
            nothing on disk, no resume).
        progress: show a progress bar on stderr.
        extra_metrics: more entries for metrics.json (such as the model's name; the entry
            'model' also names the model in the recorded settings).
        allow_changes: resume even when the settings differ from the checkpoint's; metrics.json
            and the checkpoints then record which epochs ran with which (`segments`).
        monitor_every: watch the training's health (`difprog.monitor`) every this many steps:
            diagnoses are printed as they start and stop, `out` gets health.json, health.png
            and health.html after every epoch, and the result's `health` holds health.json's
            contents (a `monitor.Health`: a dict that a notebook shows as the dashboard); a
            non-finite loss or gradient is traced to its first gate and layer.
        thresholds: the monitor's `difprog.monitor.Thresholds` (None: the defaults).

    Returns:
        The params, optimiser state, per-epoch history and final test accuracy.

    Raises:
        RunDirectoryError: `out` is a file, cannot be written, or another run holds it.
        ConfigMismatchError: resuming with other settings than the checkpoint's, without
            `allow_changes`; names every difference.
        CheckpointError: the checkpoint to resume is corrupted, holds NaN or does not match.
        NonFiniteLossError: a step's loss was NaN or infinite; names the step, and keeps the
            checkpoints already written.
        WriteError: a checkpoint could not be written (a full disk); the last good one is kept.

    Example:
        >>> result = fit(models.cnn(), data.digits(), TrainConfig(epochs=5), out="run")
        >>> result.test_accuracy
    """
    validate(data)
    if config.adversarial != "none":
        low, high = float(np.min(data.x_train)), float(np.max(data.x_train))
        if not (0 <= low and high <= 1):
            raise ArgumentError(f"fit: adversarial training attacks inputs in [0, 1], but the "
                                f"training images range over [{low:g}, {high:g}]; scale them "
                                f"into [0, 1]")
    watch = None if monitor_every is None else monitor.watch(
        model, data.x_train[:1], every=monitor_every, thresholds=thresholds)
    task = _ImageTask.create(model, data, config, extra_metrics, watch)
    state = drive(task, out=out, progress=progress, allow_changes=allow_changes)
    final = state.history[-1]["test_accuracy"] if state.history else float("nan")
    return FitResult(state.params, state.opt_state, state.history, final, state.resumed_from,
                     task.monitor.health() if task.monitor else None)


@dataclasses.dataclass(frozen=True)
class _ImageTask:
    """The image classifier as a `difprog.driver.Task`: epochs of shuffled batches, evaluated
    on the test split after each one."""

    model: Layer
    data: Dataset
    config: TrainConfig
    extra: dict
    steps_per_unit: int
    optimizer: optax.GradientTransformation
    train_step: Callable
    eval_step: Callable
    monitor: monitor.Monitor | None
    unit = "epoch"
    caller = writer = "fit"
    recorded = ("history",)
    result_fields = RESULT_FIELDS

    @classmethod
    def create(cls, model, data, config, extra_metrics, watch=None):
        steps_per_epoch = num_batches(len(data.x_train), config.batch_size)
        optimizer = make_optimizer(config, steps_per_epoch)
        return cls(model, data, config, dict(extra_metrics or {}), steps_per_epoch, optimizer,
                   make_train_step(model, config, optimizer, watch),
                   make_eval_step(model, config), watch and monitor.Monitor(watch))

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_unit

    @property
    def eval_every(self) -> int:
        return self.steps_per_unit

    def init(self, key):
        return self.model.init(key, self.data.x_train[:1])

    def locate(self, params, x, y, key) -> monitor.Origin | None:
        """Where the loss of the clean batch (x, y) or its gradient first became non-finite."""
        loss = make_loss(self.model, self.config)
        return monitor.first_nonfinite(lambda p: loss(p, x, y, key)[0], params,
                                       model=self.model)

    def identity(self, params) -> dict:
        name = self.extra.get("model") if isinstance(self.extra.get("model"), str) else None
        settings = {field: getattr(self.config, field) for field in RESULT_FIELDS
                    if self.config.adversarial != "none" or field not in _ADVERSARIAL_ONLY}
        return provenance.identity(settings, params, self.data, name)

    def batches(self, key, start: int, end: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of steps start..end-1: epoch e shuffled with fold_in(key, e)."""
        for epoch in range(start // self.steps_per_unit, -(-end // self.steps_per_unit)):
            for i, batch in enumerate(batches(jax.random.fold_in(key, epoch), self.data.x_train,
                                              self.data.y_train, self.config.batch_size)):
                if start <= epoch * self.steps_per_unit + i < end:
                    yield batch

    def evaluate(self, params, placement: Placement) -> dict:
        loss, accuracy = evaluate(self.eval_step, params, self.data.x_test, self.data.y_test,
                                  placement)
        return {"test_loss": loss, "test_accuracy": accuracy}

    def summary(self, tally: Tally) -> dict:
        return {"train_loss": tally.loss_sum / tally.seen,
                "train_accuracy": tally.aux_sum / tally.seen}

    def postfix(self, tally: Tally) -> dict:
        return {"loss": f"{tally.loss_sum / tally.seen:.4f}",
                "acc": f"{tally.aux_sum / tally.seen:.2%}"}

    def report(self, entry: dict, tally: Tally, trained: float, elapsed: float) -> str:
        return (f"epoch {entry['epoch']:>3}/{self.config.epochs}  loss {entry['train_loss']:.4f}"
                f"  accuracy {entry['train_accuracy']:.2%}  test loss {entry['test_loss']:.4f}  "
                f"test accuracy {entry['test_accuracy']:.2%}  ({elapsed:.1f} s)")

    def record(self, state) -> dict:
        return {"extra": self.extra}

    def metrics(self, state, checkpoint_name: str, devices: int, elapsed: float | None) -> dict:
        """metrics.json: the extra metrics, the last epoch's, and the whole history."""
        history = state.history
        return {**self.extra, **(history[-1] if history else {}),
                "epochs": state.step // self.steps_per_unit, "seed": self.config.seed,
                "checkpoint": checkpoint_name, "devices": devices, "last_epoch_seconds": elapsed,
                "config": dataclasses.asdict(self.config), "history": history,
                "segments": state.segments}



def restore(path: str | os.PathLike, model: Layer, example_input: np.ndarray
            ) -> tuple[Any, dict]:
    """The params of a checkpoint `fit` wrote, checked against `model`, and its metadata."""
    _, meta = checkpoint.load(path)
    try:
        config = TrainConfig(**{**meta.get("config", {}), "devices": None})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{os.fspath(path)!r} is not the checkpoint of an image model "
                              f"difprog.train.fit wrote: its recorded config does not fit "
                              f"({error})") from None
    params = model.init(jax.random.key(0), example_input)
    template = {"params": params, "opt_state": make_optimizer(config, 1).init(params)}
    state, meta = checkpoint.load(path, template)
    return jax.tree.map(jnp.asarray, state["params"]), meta


def evaluate(eval_step: Callable, params: Any, x: np.ndarray, y: np.ndarray,
             placement: Placement, batch_size: int = 512) -> tuple[float, float]:
    """(mean loss, accuracy) over a whole data split."""
    loss_sum, correct = 0.0, 0
    for xb, yb in batches(None, x, y, batch_size):
        loss, right = eval_step(params, placement.batch(xb), placement.batch(yb))
        loss_sum, correct = loss_sum + float(loss), correct + int(right)
    return loss_sum / len(y), correct / len(y)
