"""Training a language model step by step: `fit_lm`, its jitted steps, the whole-split validation
loss, and the language-model task that `difprog.driver.drive` runs (checkpoints, resume and
metrics.json)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from difprog import gates, monitor, provenance
from difprog.data import Text, num_text_windows, text_batch, text_windows
from difprog.driver import Tally, drive
from difprog.errors import ArgumentError
from difprog.lm._config import UNRECORDED, LMConfig, build_model, make_optimizer
from difprog.placement import Placement

__all__ = ["EVAL_BATCH", "LMResult", "fit_lm", "make_eval_step", "make_train_step",
           "validation_loss"]

EVAL_BATCH = 64


class LMResult(NamedTuple):
    """What `fit_lm` returns: the trained params, the evaluations, the per-step training loss,
    and the seconds spent training (compiles included, evaluations not)."""

    params: Any
    history: list[dict]
    train_curve: list[float]
    seconds: float
    resumed_from: int | None
    health: dict | None = None


def make_train_step(model, optimizer, watch: monitor.Watch | None = None):
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss)`, jitted.

    With a `watch` (`difprog.monitor`), `step(..., key, record)` also returns the record (or
    None) as `difprog.train.make_train_step` does."""
    capture = watch.capture if watch else ()

    def step(params, opt_state, x, y, key, record=None):
        def loss(p):
            applied = model.run(p, x, key=key, train=True, capture=capture)
            return gates.softmax_cross_entropy(applied.output, y), applied.captured

        (value, acts), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        if watch is None:
            return new, opt_state, value
        health = monitor.measured(record, watch, params, grads, updates, acts, value)
        return new, opt_state, value, health

    return jax.jit(step, static_argnames="record")


def make_eval_step(model):
    """`evaluate(params, x, y) -> (summed loss, correct next tokens)`, jitted."""

    def evaluate(params, x, y):
        logits = model.apply(params, x)
        return (gates.softmax_cross_entropy(logits, y, reduction="sum"),
                jnp.sum(jnp.argmax(logits, -1) == y))

    return jax.jit(evaluate)


def validation_loss(eval_step, params, corpus: Text, placement: Placement
                    ) -> tuple[float, float]:
    """(loss in nats per token, next-token accuracy) over every window of the validation split."""
    total, correct, tokens = 0.0, 0, 0
    for x, y in text_windows(corpus, EVAL_BATCH):
        loss, right = eval_step(params, placement.batch(x), placement.batch(y))
        total, correct, tokens = total + float(loss), correct + int(right), tokens + y.size
    return total / tokens, correct / tokens


def fit_lm(corpus: Text, config: LMConfig | None = None, *,
           out: str | os.PathLike | None = None, progress: bool = True,
           allow_changes: bool = False, monitor_every: int | None = None,
           thresholds: monitor.Thresholds | None = None) -> LMResult:
    """Trains `models.gpt` on `corpus` (from `difprog.data.text`), checkpointing into `out`.

    Args:
        corpus: the text; its context must equal config.context.
        config: the model and training settings (None: `LMConfig()`, the README's run).
        out: the output directory (None: nothing on disk, no resume). When it holds checkpoints,
            training resumes from the newest, provided it was trained with the same settings.
        progress: show progress on stderr.
        allow_changes: resume even when the settings differ; metrics.json then records which
            steps ran with which (`segments`).
        monitor_every, thresholds: watch the training's health every this many steps, as
            `difprog.train.fit` does; the result's `health` holds health.json's contents.

    Returns:
        The params, the evaluations ({step, train_loss, val_loss, val_accuracy}) and the
        training loss of every step.

    Raises:
        ArgumentError: the corpus's context differs from config.context.
        RunDirectoryError, ConfigMismatchError, CheckpointError, NonFiniteLossError, WriteError:
            as `difprog.train.fit`.
    """
    config = LMConfig() if config is None else config
    if not isinstance(corpus, Text):
        raise ArgumentError(f"fit_lm: corpus must be a Text from difprog.data.text, got "
                            f"{type(corpus).__name__}")
    if corpus.context != config.context:
        raise ArgumentError(f"fit_lm: the corpus was read with context={corpus.context}, the "
                            f"config has context={config.context}; read it with "
                            f"data.text(..., context={config.context})")
    task = _LMTask.create(corpus, config, monitor_every, thresholds)
    state = drive(task, out=out, progress=progress, allow_changes=allow_changes)
    return LMResult(state.params, state.history, state.curve, state.seconds, state.resumed_from,
                    task.monitor.health() if task.monitor else None)


@dataclasses.dataclass(frozen=True)
class _LMTask:
    """The language model as a `difprog.driver.Task`: step t trains on
    `text_batch(fold_in(data_key, t))`; every `eval_every` steps the whole validation split is
    evaluated."""

    corpus: Text
    config: LMConfig
    model: Any
    optimizer: optax.GradientTransformation
    train_step: Any
    eval_step: Any
    monitor: monitor.Monitor | None
    unit = "step"
    steps_per_unit = 1
    caller = "fit_lm"
    writer = "difprog's language-model training"
    recorded = ("history", "curve")

    @classmethod
    def create(cls, corpus: Text, config: LMConfig, monitor_every: int | None = None,
               thresholds: monitor.Thresholds | None = None) -> _LMTask:
        model = build_model(config.model_settings(), corpus.vocab_size)
        optimizer = make_optimizer(config)
        watch = None if monitor_every is None else monitor.watch(
            model, corpus.train[None, :config.context], every=monitor_every,
            thresholds=thresholds)
        step = make_train_step(model, optimizer, watch)

        def counted(*args):  # the driver's (params, opt_state, loss, aux, ...): no aux count
            params, opt_state, loss, *health = step(*args)
            return params, opt_state, loss, 0, *health

        return cls(corpus, config, model, optimizer, counted, make_eval_step(model),
                   watch and monitor.Monitor(watch))

    def locate(self, params, x, y, key) -> monitor.Origin | None:
        """Where the loss of the batch (x, y) or its gradient first became non-finite."""
        loss = lambda p: gates.softmax_cross_entropy(
            self.model.apply(p, x, key=key, train=True), y)
        return monitor.first_nonfinite(loss, params, model=self.model)

    @property
    def total_steps(self) -> int:
        return self.config.steps

    @property
    def eval_every(self) -> int:
        return self.config.eval_every

    @property
    def result_fields(self) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(self.config)
                     if field.name not in UNRECORDED)

    def init(self, key):
        return self.model.init(key, self.corpus.train[None, :self.config.context])

    def identity(self, params) -> dict:
        settings = {name: getattr(self.config, name) for name in self.result_fields}
        return provenance.identity(settings, params, self.corpus, "gpt")

    def batches(self, key, start: int, end: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for step in range(start, end):
            yield text_batch(jax.random.fold_in(key, step), self.corpus, self.config.batch_size)

    def evaluate(self, params, placement: Placement) -> dict:
        loss, accuracy = validation_loss(self.eval_step, params, self.corpus, placement)
        return {"val_loss": loss, "val_accuracy": accuracy}

    def summary(self, tally: Tally) -> dict:
        return {"train_loss": sum(tally.losses) / len(tally.losses)}

    def postfix(self, tally: Tally) -> dict:
        return {"loss": f"{tally.losses[-1]:.4f}"}

    def report(self, entry: dict, tally: Tally, trained: float, elapsed: float) -> str:
        tokens = len(tally.losses) * self.config.batch_size * self.config.context
        return (f"step {entry['step']:>6}/{self.config.steps}  train loss "
                f"{entry['train_loss']:.4f}  val loss {entry['val_loss']:.4f}  val accuracy "
                f"{entry['val_accuracy']:.2%}  ({trained:.1f} s, {tokens / trained:,.0f} tokens/s)")

    def record(self, state) -> dict:
        """The curve, the model's settings and the vocabulary, for `difprog.lm.load_lm`."""
        return {"curve": state.curve,
                "model": {"name": "gpt", "vocab": self.corpus.vocab_size,
                          **self.config.model_settings()},
                "text": {"name": self.corpus.name, "level": self.corpus.level,
                         "vocab": _vocab_strings(self.corpus)}}

    def metrics(self, state, checkpoint_name: str, devices: int, elapsed: float | None) -> dict:
        """metrics.json: the last evaluation, the run's size and speed, and the whole history.

        `test_accuracy` is the next-token accuracy on the validation split and `epochs` the
        passes over the training tokens, so the keys every difprog training run writes are here
        too."""
        last, config, corpus = state.history[-1], self.config, self.corpus
        tokens = state.step * config.batch_size * config.context
        return {"model": "gpt", "data": corpus.name, "level": corpus.level,
                "steps": state.step, "seed": config.seed, "checkpoint": checkpoint_name,
                "val_loss": last["val_loss"], "train_loss": last["train_loss"],
                "test_accuracy": last["val_accuracy"], "epochs": tokens / len(corpus.train),
                "parameters": sum(int(np.size(a)) for a in jax.tree.leaves(state.params)),
                "tokens": tokens, "training_seconds": state.seconds,
                "tokens_per_second": tokens / state.seconds if state.seconds else None,
                "validation_tokens": num_text_windows(corpus) * config.context,
                "devices": devices, "config": dataclasses.asdict(config),
                "history": state.history, "segments": state.segments}


def _vocab_strings(corpus: Text) -> list[str] | None:
    """The char vocabulary as strings (JSON); None at byte level, whose vocabulary is fixed."""
    return list(corpus.vocab) if corpus.level == "char" else None
