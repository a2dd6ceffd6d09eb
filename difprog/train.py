"""Jit-compiled training with optax: the train step, evaluation, and `fit` with checkpoints.

`fit` shuffles each epoch with a key derived from the seed and the epoch, and draws each step's
dropout key from the seed and the step number, so a run resumed from a checkpoint ends with the
same params as one that was never interrupted. Batches are sharded over the devices of a
one-axis `jax.sharding.Mesh` ('data'); params and optimiser state are replicated.
"""

from __future__ import annotations

import dataclasses
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

from difprog import checkpoint, gates
from difprog._files import write_json
from difprog.data import Dataset, batches, num_batches
from difprog.errors import ArgumentError, NonFiniteLossError
from difprog.layers import Layer

OPTIMIZERS = ("sgd", "momentum", "adam")
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
        seed: initialises params and draws shuffles and dropout masks.
        devices: how many local devices to shard batches over (None: all).
        keep_checkpoints: how many of the newest checkpoints to keep.
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
    keep_checkpoints: int = 3

    def __post_init__(self):
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("loss", tuple(LOSSES))):
            if getattr(self, name) not in allowed:
                raise ArgumentError(f"TrainConfig: {name} must be one of {list(allowed)}, got "
                                    f"{getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"TrainConfig: {name} must be a positive int, got {value!r}")
        if not self.learning_rate > 0 or not self.weight_decay >= 0:
            raise ArgumentError(f"TrainConfig: learning_rate must be positive and weight_decay "
                                f"non-negative, got {self.learning_rate!r} and "
                                f"{self.weight_decay!r}")


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
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss, correct)`, jitted."""
    loss = make_loss(model, config)

    def step(params, opt_state, x, y, key):
        (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return optax.apply_updates(params, updates), opt_state, value, correct

    return jax.jit(step)


def make_eval_step(model: Layer, config: TrainConfig) -> Callable:
    """`evaluate(params, x, y) -> (summed loss, correct)` in evaluation mode, jitted."""

    def evaluate(params, x, y):
        logits = model.apply(params, x)
        return LOSSES[config.loss](logits, y) * len(y), jnp.sum(jnp.argmax(logits, -1) == y)

    return jax.jit(evaluate)


class Placement:
    """Puts batches on a one-axis device mesh ('data') and replicates everything else."""

    def __init__(self, devices: int | None = None):
        available = jax.devices()
        count = len(available) if devices is None else devices
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(
                available):
            raise ArgumentError(f"devices must be between 1 and the {len(available)} devices "
                                f"available ({available[0].platform}), got {devices!r}")
        self.mesh = Mesh(np.array(available[:count]), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec("data"))

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


def fit(model: Layer, data: Dataset, config: TrainConfig = TrainConfig(), *,
        out: str | os.PathLike | None = None, progress: bool = True,
        extra_metrics: Mapping[str, Any] | None = None) -> FitResult:
    """Trains `model` on `data`, checkpointing into `out` after every epoch.

    When `out` holds checkpoints, training resumes from the newest one. After each epoch it
    writes `checkpoint_<epoch>.safetensors` (params and optimiser state, written atomically) and
    `metrics.json` (test accuracy, epochs, seed, per-epoch history, config).

    Args:
        model: the model, a layer whose outputs are class scores.
        data: train and test images and labels.
        config: the hyperparameters.
        out: the output directory (None: keep nothing on disk, no resume).
        progress: show a progress bar on stderr.
        extra_metrics: more entries for metrics.json (such as the model's name).

    Returns:
        The params, optimiser state, per-epoch history and final test accuracy.

    Raises:
        NonFiniteLossError: a step's loss was NaN or infinite; names the step, and keeps the
            checkpoints already written.

    Example:
        >>> result = fit(models.cnn(), data.digits(), TrainConfig(epochs=5), out="run")
        >>> result.test_accuracy
    """
    placement = Placement(config.devices)
    steps_per_epoch = num_batches(len(data.x_train), config.batch_size)
    optimizer = make_optimizer(config, steps_per_epoch)
    init_key, shuffle_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
    params = model.init(init_key, data.x_train[:1])
    opt_state = optimizer.init(params)
    history, start, resumed_from = [], 0, None
    found = None
    if out is not None:
        _remove_stale_temporaries(out)
        found = checkpoint.latest(out)
    if found is not None:
        state, meta = checkpoint.load(found, {"params": params, "opt_state": opt_state})
        params, opt_state = state["params"], state["opt_state"]
        history, start = meta["history"], meta["epoch"]
        resumed_from = start
        print(f"resuming from {found} (epoch {start} of {config.epochs})", file=sys.stderr)
    params, opt_state = placement.replicate(params), placement.replicate(opt_state)
    train_step = make_train_step(model, config, optimizer)
    eval_step = make_eval_step(model, config)
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        bar = _progress(progress, steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}")
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (xb, yb) in enumerate(batches(jax.random.fold_in(shuffle_key, epoch),
                                             data.x_train, data.y_train, config.batch_size)):
            step = epoch * steps_per_epoch + i
            params, opt_state, loss, right = train_step(
                params, opt_state, placement.batch(xb), placement.batch(yb),
                jax.random.fold_in(dropout_key, step))
            loss = float(loss)
            if not math.isfinite(loss):
                bar.close()
                kept = checkpoint.latest(out) if out is not None else None
                raise NonFiniteLossError(
                    f"the training loss became {loss} at step {step} (epoch {epoch + 1}, batch "
                    f"{i + 1} of {steps_per_epoch}); training stopped. "
                    + (f"The last good checkpoint, {kept}, is kept. " if kept else "No "
                       "checkpoint was written yet. ")
                    + "Lower the learning rate or check the data for NaN or Inf values.")
            loss_sum, correct, seen = loss_sum + loss * len(yb), correct + int(right), seen + len(yb)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
        test_loss, test_accuracy = evaluate(eval_step, params, data.x_test, data.y_test,
                                            placement)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                        "train_accuracy": correct / seen, "test_loss": test_loss,
                        "test_accuracy": test_accuracy})
        bar.close()
        if progress:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  loss {loss_sum / seen:.4f}  "
                  f"accuracy {correct / seen:.2%}  test loss {test_loss:.4f}  test accuracy "
                  f"{test_accuracy:.2%}  ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
        if out is not None and jax.process_index() == 0:
            _save(out, epoch + 1, params, opt_state, history, config, extra_metrics,
                  seconds=time.perf_counter() - began, devices=placement.count)
    final = history[-1]["test_accuracy"] if history else float("nan")
    return FitResult(params, opt_state, history, final, resumed_from)


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


def _save(out, epoch, params, opt_state, history, config, extra_metrics, *, seconds, devices):
    out = pathlib.Path(out)
    meta = {"epoch": epoch, "seed": config.seed, "config": dataclasses.asdict(config),
            "history": history, "extra": dict(extra_metrics or {})}
    path = checkpoint.save(checkpoint.checkpoint_path(out, epoch),
                           {"params": params, "opt_state": opt_state}, metadata=meta)
    for old in sorted(out.glob("checkpoint_*.safetensors"))[:-config.keep_checkpoints]:
        old.unlink()
    metrics = {**(extra_metrics or {}), **history[-1], "epochs": epoch, "seed": config.seed,
               "checkpoint": path.name, "devices": devices, "last_epoch_seconds": seconds,
               "config": dataclasses.asdict(config), "history": history}
    write_json(out / "metrics.json", metrics)


def _remove_stale_temporaries(out: str | os.PathLike) -> None:
    """Deletes temporary files a killed run left behind (never a finished file)."""
    for stale in pathlib.Path(out).glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)


def _progress(enabled: bool, total: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=None if enabled else True, leave=False,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.25)
