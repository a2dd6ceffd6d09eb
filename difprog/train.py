"""Jit-compiled training with optax: the train step, evaluation, and `fit` with checkpoints.

`fit` shuffles each epoch with a key derived from the seed and the epoch, and draws each step's
dropout key from the seed and the step number, so a run resumed from a checkpoint ends with the
same params as one that was never interrupted. Batches are sharded over the devices of a
one-axis `jax.sharding.Mesh` ('data'); params and optimiser state are replicated.

A run owns its output directory (`difprog.rundir`), resumes only a checkpoint trained with the
same settings unless asked (`difprog.provenance` records which epochs ran with which), never
saves or resumes NaN params (`difprog.checkpoint`), and a crash or a full disk at any moment
leaves the last good checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from difprog import checkpoint, gates, provenance, rundir
from difprog.data import Dataset, batches, num_batches, validate
from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
    NonFiniteLossError,
    WriteError,
)
from difprog.files import kill_point, write_json
from difprog.layers import Layer, merge_stats, stat_paths
from difprog.progress import Progress, compiling

OPTIMIZERS = ("sgd", "momentum", "adam")
SHARDS = ("none", "params")
SCHEDULES = ("constant", "step", "cosine", "linear", "rsqrt")
LOSSES = {"cross_entropy": gates.softmax_cross_entropy, "hinge": gates.multiclass_hinge_loss}


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
            device holds about 1/devices of them; see `Placement`).
        keep_checkpoints: how many of the newest checkpoints to keep.

    The fields in `RESULT_FIELDS` decide what a run computes: a resume refuses a checkpoint
    trained with other values of them (see `fit`'s allow_changes). `devices`, `shard` and
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

    def __post_init__(self):
        """Refuses any setting out of range, naming it."""
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("loss", tuple(LOSSES)), ("shard", SHARDS)):
            if getattr(self, name) not in allowed:
                raise ArgumentError(f"TrainConfig: {name} must be one of {list(allowed)}, got "
                                    f"{getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"TrainConfig: {name} must be a positive int, got {value!r}")
        for name, low in (("learning_rate", "positive"), ("weight_decay", "non-negative")):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value < 0 or (value == 0 and low == "positive")):
                raise ArgumentError(f"TrainConfig: {name} must be a finite {low} number, got "
                                    f"{value!r}")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                or not 0 <= self.seed < 2**32):
            raise ArgumentError(f"TrainConfig: seed must be an int from 0 to 2**32 - 1 "
                                f"({2**32 - 1}), got {self.seed!r}")
        if self.devices is not None and (isinstance(self.devices, bool)
                                         or not isinstance(self.devices, int) or self.devices < 1):
            raise ArgumentError(f"TrainConfig: devices must be None (all) or a positive int, got "
                                f"{self.devices!r}")


RESULT_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule", "loss",
                 "weight_decay", "seed")


class FitResult(NamedTuple):
    """What `fit` returns: the trained params and optimiser state, and the metrics per epoch."""

    params: Any
    opt_state: Any
    history: list[dict]
    test_accuracy: float
    resumed_from: int | None


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


def make_loss(model: Layer, config: TrainConfig) -> Callable:
    """`loss(params, x, y, key) -> (loss, logits)`: the data loss plus the L2 penalty."""
    data_loss = LOSSES[config.loss]

    def loss(params, x, y, key):
        logits = model.apply(params, x, key=key, train=True)
        value = data_loss(logits, y)
        if config.weight_decay:
            value = gates.add(value, gates.multiply(gates.l2_penalty(weights(params)),
                                                    config.weight_decay))
        return value, logits

    return loss


def weights(params: Any) -> list:
    """Every leaf named `w` (the weights of Dense and Conv2D layers), for the L2 penalty."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return [leaf for path, leaf in paths if getattr(path[-1], "key", None) == "w"]


def make_train_step(model: Layer, config: TrainConfig, optimizer: optax.GradientTransformation
                    ) -> Callable:
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss, correct)`, jitted.

    A model with BatchNorm layers also gets their running statistics updated from the batch
    (`update_stats`); they get no gradient, so the optimiser leaves them alone.
    """
    loss = make_loss(model, config)
    tracks_stats = bool(stat_paths(model))

    def step(params, opt_state, x, y, key):
        (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        new = optax.apply_updates(params, updates)
        if tracks_stats:  # the same forward pass as the loss's, which XLA computes once
            new = merge_stats(new, model.run(params, x, key=key, train=True,
                                             update_stats=True).stats)
        return new, opt_state, value, correct

    return jax.jit(step)


def make_eval_step(model: Layer, config: TrainConfig) -> Callable:
    """`evaluate(params, x, y) -> (summed loss, correct)` in evaluation mode, jitted."""

    def evaluate(params, x, y):
        logits = model.apply(params, x)
        return LOSSES[config.loss](logits, y) * len(y), jnp.sum(jnp.argmax(logits, -1) == y)

    return jax.jit(evaluate)



class Placement:
    """Puts batches on a one-axis device mesh ('data'); params and optimiser state are replicated
    on every device (data parallelism) or, with shard='params', split over the devices
    (FSDP-style: XLA gathers each array where a step needs it)."""

    def __init__(self, devices: int | None = None, shard: str = "none"):
        available = jax.devices()
        count = len(available) if devices is None else devices
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(
                available):
            raise ArgumentError(f"devices must be between 1 and the {len(available)} devices "
                                f"available ({available[0].platform}), got {devices!r}")
        if shard not in SHARDS:
            raise ArgumentError(f"shard must be one of {list(SHARDS)}, got {shard!r}")
        if shard == "params" and jax.process_count() > 1:
            raise ArgumentError("shard='params' runs in one process (its devices, any number); "
                                "across processes, train with data parallelism (shard='none')")
        self.mesh = Mesh(np.array(available[:count]), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec("data"))
        self.shard = shard

    @property
    def count(self) -> int:
        return self.mesh.size

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)

    def batch(self, array: np.ndarray) -> jax.Array:
        """A batch split over the devices, or replicated when its size does not divide evenly."""
        sharding = self.sharded if len(array) % self.count == 0 else self.replicated
        if jax.process_count() == 1:
            return jax.device_put(array, sharding)
        local = array if sharding is self.replicated else np.array_split(
            array, jax.process_count())[jax.process_index()]
        return jax.make_array_from_process_local_data(sharding, local, array.shape)

    def place(self, tree: Any) -> Any:
        """Params or optimiser state on the devices: replicated, or each array split along
        `split_axis` of its shape (replicated where no axis divides evenly)."""
        if self.shard == "none":
            return self.replicate(tree)
        return jax.tree.map(lambda leaf: jax.device_put(leaf, self.sharding_of(np.shape(leaf))),
                            tree)

    def sharding_of(self, shape: tuple[int, ...]) -> NamedSharding:
        """The sharding of an array of `shape` under shard='params'."""
        axis = split_axis(shape, self.count)
        if axis is None:
            return self.replicated
        return NamedSharding(self.mesh, PartitionSpec(*[None] * axis, "data"))


def split_axis(shape: tuple[int, ...], devices: int) -> int | None:
    """The axis an array is split along over `devices`: the longest one whose length they
    divide (the last of equals), so a Dense weight (in, out), a Conv2D kernel (h, w, in, out)
    and an embedding table (vocab, features) each split along their largest dimension; None
    (replicated) for scalars, and where no axis divides or there is one device."""
    fits = [(size, axis) for axis, size in enumerate(shape)
            if size >= devices and size % devices == 0]
    return max(fits)[1] if devices > 1 and fits else None


def fit(model: Layer, data: Dataset, config: TrainConfig = TrainConfig(), *,
        out: str | os.PathLike | None = None, progress: bool = True,
        extra_metrics: Mapping[str, Any] | None = None,
        allow_changes: bool = False) -> FitResult:
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
    placement = Placement(config.devices, config.shard)
    owned = (contextlib.nullcontext() if out is None
             else rundir.own(out, exclusive=jax.process_index() == 0))
    with owned as directory:
        run = _Run.create(model, data, config, placement, directory, progress, extra_metrics)
        state = _start(run, allow_changes)
        for epoch in range(state.epoch, config.epochs):
            state = _train_epoch(run, state, epoch)
    final = state.history[-1]["test_accuracy"] if state.history else float("nan")
    return FitResult(state.params, state.opt_state, state.history, final, state.resumed_from)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one call of `fit` trains, where it writes, and its jitted steps."""

    model: Layer
    data: Dataset
    config: TrainConfig
    placement: Placement
    out: pathlib.Path | None
    writes: bool
    progress: bool
    extra: dict
    steps_per_epoch: int
    optimizer: optax.GradientTransformation
    keys: tuple[jax.Array, jax.Array, jax.Array]
    train_step: Callable
    eval_step: Callable

    @classmethod
    def create(cls, model, data, config, placement, directory, progress, extra_metrics):
        """The run of `fit`'s arguments; `directory` is the owned output directory or None."""
        steps_per_epoch = num_batches(len(data.x_train), config.batch_size)
        optimizer = make_optimizer(config, steps_per_epoch)
        keys = tuple(jax.random.split(jax.random.key(config.seed), 3))
        out = None if directory is None else directory.path
        return cls(model, data, config, placement, out,
                   directory is not None and directory.exclusive, progress,
                   dict(extra_metrics or {}), steps_per_epoch, optimizer, keys,
                   make_train_step(model, config, optimizer), make_eval_step(model, config))


@dataclasses.dataclass(frozen=True)
class _State:
    """Where a run stands after `epoch` epochs."""

    params: Any
    opt_state: Any
    epoch: int
    history: list
    segments: list
    identity: dict
    resumed_from: int | None = None


def _start(run: _Run, allow_changes: bool) -> _State:
    """Fresh params, or those of the newest checkpoint in `run.out`; placed on the devices."""
    params = run.model.init(run.keys[0], run.data.x_train[:1])
    name = run.extra.get("model") if isinstance(run.extra.get("model"), str) else None
    settings = {field: getattr(run.config, field) for field in RESULT_FIELDS}
    state = _State(params, run.optimizer.init(params), 0, [], [],
                   provenance.identity(settings, params, run.data, name))
    found = checkpoint.latest(run.out) if run.out is not None else None
    if found is not None:
        state = _resume(run, state, found, allow_changes)
    return dataclasses.replace(state, params=run.placement.place(state.params),
                               opt_state=run.placement.place(state.opt_state))


def _resume(run: _Run, fresh: _State, found: pathlib.Path, allow_changes: bool) -> _State:
    """The state of checkpoint `found`, refused when it was trained with other settings."""
    _, meta = checkpoint.load(found)
    if not isinstance(meta.get("epoch"), int) or not isinstance(meta.get("history"), list):
        raise CheckpointError(f"{str(found)!r} was not written by fit (its metadata has no "
                              f"epoch and history); move it out of the output directory")
    segments = provenance.recorded_segments(meta, RESULT_FIELDS)
    changed = provenance.differences(segments[-1]["config"] if segments else {}, fresh.identity)
    if changed and not allow_changes:
        raise ConfigMismatchError(
            f"{str(found)!r} was trained with other settings than this run's: "
            f"{'; '.join(changed)}. Run with the checkpoint's settings to resume it, choose "
            f"another output directory for a new run, or allow the changes (fit(..., "
            f"allow_changes=True), difprog train --allow-changes) to continue with the new "
            f"settings; metrics.json then records which epochs ran with which")
    template = {"params": fresh.params, "opt_state": fresh.opt_state}
    tree, meta = checkpoint.load(found, template)
    if run.writes:
        _sync_metrics(run.out, found, meta, run.placement.count)
    note = f" with changed settings: {'; '.join(changed)}" if changed else ""
    print(f"resuming from {found} (epoch {meta['epoch']} of {run.config.epochs}){note}",
          file=sys.stderr)
    return dataclasses.replace(fresh, params=tree["params"], opt_state=tree["opt_state"],
                               epoch=meta["epoch"], history=meta["history"], segments=segments,
                               resumed_from=meta["epoch"])


def _train_epoch(run: _Run, state: _State, epoch: int) -> _State:
    """Runs epoch `epoch` (counting from 0), evaluates, reports and saves; the new state."""
    began = time.perf_counter()
    params, opt_state, loss, accuracy = _run_steps(run, state, epoch)
    if epoch == (state.resumed_from or 0):
        compiling("the evaluation step", run.progress)
    test_loss, test_accuracy = evaluate(run.eval_step, params, run.data.x_test,
                                        run.data.y_test, run.placement)
    kill_point("evaluated")
    history = [*state.history, {"epoch": epoch + 1, "train_loss": loss,
                                "train_accuracy": accuracy, "test_loss": test_loss,
                                "test_accuracy": test_accuracy}]
    if run.progress:
        print(f"epoch {epoch + 1:>3}/{run.config.epochs}  loss {loss:.4f}  accuracy "
              f"{accuracy:.2%}  test loss {test_loss:.4f}  test accuracy {test_accuracy:.2%}  "
              f"({time.perf_counter() - began:.1f} s)", file=sys.stderr)
    state = dataclasses.replace(
        state, params=params, opt_state=opt_state, epoch=epoch + 1, history=history,
        segments=provenance.extend(state.segments, state.identity, epoch + 1))
    if run.writes:
        _save(run, state, seconds=time.perf_counter() - began)
    return state


def _run_steps(run: _Run, state: _State, epoch: int) -> tuple[Any, Any, float, float]:
    """The training steps of one epoch: (params, opt_state, mean loss, accuracy)."""
    _, shuffle_key, dropout_key = run.keys
    params, opt_state, loss_sum, correct, seen = state.params, state.opt_state, 0.0, 0, 0
    bar = Progress(run.steps_per_epoch, f"epoch {epoch + 1}/{run.config.epochs}",
                   enabled=run.progress, unit="steps")
    with bar:
        for i, (xb, yb) in enumerate(batches(jax.random.fold_in(shuffle_key, epoch),
                                             run.data.x_train, run.data.y_train,
                                             run.config.batch_size)):
            step = epoch * run.steps_per_epoch + i
            if i == 0 and epoch == (state.resumed_from or 0):
                compiling("the train step", run.progress)
            params, opt_state, loss, right = run.train_step(
                params, opt_state, run.placement.batch(xb), run.placement.batch(yb),
                jax.random.fold_in(dropout_key, step))
            kill_point("step")
            loss = float(loss)
            if not math.isfinite(loss):
                raise _nonfinite_loss(run, loss, step, epoch, i)
            loss_sum, correct, seen = (loss_sum + loss * len(yb), correct + int(right),
                                       seen + len(yb))
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
            bar.update(1)
    return params, opt_state, loss_sum / seen, correct / seen


def _nonfinite_loss(run: _Run, loss: float, step: int, epoch: int, batch: int
                    ) -> NonFiniteLossError:
    """The error for a NaN or infinite loss, naming the step and the checkpoint kept."""
    return nonfinite_loss_error(run.out, loss, f"step {step} (epoch {epoch + 1}, batch "
                                               f"{batch + 1} of {run.steps_per_epoch})")


def nonfinite_loss_error(out: pathlib.Path | None, loss: float, where: str
                         ) -> NonFiniteLossError:
    """The error for a NaN or infinite loss at `where`, naming the checkpoint kept in `out`."""
    kept = checkpoint.latest(out) if out is not None else None
    return NonFiniteLossError(
        f"the training loss became {loss} at {where}; training stopped. "
        + (f"The last good checkpoint, {kept}, is kept. " if kept else
           "No checkpoint was written yet. ")
        + "Lower the learning rate or check the data for NaN or Inf values.")


def restore(path: str | os.PathLike, model: Layer, example_input: np.ndarray
            ) -> tuple[Any, dict]:
    """The params of a checkpoint `fit` wrote, checked against `model`, and its metadata."""
    _, meta = checkpoint.load(path)
    config = TrainConfig(**{**meta.get("config", {}), "devices": None})
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


def _save(run: _Run, state: _State, *, seconds: float) -> None:
    """Writes the epoch's checkpoint, prunes the oldest, then rewrites metrics.json."""
    meta = {"epoch": state.epoch, "seed": run.config.seed,
            "config": dataclasses.asdict(run.config), "history": state.history,
            "segments": state.segments, "extra": run.extra}
    save_numbered(run.out, state.epoch, {"params": state.params, "opt_state": state.opt_state},
                  meta, run.config.keep_checkpoints, f"epoch {state.epoch}",
                  lambda name: _metrics(meta, name, run.placement.count, seconds))


def save_numbered(out: pathlib.Path, number: int, tree: Any, meta: Mapping[str, Any],
                  keep: int, where: str, metrics: Callable[[str], dict]) -> None:
    """Writes checkpoint `number` of a run, prunes all but the newest `keep`, then rewrites
    metrics.json (`metrics(checkpoint name)`); a failed write names `where` training stopped
    and the checkpoint kept."""
    try:
        path = checkpoint.save(checkpoint.checkpoint_path(out, number), tree, metadata=meta)
        kill_point("checkpoint-saved")
        for old in checkpoint.numbered(out)[:-keep]:
            old.unlink()
        kill_point("pruned")
        write_json(out / "metrics.json", metrics(path.name))
        kill_point("metrics-written")
    except WriteError as error:
        kept = checkpoint.latest(out)
        stopped = WriteError(f"{error}; training stopped at {where}; "
                             + (f"the last good checkpoint, {kept}, is intact, and the same "
                                f"command resumes from it" if kept else "no checkpoint was "
                                "written yet"))
        stopped.errno = error.errno
        raise stopped from error


def _metrics(meta: Mapping[str, Any], checkpoint_name: str, devices: int,
             seconds: float | None) -> dict:
    """The contents of metrics.json for a checkpoint with metadata `meta`."""
    history = meta["history"]
    return {**meta.get("extra", {}), **(history[-1] if history else {}), "epochs": meta["epoch"],
            "seed": meta["seed"], "checkpoint": checkpoint_name, "devices": devices,
            "last_epoch_seconds": seconds, "config": meta["config"], "history": history,
            "segments": meta.get("segments", [])}


def _sync_metrics(out: pathlib.Path, found: pathlib.Path, meta: Mapping[str, Any],
                  devices: int) -> None:
    """Rewrites metrics.json from checkpoint `found` when a crash left it behind or missing."""
    try:
        written = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        written = {}
    if written.get("epochs") != meta["epoch"] or written.get("checkpoint") != found.name:
        write_json(out / "metrics.json", _metrics(meta, found.name, devices, None))

