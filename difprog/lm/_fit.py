"""Training a language model step by step: `fit_lm`, its jitted steps, the whole-split validation
loss, checkpoints, resume and metrics.json."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from difprog import checkpoint, gates, provenance, rundir
from difprog.data import Text, num_text_windows, text_batch, text_windows
from difprog.errors import (
    ArgumentError,
    CheckpointError,
    ConfigMismatchError,
)
from difprog.files import kill_point, write_json
from difprog.lm._config import UNRECORDED, LMConfig, build_model, make_optimizer
from difprog.progress import Progress, compiling, note
from difprog.train import Placement, nonfinite_loss_error, save_numbered

EVAL_BATCH = 64


class LMResult(NamedTuple):
    """What `fit_lm` returns: the trained params, the evaluations, the per-step training loss,
    and the seconds spent training (compiles included, evaluations not)."""

    params: Any
    history: list[dict]
    train_curve: list[float]
    seconds: float
    resumed_from: int | None


def make_train_step(model, optimizer):
    """`step(params, opt_state, x, y, key) -> (params, opt_state, loss)`, jitted."""

    def step(params, opt_state, x, y, key):
        loss = lambda p: gates.softmax_cross_entropy(model.apply(p, x, key=key, train=True), y)
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(step)


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


# --- Training --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one call of `fit_lm` trains, where it writes, and its jitted steps."""

    corpus: Text
    config: LMConfig
    model: Any
    optimizer: optax.GradientTransformation
    placement: Placement
    out: pathlib.Path | None
    writes: bool
    progress: bool
    keys: tuple
    train_step: Any
    eval_step: Any


@dataclasses.dataclass(frozen=True)
class _State:
    """Where a run stands after `step` steps."""

    params: Any
    opt_state: Any
    step: int
    history: list
    curve: list
    segments: list
    identity: dict
    seconds: float = 0.0
    resumed_from: int | None = None


def fit_lm(corpus: Text, config: LMConfig | None = None, *,
           out: str | os.PathLike | None = None, progress: bool = True,
           allow_changes: bool = False) -> LMResult:
    """Trains `models.gpt` on `corpus` (from `difprog.data.text`), checkpointing into `out`.

    Args:
        corpus: the text; its context must equal config.context.
        config: the model and training settings (None: `LMConfig()`, the README's run).
        out: the output directory (None: nothing on disk, no resume). When it holds checkpoints,
            training resumes from the newest, provided it was trained with the same settings.
        progress: show progress on stderr.
        allow_changes: resume even when the settings differ; metrics.json then records which
            steps ran with which (`segments`).

    Returns:
        The params, the evaluations ({step, train_loss, val_loss, val_accuracy}) and the
        training loss of every step.

    Raises:
        ArgumentError: the corpus's context differs from config.context.
        RunDirectoryError, ConfigMismatchError, CheckpointError, NonFiniteLossError,
        WriteError: as `difprog.train.fit`.
    """
    config = LMConfig() if config is None else config
    if not isinstance(corpus, Text):
        raise ArgumentError(f"fit_lm: corpus must be a Text from difprog.data.text, got "
                            f"{type(corpus).__name__}")
    if corpus.context != config.context:
        raise ArgumentError(f"fit_lm: the corpus was read with context={corpus.context}, the "
                            f"config has context={config.context}; read it with "
                            f"data.text(..., context={config.context})")
    placement = Placement(config.devices, config.shard)
    owned = (contextlib.nullcontext() if out is None
             else rundir.own(out, exclusive=jax.process_index() == 0))
    with owned as directory:
        run = _create(corpus, config, placement, directory, progress)
        state = _start(run, allow_changes)
        while state.step < config.steps:
            state = _train_stretch(run, state)
    return LMResult(state.params, state.history, state.curve, state.seconds, state.resumed_from)


def _create(corpus, config, placement, directory, progress) -> _Run:
    model = build_model(config.model_settings(), corpus.vocab_size)
    optimizer = make_optimizer(config)
    out = None if directory is None else directory.path
    return _Run(corpus, config, model, optimizer, placement, out,
                directory is not None and directory.exclusive, progress,
                tuple(jax.random.split(jax.random.key(config.seed), 3)),
                make_train_step(model, optimizer), make_eval_step(model))


def _start(run: _Run, allow_changes: bool) -> _State:
    """Fresh params, or those of the newest checkpoint in `run.out`; placed on the devices."""
    params = run.model.init(run.keys[0], run.corpus.train[None, :run.config.context])
    settings = {k: v for k, v in dataclasses.asdict(run.config).items() if k not in UNRECORDED}
    state = _State(params, run.optimizer.init(params), 0, [], [], [],
                   provenance.identity(settings, params, run.corpus, "gpt"))
    found = checkpoint.latest(run.out) if run.out is not None else None
    if found is not None:
        state = _resume(run, state, found, allow_changes)
        state = _sync_metrics(run, state, found.name)
    return dataclasses.replace(state, params=run.placement.place(state.params),
                               opt_state=run.placement.place(state.opt_state))


def _sync_metrics(run: _Run, state: _State, checkpoint_name: str) -> _State:
    """The resumed state with the training seconds metrics.json records for its checkpoint (time
    is not in the checkpoint, whose bytes the seed decides); metrics.json is rewritten when a
    crash left it behind the checkpoint."""
    try:
        written = json.loads((run.out / "metrics.json").read_text())
    except (OSError, ValueError):
        written = {}
    if written.get("checkpoint") == checkpoint_name:
        return dataclasses.replace(state, seconds=float(written.get("training_seconds") or 0))
    if run.writes:
        write_json(run.out / "metrics.json", _metrics(run, state, checkpoint_name))
    return state


def _resume(run: _Run, fresh: _State, found: pathlib.Path, allow_changes: bool) -> _State:
    """The state of checkpoint `found`, refused when it was trained with other settings."""
    _, meta = checkpoint.load(found)
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("curve"), list):
        raise CheckpointError(f"{str(found)!r} was not written by difprog's language-model "
                              f"training (its metadata has no step and curve); move it out of "
                              f"the output directory or choose another --out")
    segments = [dict(segment) for segment in meta.get("segments", [])]
    changed = provenance.differences(segments[-1]["config"] if segments else {}, fresh.identity)
    if changed and not allow_changes:
        raise ConfigMismatchError(
            f"{str(found)!r} was trained with other settings than this run's: "
            f"{'; '.join(changed)}. Run with the checkpoint's settings to resume it, choose "
            f"another output directory, or allow the changes (--allow-changes)")
    tree, meta = checkpoint.load(found, {"params": fresh.params, "opt_state": fresh.opt_state})
    note(f"resuming from {found} (step {meta['step']} of {run.config.steps})"
         + (f" with changed settings: {'; '.join(changed)}" if changed else ""))
    return dataclasses.replace(fresh, params=tree["params"], opt_state=tree["opt_state"],
                               step=meta["step"], history=meta["history"], curve=meta["curve"],
                               segments=segments, resumed_from=meta["step"])


def _train_stretch(run: _Run, state: _State) -> _State:
    """The steps up to the next evaluation, the evaluation, and the checkpoint."""
    config, (_, data_key, dropout_key) = run.config, run.keys
    end = min(config.steps, (state.step // config.eval_every + 1) * config.eval_every)
    params, opt_state, losses = state.params, state.opt_state, []
    began = time.perf_counter()
    with Progress(end - state.step, f"steps {state.step + 1}-{end}/{config.steps}",
                  enabled=run.progress, unit="steps") as bar:
        for step in range(state.step, end):
            x, y = text_batch(jax.random.fold_in(data_key, step), run.corpus, config.batch_size)
            if step == state.step and state.step == (state.resumed_from or 0):
                compiling("the train step", run.progress)
            params, opt_state, loss = run.train_step(
                params, opt_state, run.placement.batch(x), run.placement.batch(y),
                jax.random.fold_in(dropout_key, step))
            kill_point("step")
            losses.append(float(loss))
            if not math.isfinite(losses[-1]):
                raise nonfinite_loss_error(run.out, losses[-1], f"step {step}")
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)
    seconds = time.perf_counter() - began
    val_loss, val_accuracy = validation_loss(run.eval_step, params, run.corpus, run.placement)
    kill_point("evaluated")
    entry = {"step": end, "train_loss": sum(losses) / len(losses), "val_loss": val_loss,
             "val_accuracy": val_accuracy}
    note(f"step {end:>6}/{config.steps}  train loss {entry['train_loss']:.4f}  val loss "
         f"{val_loss:.4f}  val accuracy {val_accuracy:.2%}  ({seconds:.1f} s, "
         f"{len(losses) * config.batch_size * config.context / seconds:,.0f} tokens/s)",
         run.progress)
    state = dataclasses.replace(
        state, params=params, opt_state=opt_state, step=end, history=[*state.history, entry],
        curve=[*state.curve, *losses], seconds=state.seconds + seconds,
        segments=provenance.extend(state.segments, state.identity, end, unit="steps",
                                   start=state.step + 1))
    if run.writes:
        _save(run, state)
    return state


def _save(run: _Run, state: _State) -> None:
    """Writes the step's checkpoint, prunes the oldest, then rewrites metrics.json."""
    meta = {"step": state.step, "seed": run.config.seed, "config": dataclasses.asdict(run.config),
            "history": state.history, "curve": state.curve, "segments": state.segments,
            "model": {"name": "gpt", "vocab": run.corpus.vocab_size,
                      **run.config.model_settings()},
            "text": {"name": run.corpus.name, "level": run.corpus.level,
                     "vocab": _vocab_strings(run.corpus)}}
    save_numbered(run.out, state.step, {"params": state.params, "opt_state": state.opt_state},
                  meta, run.config.keep_checkpoints, f"step {state.step}",
                  lambda name: _metrics(run, state, name))


def _metrics(run: _Run, state: _State, checkpoint_name: str) -> dict:
    """metrics.json: the last evaluation, the run's size and speed, and the whole history.

    `test_accuracy` is the next-token accuracy on the validation split and `epochs` the passes
    over the training tokens, so the keys every difprog training run writes are here too."""
    last, config = state.history[-1], run.config
    tokens = state.step * config.batch_size * config.context
    return {"model": "gpt", "data": run.corpus.name, "level": run.corpus.level,
            "steps": state.step, "seed": config.seed, "checkpoint": checkpoint_name,
            "val_loss": last["val_loss"], "train_loss": last["train_loss"],
            "test_accuracy": last["val_accuracy"], "epochs": tokens / len(run.corpus.train),
            "parameters": sum(int(np.size(a)) for a in jax.tree.leaves(state.params)),
            "tokens": tokens, "training_seconds": state.seconds,
            "tokens_per_second": tokens / state.seconds if state.seconds else None,
            "validation_tokens": num_text_windows(run.corpus) * config.context,
            "devices": run.placement.count, "config": dataclasses.asdict(config),
            "history": state.history, "segments": state.segments}


def _vocab_strings(corpus: Text) -> list[str] | None:
    """The char vocabulary as strings (JSON); None at byte level, whose vocabulary is fixed."""
    return list(corpus.vocab) if corpus.level == "char" else None
